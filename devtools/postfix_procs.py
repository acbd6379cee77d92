"""Host-side chores of a private Postfix: its queue directories and its processes."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import time
from pathlib import Path

POSTFIX_FILES = Path("/etc/postfix/postfix-files")


def create_queue_dirs(root: Path) -> None:
    """Create queue and data directories as post-install would, then skip its slow checks.

    Ownership and modes come from Postfix's own postfix-files list; with them in place the
    ``quick-start`` marker lets ``postfix start`` skip ``post-install create-missing`` and the
    integrity checks (about 1.5 s per start). Without the list, Postfix does it all itself.
    """
    places = {"$queue_directory": root / "spool", "$data_directory": root / "data"}
    places["$queue_directory"].mkdir()
    places["$data_directory"].mkdir()
    try:
        listing = POSTFIX_FILES.read_text()
    except FileNotFoundError:
        return
    users = {"$mail_owner": "postfix", "root": "root"}
    groups = {"$setgid_group": "postdrop", "root": "root"}
    for line in listing.splitlines():
        fields = line.split(":")
        if len(fields) < 5 or fields[1] != "d":
            continue
        base, _, sub = fields[0].partition("/")
        if base not in places:
            continue
        path = places[base] / sub if sub else places[base]
        path.mkdir(exist_ok=True)
        path.chmod(int(fields[4], 8))
        os.chown(path, pwd.getpwnam(users[fields[2]]).pw_uid, _gid(groups.get(fields[3])))
    (places["$queue_directory"] / "quick-start").touch()


def _gid(group: str | None) -> int:
    return -1 if group is None else grp.getgrnam(group).gr_gid


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (PID 1 here may reap them late)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        state, _ppid, group = stat.rpartition(")")[2].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def wait_gone(pgid: int, timeout: float) -> bool:
    """Wait until no live process is left in process group ``pgid``."""
    deadline = time.monotonic() + timeout
    while live_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


# -- instances abandoned by a process that died without stop() (SIGKILL, os._exit) ------------

OWNER_FILE = "owner"


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a live owner from a reused PID)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def claim(root: Path) -> None:
    """Mark ``root`` as belonging to this process while the instance runs."""
    (root / OWNER_FILE).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")


def release(root: Path) -> None:
    """Drop the mark (a directory kept on purpose is then never reaped)."""
    (root / OWNER_FILE).unlink(missing_ok=True)


def _abandoned(root: Path) -> bool:
    try:
        pid, started = (root / OWNER_FILE).read_text().split()
    except (OSError, ValueError):
        return False  # no mark: being created, or kept on purpose
    return _start_time(int(pid)) != started


def reap_abandoned(parent: Path, prefix: str) -> list[Path]:
    """Kill the Postfix of every ``prefix*`` directory whose owner died, and remove the directory.

    A master is killed only if it still runs from that directory's queue (its working directory),
    so a reused PID is never hit. Returns the directories removed.
    """
    reaped = []
    for root in parent.glob(f"{prefix}*"):
        if not _abandoned(root):
            continue
        try:
            master = int((root / "spool" / "pid" / "master.pid").read_text().split()[0])
            runs_here = Path(os.readlink(f"/proc/{master}/cwd")) == root / "spool"
        except (OSError, ValueError, IndexError):
            runs_here = False
        if runs_here:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(master, signal.SIGKILL)
            wait_gone(master, 10)
        shutil.rmtree(root, ignore_errors=True)
        reaped.append(root)
    return reaped
