"""The builds need nothing from the host's C library: read from their ELF symbol versions, and
run for real in a debootstrapped Debian 11 root (glibc 2.31) and in a root with no libc at all."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sendpost_agent import __version__

from tests.agent.packaging.conftest import LIBDIR, PACKAGING, ROOT, SLOW, in_root, needs_root
from tests.support.fake_ingest import FakeIngest

pytestmark = SLOW

sys.path.insert(0, str(PACKAGING))
import glibc_floor  # noqa: E402

VENV_AGENT = ROOT / ".venv" / "bin" / "sendpost-agent"
GOLDEN_LOG = ROOT / "tests" / "agent" / "parse" / "golden" / "lifecycle.log"


def _readelf_glibc_versions(path: Path) -> set[str]:
    """GLIBC_ versions the file asks for, as binutils' readelf lists them (a second reader)."""
    out = subprocess.run(
        ["readelf", "--version-info", "--wide", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return {word for word in out.split() if word.startswith("GLIBC_2")}


def test_single_file_needs_no_glibc_symbol_version(agent_binary: Path) -> None:
    """The single file (staticx's static bootloader) asks the host for no GLIBC_ version at all,
    by readelf and by pyelftools; what staticx wraps does (so the check can see one)."""
    assert _readelf_glibc_versions(agent_binary) == set()
    assert glibc_floor.floor(agent_binary) is None
    wrapped = ROOT / "build" / "test-packaging" / "work" / "dist" / "sendpost-agent-onefile"
    found = glibc_floor.floor(wrapped)
    assert found is not None
    assert found > (2, 2)


def test_unpacked_tree_uses_only_its_own_glibc(agent_tree: Path) -> None:
    """The packaged tree's executable names the tree's own loader (under /usr/lib/sendpost-agent)
    and every GLIBC_ version its files ask for is defined by the libc it carries: the floor is
    none. Installed anywhere else, it would fall back to the host's and need its real floor."""
    interp = subprocess.run(
        ["readelf", "--program-headers", str(agent_tree / "sendpost-agent")],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert f"[Requesting program interpreter: {LIBDIR}/glibc/ld-linux-x86-64.so.2]" in interp
    assert glibc_floor.floor(agent_tree, LIBDIR) is None
    floor_elsewhere = glibc_floor.floor(agent_tree, "/opt/elsewhere")
    assert floor_elsewhere is not None
    assert floor_elsewhere > (2, 17)


def _check_args(ingest: FakeIngest, log: str, state: str) -> list[str]:
    return [
        "check", "--api-key", "sp_key_123", "--endpoint", ingest.url, "--log-path", log,
        "--state-dir", state, "--listen", "127.0.0.1:0",
    ]  # fmt: skip


def _answers_three_commands(root: Path, program: str) -> None:
    """--version, parse (same events as the venv's command, the lines matched by the PCRE2
    linked into the executable, whatever ROOT holds) and check inside ROOT."""
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    tmp_before = set((root / "tmp").iterdir())
    version = in_root(root, program, "--version")
    assert (version.returncode, version.stdout, version.stderr) == (
        0,
        f"sendpost-agent {__version__}\n",
        "",
    )
    (root / "data").mkdir(exist_ok=True)
    shutil.copy(GOLDEN_LOG, root / "data" / "mail.log")
    expected = subprocess.run(
        [str(VENV_AGENT), "parse", str(GOLDEN_LOG)],
        capture_output=True, text=True, timeout=60, env={"TZ": "UTC"}, check=True,
    ).stdout  # fmt: skip
    parsed = in_root(root, program, "parse", "/data/mail.log")
    assert (parsed.returncode, parsed.stderr) == (0, "")
    assert parsed.stdout == expected != ""
    if Path("/usr/include/pcre2.h").exists():  # built with the native line matcher (PCRE2 in it)
        stats = in_root(root, program, "parse", "--stats", "/data/mail.log")
        assert stats.stderr.splitlines()[-1] == "matcher pcre2"
    with FakeIngest(keys={"sp_key_123"}) as ingest:
        checked = in_root(root, program, *_check_args(ingest, "/data/mail.log", "/data/state"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"ok   the endpoint {ingest.url} accepts the API key" in checked.stdout
    # Whatever the single file unpacked under /tmp is gone once it has exited.
    assert set((root / "tmp").iterdir()) == tmp_before


@needs_root
def test_single_file_in_debian_11(
    agent_binary: Path, debian11_root: Path, overlay: Callable[[Path], Path]
) -> None:
    """In a minimal debootstrapped Debian 11 (glibc 2.31, older than the build machine's) the
    single file answers --version, parse and check."""
    root = overlay(debian11_root)
    assert "2.31" in in_root(root, "/usr/bin/ldd", "--version").stdout
    shutil.copy(agent_binary, root / "usr" / "local" / "bin" / "sendpost-agent")
    _answers_three_commands(root, "/usr/local/bin/sendpost-agent")


@needs_root
def test_single_file_in_an_empty_root(agent_binary: Path, tmp_path: Path) -> None:
    """In a root holding the single file and nothing else (no libc, no loader, no shell), with
    an empty environment, it answers --version, parse and check."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(agent_binary, root / "sendpost-agent")
    assert [p for p in root.rglob("*") if p.name.startswith(("libc", "ld-"))] == []
    _answers_three_commands(root, "/sendpost-agent")


@needs_root
def test_deb_installs_and_runs_in_debian_11(
    deb_package: Path, debian11_root: Path, overlay: Callable[[Path], Path]
) -> None:
    """dpkg on Debian 11 accepts the .deb (its Depends hold there), creates the service user and
    the state directory, and the installed command answers --version, parse and check."""
    root = overlay(debian11_root)
    shutil.copy(deb_package, root / "tmp" / "agent.deb")
    installed = in_root(
        root, "/usr/bin/dpkg", "-i", "/tmp/agent.deb",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    (root / "tmp" / "agent.deb").unlink()
    state = root / "var" / "lib" / "sendpost-agent"
    users = {
        line.split(":")[0]: int(line.split(":")[2])
        for line in (root / "etc" / "passwd").read_text().splitlines()
    }
    assert (state.stat().st_mode & 0o777, state.stat().st_uid) == (0o750, users["sendpost-agent"])
    _answers_three_commands(root, "/usr/bin/sendpost-agent")


def test_no_library_points_outside_the_tree(agent_tree: Path) -> None:
    """No bundled ELF file has an RPATH or RUNPATH but the program's own (a pyenv or conda
    python3.11 first on PATH once left its lib directory in dozens of them): the build uses
    Debian's /usr/bin/python3.11 by path, and the tests build with pyenv's shims on PATH."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    paths: dict[str, set[str]] = {}
    for elf_path in glibc_floor._elf_files(agent_tree):
        with elf_path.open("rb") as handle:
            for section in ELFFile(handle).iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags():
                        if tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                            value = tag.rpath if tag.entry.d_tag == "DT_RPATH" else tag.runpath
                            paths.setdefault(value, set()).add(elf_path.name)
    assert paths == {f"{LIBDIR}/glibc": {"sendpost-agent"}}
