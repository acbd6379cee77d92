"""The single-file download's launchers: if one is killed, the agent stops and cleans up for it.

The single file runs as three processes: staticx's bootloader unpacks the C library into
``$TMPDIR/staticx-*`` and starts PyInstaller's bootloader, which unpacks Python into
``$TMPDIR/_MEI*`` and starts the interpreter running the agent. Each launcher waits for its
child, then removes what it unpacked. A launcher killed with SIGKILL does neither: its child would
run on as an orphan (holding the state directory's lock, so a restarted agent refuses to start)
and its directory would stay behind.

:func:`watch` follows the launchers through pidfds: when one dies, the agent is asked to stop
(the same graceful stop as SIGTERM), and :func:`clean_up` removes the directories of the launchers
that are gone. The installed packages run unpacked, with no launcher: both do nothing there.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Launcher:
    pid: int
    pidfd: int
    unpacked: Path

    def gone(self) -> bool:
        return bool(select.select([self.pidfd], [], [], 0)[0])


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ")".
    return int(stat.rsplit(")", 1)[1].split()[1])


def _pidfd(pid: int | None) -> int | None:
    if pid is None or pid <= 1:
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def launchers(env: dict[str, str] | None = None) -> list[Launcher]:
    """The launchers above this process (nearest first), with what each one unpacked."""
    env = dict(os.environ) if env is None else env
    found: list[Launcher] = []
    meipass = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or meipass is None:
        return found
    unpacked = Path(meipass)
    if unpacked.resolve() == Path(sys.executable).resolve().parent / "_internal":
        return found  # the unpacked build: nothing was unpacked, no launcher
    parent = os.getppid()
    fd = _pidfd(parent)
    if fd is None:
        return found
    found.append(Launcher(parent, fd, unpacked))
    bundle = env.get("STATICX_BUNDLE_DIR")
    grandparent = _parent_of(parent)
    fd = _pidfd(grandparent) if bundle else None
    if bundle and grandparent is not None and fd is not None:
        found.append(Launcher(grandparent, fd, Path(bundle)))
    return found


_watched: list[Launcher] = []


@contextlib.contextmanager
def watch(on_gone: Callable[[], None]) -> Iterator[list[Launcher]]:
    """Call ``on_gone`` (from a thread) once, when any launcher above this process dies."""
    found = launchers()
    _watched[:] = found
    if not found:
        yield found
        return
    wake_r, wake_w = os.pipe()

    def follow() -> None:
        ready, _, _ = select.select([wake_r, *(launcher.pidfd for launcher in found)], [], [])
        if wake_r not in ready:
            on_gone()

    thread = threading.Thread(target=follow, name="launcher-watch", daemon=True)
    thread.start()
    try:
        yield found
    finally:
        os.write(wake_w, b"x")
        thread.join(timeout=5)
        os.close(wake_r)
        os.close(wake_w)


def clean_up() -> None:
    """Remove what each dead launcher unpacked (a live one removes its own when this exits)."""
    for launcher in _watched:
        if launcher.gone():
            shutil.rmtree(launcher.unpacked, ignore_errors=True)
        os.close(launcher.pidfd)
    _watched.clear()
