"""Builds shared by the packaging tests: one PyInstaller build per session, in a temp dir."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGING = ROOT / "packaging"


def _script(name: str, *args: Path, timeout: float) -> str:
    result = subprocess.run(
        [str(PACKAGING / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def agent_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-file executable, built from a fresh venv by packaging/build-binary.sh."""
    base = tmp_path_factory.mktemp("agent-build")
    _script("build-binary.sh", base / "dist", base / "work", timeout=240)
    return base / "dist" / "sendpost-agent"


@pytest.fixture(scope="session")
def deb_package(agent_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    return Path(_script("build-deb.sh", agent_binary, out, timeout=120))


@pytest.fixture(scope="session")
def rpm_package(agent_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("rpmbuild") is None:
        pytest.skip(
            "rpmbuild is not installed (Debian package `rpm`; scripts/bootstrap.sh adds it)"
        )
    out = tmp_path_factory.mktemp("rpm")
    return Path(_script("build-rpm.sh", agent_binary, out, timeout=120))
