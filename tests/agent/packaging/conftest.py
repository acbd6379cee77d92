"""Builds shared by the packaging tests, cached under build/ between runs.

The executables are rebuilt only when their inputs change (build-binary.sh and the spec, the
agent's and the wire package's sources, uv.lock: their hash names the cache); the Debian 11
root is made once with debootstrap and kept.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGING = ROOT / "packaging"
CACHE = ROOT / "build" / "test-packaging"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What the executables are built from (a change to any of them rebuilds the cached build).
BINARY_INPUTS = (
    "packaging/build-binary.sh",
    "packaging/sendpost-agent.spec",
    "packages/agent",
    "packages/wire",
    "uv.lock",
)
# Where the packages install the unpacked build (build-binary.sh's LIBDIR).
LIBDIR = "/usr/lib/sendpost-agent"

# The first of these tests on a fresh checkout builds the executables and may debootstrap
# Debian 11 (minutes on a shared machine): more than the suite's default 300 s per test.
SLOW = [pytest.mark.slow, pytest.mark.timeout(1200)]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to enter another root",
)


@pytest.fixture(autouse=True)
def _once_per_ci_run() -> None:
    """`make pytest-pure` runs tests/agent again with the pure-Python parser; the packaging
    tests build and run the executables, which that switch does not change: they run once."""
    if os.environ.get("SENDPOST_AGENT_PURE_PYTHON"):
        pytest.skip("packaging: already run in the compiled pass (the switch changes no build)")


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


def _inputs_hash() -> str:
    digest = hashlib.sha256()
    tracked = subprocess.run(
        ["git", "ls-files", "-s", "--", *BINARY_INPUTS],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    digest.update(tracked)
    # Uncommitted edits count too: the content of every file git lists.
    for line in tracked.decode().splitlines():
        path = ROOT / line.split("\t", 1)[1]
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def build_dir() -> Path:
    """build-binary.sh's OUT_DIR: the single file and the unpacked tree (cached by inputs)."""
    out = CACHE / f"binary-{_inputs_hash()}"
    if not (out / "done").exists():
        if CACHE.exists():
            for old in CACHE.glob("binary-*"):
                shutil.rmtree(old)
        _script("build-binary.sh", out / "dist", CACHE / "work", timeout=600)
        (out / "done").touch()
    return out / "dist"


@pytest.fixture(scope="session")
def agent_binary(build_dir: Path) -> Path:
    """The single-file executable (staticx around PyInstaller's one-file build)."""
    return build_dir / "sendpost-agent"


@pytest.fixture(scope="session")
def agent_tree(build_dir: Path) -> Path:
    """The unpacked build the packages install as /usr/lib/sendpost-agent."""
    return build_dir / "sendpost-agent.dir"


@pytest.fixture(scope="session")
def deb_package(agent_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    deb = Path(_script("build-deb.sh", agent_tree, out, timeout=120))
    _checksums(deb)
    return deb


@pytest.fixture(scope="session")
def rpm_package(agent_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("rpmbuild") is None:
        pytest.skip(
            "rpmbuild is not installed (Debian package `rpm`; scripts/bootstrap.sh adds it)"
        )
    out = tmp_path_factory.mktemp("rpm")
    rpm = Path(_script("build-rpm.sh", agent_tree, out, timeout=120))
    _checksums(rpm)
    return rpm


def _checksums(package: Path) -> None:
    """SHA256SUMS beside the package, as on the download site (install.sh checks it)."""
    digest = hashlib.sha256(package.read_bytes()).hexdigest()
    (package.parent / "SHA256SUMS").write_text(f"{digest}  {package.name}\n")


@pytest.fixture(scope="session")
def dist_dir(
    agent_binary: Path,
    deb_package: Path,
    rpm_package: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """What `make packages` publishes: the downloads, signed SHA256SUMS, apt and yum repositories
    (build-repos.sh, with a test key generated in a fresh GnuPG home)."""
    dist = tmp_path_factory.mktemp("dist")
    for path in (agent_binary, deb_package, rpm_package, PACKAGING / "install.sh"):
        shutil.copy(path, dist / path.name)
    _script("build-repos.sh", dist, tmp_path_factory.mktemp("gnupg"), timeout=120)
    return dist


@pytest.fixture(scope="session")
def debian11_root() -> Path:
    """A minimal Debian 11 (bullseye, glibc 2.31) root from debootstrap, made once under build/."""
    root = ROOT / "build" / "debootstrap" / "bullseye"
    if not root.exists():
        if os.geteuid() != 0 or shutil.which("debootstrap") is None:
            pytest.skip("debootstrap needs root and the debootstrap package")
        partial = root.with_name("bullseye.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", "bullseye", str(partial), DEBIAN_MIRROR],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        assert result.returncode == 0, f"debootstrap failed:\n{result.stdout[-2000:]}"
        partial.rename(root)
    return root


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """Mount a writable copy-on-write view of a root (overlayfs), unmounted afterwards."""
    mounts: list[Path] = []

    def mount(lower: Path) -> Path:
        base = tmp_path / f"overlay{len(mounts)}"
        for part in ("upper", "work", "merged"):
            (base / part).mkdir(parents=True)
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={lower},upperdir={base / 'upper'},workdir={base / 'work'}",
             str(base / "merged")],
            check=True, timeout=30,
        )  # fmt: skip
        mounts.append(base / "merged")
        return base / "merged"

    yield mount
    for merged in reversed(mounts):
        subprocess.run(["umount", str(merged)], check=False, timeout=30)


def in_root(
    root: Path, *command: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run COMMAND with ROOT as / (its own mount and PID namespaces, a fresh /proc)."""
    (root / "proc").mkdir(exist_ok=True)
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    return subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", f"--root={root}", "--mount-proc", *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else {"PATH": "/usr/bin:/bin", "TZ": "UTC"},
        check=False,
    )
