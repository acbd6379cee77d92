"""The single executable: same behaviour as the installed command, no Python needed on the host."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sendpost_agent import __version__

from tests.agent.packaging.conftest import ROOT
from tests.support.corpus import POSTFIX_LOGS

pytestmark = pytest.mark.slow

VENV_AGENT = ROOT / ".venv" / "bin" / "sendpost-agent"
GOLDEN_LOG = ROOT / "tests" / "agent" / "parse" / "golden" / "lifecycle.log"
CORPUS_LOG = POSTFIX_LOGS / "youyo-postfix-log-parser.log"
# What a bare Linux host has without any Python: the C library family and zlib.
HOST_LIBS = ("libm.so.6", "librt.so.1", "libutil.so.1", "libresolv.so.2", "libnss_files.so.2")


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


def test_size_stays_small(agent_binary: Path) -> None:
    """Only the agent's own dependencies are bundled: the file stays well under 25 MB (the
    platform's tree — SQLAlchemy, FastAPI, psycopg, cryptography — would push it far over)."""
    size = agent_binary.stat().st_size
    assert size < 25 * 1024**2, f"{size} bytes"


def test_bundle_holds_no_platform_module(agent_binary: Path) -> None:
    """The bundled module list has the agent and wire packages and none of the platform's."""
    from PyInstaller.archive.readers import CArchiveReader, ZlibArchiveReader

    archive = CArchiveReader(str(agent_binary))
    pyz_name = next(name for name in archive.toc if name.endswith(".pyz"))
    pyz_path = agent_binary.parent / "bundle.pyz"
    pyz_path.write_bytes(archive.extract(pyz_name))
    modules = {name.split(".")[0] for name in ZlibArchiveReader(str(pyz_path)).toc}
    forbidden = {"sendpost_platform", "fastapi", "sqlalchemy", "psycopg", "starlette", "pydantic"}
    assert ({"sendpost_agent", "sendpost_wire"} <= modules, modules & forbidden) == (True, set())


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chroot") is None, reason="needs chroot")
def test_runs_in_a_root_without_python(agent_binary: Path, tmp_path: Path) -> None:
    """In a chroot holding only the executable, the C library and zlib (no Python anywhere),
    with an empty environment, `parse` gives the same events as on the build host."""
    root = tmp_path / "root"
    (root / "tmp").mkdir(parents=True)
    (root / "data").mkdir()
    shutil.copy(agent_binary, root / "sendpost-agent")
    shutil.copy(GOLDEN_LOG, root / "data" / "mail.log")
    ldd = _run(["ldd", str(agent_binary)]).stdout
    libs = [part for part in ldd.split() if part.startswith("/")]
    libdir = Path("/lib/x86_64-linux-gnu")
    libs += [str(libdir / name) for name in HOST_LIBS if (libdir / name).exists()]
    for lib in libs:
        target = root / lib.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, target)
    assert list(root.rglob("*python*")) == []
    expected = _run([str(VENV_AGENT), "parse", str(GOLDEN_LOG)], {"TZ": "UTC"})
    chroot = str(shutil.which("chroot"))
    result = _run([chroot, str(root), "/sendpost-agent", "parse", "/data/mail.log"], {"TZ": "UTC"})
    assert (result.returncode, result.stdout) == (0, expected.stdout)
