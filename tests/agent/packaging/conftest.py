"""Builds shared by the packaging tests, cached under build/ between runs.

The executables are rebuilt only when their inputs change (build-binary.sh and the spec, the
agent's and the wire package's sources, uv.lock: their hash names the cache); the Debian 11
root is made once with debootstrap and kept. The builds start in the background as soon as the
session has collected a packaging test, and the packaging tests run last: a fresh checkout's
build (a minute or two, and debootstrap's download) overlaps the rest of the suite, which spends
much of its time waiting on sockets and child processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import typing
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
    """Run a packaging script (niced: it may run beside the rest of the suite) and return the
    last line it printed."""
    command = ["nice", "-n", "10", str(PACKAGING / name), *map(str, args)]
    result = _run(command, timeout=timeout)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip().splitlines()[-1]


_RUNNING: set[subprocess.Popen[str]] = set()
"""Build processes still running; the end of the session stops them (see pytest_sessionfinish)."""


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """subprocess.run, in a process group of its own that the session's end can stop."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        _RUNNING.add(process)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        finally:
            _RUNNING.discard(process)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


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


def _build_binary() -> Path:
    """build-binary.sh's OUT_DIR: the single file and the unpacked tree (cached by inputs)."""
    out = CACHE / f"binary-{_inputs_hash()}"
    if not (out / "done").exists():
        if CACHE.exists():
            for old in CACHE.glob("binary-*"):
                shutil.rmtree(old)
        _script("build-binary.sh", out / "dist", CACHE / "work", timeout=600)
        (out / "done").touch()
    return out / "dist"


@dataclasses.dataclass(frozen=True)
class _Packages:
    """The .deb and .rpm (None without rpmbuild) and what `make packages` publishes."""

    deb: Path
    rpm: Path | None
    dist: Path | None


def _build_packages(binary: Future[Path], scratch: Path) -> _Packages:
    """The .deb, the .rpm and the published downloads (build-repos.sh, with a test key made in
    a fresh GnuPG home), from the unpacked build."""
    tree = binary.result() / "sendpost-agent.dir"
    deb = Path(_script("build-deb.sh", tree, scratch / "deb", timeout=120))
    _checksums(deb)
    if shutil.which("rpmbuild") is None:
        return _Packages(deb, None, None)
    rpm = Path(_script("build-rpm.sh", tree, scratch / "rpm", timeout=120))
    _checksums(rpm)
    dist = scratch / "dist"
    dist.mkdir()
    for path in (binary.result() / "sendpost-agent", deb, rpm, PACKAGING / "install.sh"):
        shutil.copy(path, dist / path.name)
    (scratch / "gnupg").mkdir(mode=0o700)
    _script("build-repos.sh", dist, scratch / "gnupg", timeout=120)
    return _Packages(deb, rpm, dist)


def _debootstrap() -> Path | None:
    """A minimal Debian 11 (bullseye, glibc 2.31) root from debootstrap, made once under build/;
    None where it cannot be made (not root, no debootstrap)."""
    root = ROOT / "build" / "debootstrap" / "bullseye"
    if not root.exists():
        if os.geteuid() != 0 or shutil.which("debootstrap") is None:
            return None
        partial = root.with_name("bullseye.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        command = ["debootstrap", "--variant=minbase", "bullseye", str(partial), DEBIAN_MIRROR]
        result = _run(command, timeout=1200)
        assert result.returncode == 0, f"debootstrap failed:\n{result.stdout[-2000:]}"
        partial.rename(root)
    return root


class _Builds:
    """The builds the packaging tests share, started in threads as soon as the session knows it
    will run tests that need them, so that they overlap the rest of the suite (which waits on
    sockets and child processes much of the time); each fixture waits for the build it needs.
    Only what the collected tests use is started: a session that stops a build half-way (the
    end of a short run) leaves debootstrap's partial root behind."""

    def __init__(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="sendpost-packaging-"))
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="packaging")
        self._started: dict[str, Future[typing.Any]] = {}

    def binary(self) -> Future[Path]:
        return self._start("binary", _build_binary)

    def packages(self) -> Future[_Packages]:
        binary = self.binary()
        return self._start("packages", lambda: _build_packages(binary, self.scratch))

    def root(self) -> Future[Path | None]:
        return self._start("root", _debootstrap)

    def _start(self, name: str, build: Callable[[], typing.Any]) -> Future[typing.Any]:
        if name not in self._started:
            self._started[name] = self._pool.submit(build)
        return self._started[name]

    def stop(self) -> None:
        """Stop what still runs (a session cut short) and remove the scratch directory."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in list(_RUNNING):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self._pool.shutdown(wait=True)
        shutil.rmtree(self.scratch, ignore_errors=True)


_BUILDS: _Builds | None = None


def _builds() -> _Builds:
    global _BUILDS
    if _BUILDS is None:
        _BUILDS = _Builds()
    return _BUILDS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The packaging tests run last, and their builds start now, in the background."""
    here = Path(__file__).parent
    mine = [item for item in items if here in item.path.parents]
    if not mine or os.environ.get("SENDPOST_AGENT_PURE_PYTHON") or config.option.collectonly:
        return
    items[:] = [item for item in items if here not in item.path.parents] + mine
    used = set().union(*(item.fixturenames for item in mine if isinstance(item, pytest.Function)))
    if used & {"build_dir", "deb_package", "rpm_package", "dist_dir"}:
        _builds().binary()
    if used & {"deb_package", "rpm_package", "dist_dir"}:
        _builds().packages()
    if "debian11_root" in used:
        _builds().root()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _BUILDS is not None:
        _BUILDS.stop()


@pytest.fixture(scope="session")
def build_dir() -> Path:
    """build-binary.sh's OUT_DIR: the single file and the unpacked tree (cached by inputs)."""
    return _builds().binary().result(timeout=1200)


@pytest.fixture(scope="session")
def agent_binary(build_dir: Path) -> Path:
    """The single-file executable (staticx around PyInstaller's one-file build)."""
    return build_dir / "sendpost-agent"


@pytest.fixture(scope="session")
def agent_tree(build_dir: Path) -> Path:
    """The unpacked build the packages install as /usr/lib/sendpost-agent."""
    return build_dir / "sendpost-agent.dir"


@pytest.fixture(scope="session")
def deb_package() -> Path:
    return _builds().packages().result(timeout=1200).deb


def _with_rpm() -> _Packages:
    packages = _builds().packages().result(timeout=1200)
    if packages.rpm is None:
        pytest.skip(
            "rpmbuild is not installed (Debian package `rpm`; scripts/bootstrap.sh adds it)"
        )
    return packages


@pytest.fixture(scope="session")
def rpm_package() -> Path:
    rpm = _with_rpm().rpm
    assert rpm is not None
    return rpm


def _checksums(package: Path) -> None:
    """SHA256SUMS beside the package, as on the download site (install.sh checks it)."""
    digest = hashlib.sha256(package.read_bytes()).hexdigest()
    (package.parent / "SHA256SUMS").write_text(f"{digest}  {package.name}\n")


@pytest.fixture(scope="session")
def dist_dir() -> Path:
    """What `make packages` publishes: the downloads, signed SHA256SUMS, apt and yum repositories
    (build-repos.sh, with a test key generated in a fresh GnuPG home)."""
    dist = _with_rpm().dist
    assert dist is not None
    return dist


@pytest.fixture(scope="session")
def debian11_root() -> Path:
    """A minimal Debian 11 (bullseye, glibc 2.31) root from debootstrap, made once under build/."""
    root = _builds().root().result(timeout=1200)
    if root is None:
        pytest.skip("debootstrap needs root and the debootstrap package")
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
