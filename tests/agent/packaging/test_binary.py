"""The single executable: same behaviour as the installed command, no Python needed on the host."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sendpost_agent import __version__

from tests.agent.packaging.conftest import CACHE, ROOT, SLOW
from tests.support.corpus import POSTFIX_LOGS

pytestmark = SLOW

VENV_AGENT = ROOT / ".venv" / "bin" / "sendpost-agent"
GOLDEN_LOG = ROOT / "tests" / "agent" / "parse" / "golden" / "lifecycle.log"
CORPUS_LOG = POSTFIX_LOGS / "youyo-postfix-log-parser.log"


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


def test_version(agent_binary: Path) -> None:
    """--version prints the agent package's version."""
    result = _run([str(agent_binary), "--version"])
    assert (result.returncode, result.stdout) == (0, f"sendpost-agent {__version__}\n")


@pytest.mark.parametrize("log", [GOLDEN_LOG, CORPUS_LOG], ids=["golden", "corpus"])
def test_parse_matches_the_venv_command(agent_binary: Path, log: Path) -> None:
    """`parse` of the executable prints exactly what the venv's sendpost-agent prints (both
    compiled: the executable bundles the compiled parser, and SENDPOST_AGENT_PURE_PYTHON, which
    needs the parser's .py files, is not given to either)."""
    env = {k: v for k, v in os.environ.items() if k != "SENDPOST_AGENT_PURE_PYTHON"}
    env["TZ"] = "UTC"
    expected = _run([str(VENV_AGENT), "parse", "--stats", str(log)], env)
    actual = _run([str(agent_binary), "parse", "--stats", str(log)], env)
    assert expected.stdout != ""
    assert (expected.returncode, expected.stdout, expected.stderr) == (
        actual.returncode,
        actual.stdout,
        actual.stderr,
    )


def test_parse_with_two_processes_in_the_executable(agent_binary: Path) -> None:
    """`parse --processes 2` forks inside the frozen executable too, and prints what one
    process prints."""
    env = {k: v for k, v in os.environ.items() if k != "SENDPOST_AGENT_PURE_PYTHON"}
    env["TZ"] = "UTC"
    one = _run([str(agent_binary), "parse", "--stats", "--processes", "1", str(CORPUS_LOG)], env)
    two = _run([str(agent_binary), "parse", "--stats", "--processes", "2", str(CORPUS_LOG)], env)
    assert one.stdout != ""
    assert (one.returncode, one.stdout, one.stderr) == (two.returncode, two.stdout, two.stderr)


def test_executable_matches_with_pcre2(agent_binary: Path) -> None:
    """The executable carries the native line matcher with PCRE2 linked into it (the build
    machine has PCRE2's headers: ``make setup`` installs libpcre2-dev), and no PCRE2 library of
    the host is needed for it: ``parse --stats`` says ``matcher pcre2``."""
    if not Path("/usr/include/pcre2.h").exists():
        pytest.skip("PCRE2's headers are not installed: the build leaves the matcher out")
    env = {k: v for k, v in os.environ.items() if k != "SENDPOST_AGENT_PURE_PYTHON"}
    result = _run([str(agent_binary), "parse", "--stats", str(GOLDEN_LOG)], env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (0, "matcher pcre2")


def test_installed_wheel_runs_compiled(agent_binary: Path) -> None:
    """The agent's wheel, installed (build-binary.sh installs it in a fresh virtualenv), runs
    its compiled parser and the PCRE2 matcher: it carries the .pxd files whose CRC-32 compiled.py
    checks with each .py (without them an installed wheel took its sources for changed and ran
    the Python code)."""
    python = CACHE / "work" / "venv" / "bin" / "python"
    if not python.exists():
        pytest.skip("the build's virtualenv is gone (build/test-packaging/work)")
    code = "import sendpost_agent.parse as p, sendpost_agent.parse.linematch as m\n"
    code += "print(p.CODE, m.ENGINE)"
    result = _run([str(python), "-W", "error::RuntimeWarning", "-c", code], {"PATH": "/usr/bin"})
    engine = "pcre2" if Path("/usr/include/pcre2.h").exists() else "re"
    assert (result.returncode, result.stdout, result.stderr) == (0, f"compiled {engine}\n", "")


def test_size_stays_small(agent_binary: Path) -> None:
    """Only the agent's own dependencies are bundled: the file stays well under 25 MB (the
    platform's tree — SQLAlchemy, FastAPI, psycopg, cryptography — would push it far over)."""
    size = agent_binary.stat().st_size
    assert size < 25 * 1024**2, f"{size} bytes"


def test_bundle_holds_no_platform_module(agent_tree: Path, tmp_path: Path) -> None:
    """The bundled module list has the agent and wire packages and none of the platform's."""
    from PyInstaller.archive.readers import CArchiveReader, ZlibArchiveReader

    archive = CArchiveReader(str(agent_tree / "sendpost-agent"))
    pyz_name = next(name for name in archive.toc if name.endswith(".pyz"))
    pyz_path = tmp_path / "bundle.pyz"
    pyz_path.write_bytes(archive.extract(pyz_name))
    modules = {name.split(".")[0] for name in ZlibArchiveReader(str(pyz_path)).toc}
    forbidden = {"sendpost_platform", "fastapi", "sqlalchemy", "psycopg", "starlette", "pydantic"}
    assert ({"sendpost_agent", "sendpost_wire"} <= modules, modules & forbidden) == (True, set())


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text()
        found += [int(child) for child in text.split()]
    return found


@pytest.mark.parametrize("victim", ["staticx", "pyinstaller", "python"])
def test_sigkill_of_a_launcher_leaves_nothing(
    agent_binary: Path, tmp_path: Path, victim: str
) -> None:
    """SIGKILL of any process of the single file's chain (staticx's bootloader, PyInstaller's,
    the interpreter): the others exit, the state lock is free again and nothing unpacked is left
    in TMPDIR."""
    import fcntl
    import signal
    import time

    from tests.support.fake_ingest import FakeIngest

    tmpdir, state, log = tmp_path / "tmp", tmp_path / "state", tmp_path / "mail.log"
    tmpdir.mkdir()
    log.touch()
    with FakeIngest(keys={"k"}) as ingest, (tmp_path / "err").open("w") as err:
        top = subprocess.Popen(
            [str(agent_binary), "run", "--api-key", "k", "--endpoint", ingest.url,
             "--log-path", str(log), "--state-dir", str(state), "--listen", "127.0.0.1:0"],
            env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmpdir)}, stderr=err,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while "sendpost-agent running" not in (tmp_path / "err").read_text():
            assert top.poll() is None, "the agent exited at start"
            assert time.monotonic() < deadline, "the agent did not start"
            time.sleep(0.2)
        middle = _children(top.pid)[0]
        python = _children(middle)[0]
        assert len(list(tmpdir.iterdir())) == 2  # staticx-* and _MEI*
        target = {"staticx": top.pid, "pyinstaller": middle, "python": python}[victim]
        os.kill(target, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}/stat").exists() and
                  Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
                  for pid in (middle, python)):  # fmt: skip
            assert time.monotonic() < deadline, "a process of the chain is still running"
            time.sleep(0.2)
        top.wait(timeout=30)
    assert list(tmpdir.iterdir()) == []
    fd = os.open(state / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if an orphan still holds it
    finally:
        os.close(fd)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a noexec tmpfs needs root")
def test_noexec_tmpdir_fails_cleanly(agent_binary: Path, tmp_path: Path) -> None:
    """With TMPDIR on a noexec mount (CIS-hardened /tmp) the single file cannot run what it
    unpacks: it says so in one line, exits non-zero and leaves nothing behind (the packages,
    which unpack nothing, are the way for such hosts; or TMPDIR on an exec mount)."""
    tmpdir = tmp_path / "noexec"
    tmpdir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,size=64m", "tmpfs", str(tmpdir)],
                   check=True, timeout=30)  # fmt: skip
    try:
        result = _run([str(agent_binary), "--version"], {"TMPDIR": str(tmpdir)})
        left = list(tmpdir.iterdir())
    finally:
        subprocess.run(["umount", str(tmpdir)], check=True, timeout=30)
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if "Permission denied" in line] != []
    assert left == []
