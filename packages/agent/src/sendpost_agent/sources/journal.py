"""Follow the mail entries of the systemd journal, as the log lines a syslog daemon would write.

:class:`JournalTail` runs ``journalctl --follow --output=json`` as a child process (the way
Vector's journald source reads the journal: no libsystemd binding to bundle, and journalctl
already follows rotation, vacuuming and new journal files) and turns each entry into the line
rsyslog's ``mail.*`` rule would have put into ``/var/log/mail.log``::

    2026-12-04T21:19:57.243100+00:00 mx1 postfix/smtp[4242]: 4QpLx21Z0hz9rwP: to=<…>, …

(``__REALTIME_TIMESTAMP`` in UTC with microseconds, ``_HOSTNAME``, ``SYSLOG_IDENTIFIER``,
``SYSLOG_PID`` or ``_PID``, ``MESSAGE``), so the parser sees what the file source gives it.

Which entries: ``SYSLOG_FACILITY=2`` (mail). Postfix opens syslog with ``syslog_facility``,
``mail`` by default, and identifiers ``{syslog_name}/{program}`` (``postfix/smtp``,
``postfix/qmgr``, ``postfix-out/smtp`` for a second instance): the facility takes every instance
and program without listing them, and is exactly what Debian's rsyslog writes to mail.log.

Position: the ``__CURSOR`` of the last entry whose line :meth:`JournalTail.read` returned
(:class:`~sendpost_agent.checkpoint.JournalPosition`). A restart passes it as ``--cursor`` (not
``--after-cursor``) and drops the first entry if it is that one: journalctl's ``--after-cursor``
skips one entry past where the cursor seeks to, which, when the cursor's entry is gone (its file
vacuumed), is the first entry not yet read. The seek itself is by sequence number and time, so a
vacuumed cursor still lands where it was. Like
:class:`~sendpost_agent.sources.file.FileTail`, nothing here sleeps; the one clock read decides
when a journalctl that exited is started again (``restart_after`` seconds later).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sendpost_agent.checkpoint import JournalPosition

log = logging.getLogger(__name__)

MAIL_FACILITY = "SYSLOG_FACILITY=2"
FIELDS = "MESSAGE,_HOSTNAME,SYSLOG_IDENTIFIER,SYSLOG_PID,_PID"
# Postfix programs of which every running Postfix has logged something: one entry of these in the
# journal means "Postfix logs here" (see :func:`holds_postfix`).
POSTFIX_PROGRAMS = ("master", "qmgr", "pickup", "smtpd", "smtp", "cleanup", "postfix-script")
MAX_ENTRY_BYTES = 1 << 20  # a JSON entry longer than this is skipped (Postfix lines are ~2 KB)
_STDERR_KEEP = 4096
HEALTHY_AFTER = 1.0  # seconds a journalctl runs before an error of the one before is cleared
DENIED = "the journal cannot be read by this user (add it to the systemd-journal group)"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def journalctl_path() -> str | None:
    """The journalctl executable: on PATH, else where systemd installs it; None if absent."""
    found = shutil.which("journalctl")
    if found:
        return found
    for candidate in ("/usr/bin/journalctl", "/bin/journalctl"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _where(directory: Path | None) -> list[str]:
    return [f"--directory={directory}"] if directory is not None else []


def follow_command(
    journalctl: str, after: JournalPosition | None, directory: Path | None
) -> list[str]:
    """The journalctl command line of :class:`JournalTail`: every mail entry from ``after`` (its
    own entry first, if it is still there; from the journal's start without one), then new ones
    as they come."""
    cmd = [journalctl, "--follow", "--no-tail", "--output=json", "--all", "--no-pager"]
    cmd += [f"--output-fields={FIELDS}", *_where(directory)]
    if after is not None:
        cmd.append(f"--cursor={after.cursor}")
    return [*cmd, MAIL_FACILITY]


def holds_postfix(
    journalctl: str, directory: Path | None, timeout: float = 10.0
) -> tuple[bool, str]:
    """Whether the journal holds a mail entry of a Postfix program, and a reason for ``check``:
    ``(True, "…")`` when it does, ``(False, what journalctl said)`` otherwise."""
    idents = [
        f"SYSLOG_IDENTIFIER=postfix/{p}" for p in POSTFIX_PROGRAMS
    ]  # same field: journalctl ORs them; the facility match is ANDed
    cmd = [journalctl, "--lines=1", "--output=json", "--no-pager", f"--output-fields={FIELDS}"]
    cmd += [*_where(directory), MAIL_FACILITY, *idents]
    try:
        done = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"journalctl could not be run: {exc}"
    where = f"the journal in {directory}" if directory is not None else "the journal"
    if done.stdout.strip():
        return True, f"{where} holds Postfix's log entries"
    if _denied(done.stderr):
        return False, f"{where} cannot be read by this user (add it to the systemd-journal group)"
    if done.returncode != 0:
        return False, f"journalctl failed ({_last_line(done.stderr) or done.returncode})"
    hint = _last_line(done.stderr)
    return False, f"{where} holds no Postfix log entries" + (f" ({hint})" if hint else "")


def _denied(stderr: bytes) -> bool:
    """journalctl's words for "this user may not read (all of) the journal": no file could be
    opened, or only the user's own journal was (the hint about groups adm, systemd-journal)."""
    text = stderr.decode("utf-8", "replace")
    return "insufficient permissions" in text or "not seeing messages from other users" in text


def _last_line(raw: bytes) -> str:
    lines = [ln.strip() for ln in raw.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _text(value: Any) -> bytes:
    """A journal field in journalctl's JSON: a string, bytes as a list of numbers (not UTF-8 or
    with control characters), a list of those (a field given more than once: the first)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, list) and value:
        if all(isinstance(b, int) for b in value):
            return bytes(b & 0xFF for b in value)
        return _text(value[0])
    return b""


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> bytes:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) of a second since the epoch (many entries share one)."""
    return (_EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S").encode()


def entry_line(entry: dict[str, Any]) -> bytes | None:
    """The syslog line of one journal entry (ending with ``\\n``); None without a message."""
    message = _text(entry.get("MESSAGE"))
    if not message:
        return None
    message = message.replace(b"\n", b" ").replace(b"\r", b" ")
    try:
        seconds, fraction = divmod(int(entry["__REALTIME_TIMESTAMP"]), 1_000_000)
        moment = b"%s.%06d+00:00" % (_second(seconds), fraction)
    except (KeyError, ValueError, TypeError, OverflowError):
        return None
    host = _text(entry.get("_HOSTNAME")).replace(b" ", b"") or b"localhost"
    ident = _text(entry.get("SYSLOG_IDENTIFIER")).replace(b" ", b"")
    pid = _text(entry.get("SYSLOG_PID")) or _text(entry.get("_PID"))
    tag = ident + b"[" + pid + b"]" if ident and pid.isdigit() else ident
    prefix = moment + b" " + host + b" "
    return prefix + (tag + b": " if tag else b"") + message + b"\n"


def _decode(raws: list[bytes]) -> list[Any]:
    """The JSON documents of these lines: all in one call (faster than one per line), or, if
    one of them is not JSON, one by one (None for that one)."""
    try:
        docs = json.loads(b"[" + b",".join(raws) + b"]")
        if len(docs) == len(raws):  # (two broken lines could join into one document)
            return list(docs)
    except ValueError:
        pass
    out: list[Any] = []
    for raw in raws:
        try:
            out.append(json.loads(raw))
        except ValueError:
            out.append(None)
    return out


class JournalTail:
    """The journald log source (see the module docstring); ``directory``: read the journal files
    there (``journalctl --directory``) instead of the system journal."""

    def __init__(
        self,
        start: JournalPosition | None,
        directory: Path | None = None,
        chunk_bytes: int = 256 * 1024,
        journalctl: str | None = None,
        restart_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.chunk_bytes = chunk_bytes
        self.restart_after = restart_after
        self.error: str | None = None
        self.entries = 0
        """Entries turned into lines since start (the journal's counterpart of a byte offset)."""
        self.skipped = 0
        self.starts = 0
        """journalctl processes started (one, unless it exited)."""
        self._journalctl = journalctl or journalctl_path()
        self._clock = clock
        self._position = start
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending = b""
        self._skipping = False
        self._stderr = b""
        self._next_start = 0.0
        self._started_at = 0.0
        self._first = True  # the next entry is the first of this journalctl's

    @property
    def position(self) -> JournalPosition | None:
        return self._position

    @property
    def running(self) -> bool:
        """Whether a journalctl is running (None started yet, or the last one exited)."""
        return self._proc is not None

    def command(self) -> Sequence[str]:
        assert self._journalctl is not None
        return follow_command(self._journalctl, self._position, self.directory)

    # -- reading --------------------------------------------------------------------------------

    def read(self) -> bytes | None:
        """The lines of the next entries, or None when there is nothing new right now."""
        for _ in range(16):
            proc = self._proc or self._start()
            if proc is None:
                return None
            assert proc.stdout is not None
            try:
                data = os.read(proc.stdout.fileno(), self.chunk_bytes)
            except BlockingIOError:  # journalctl runs and waits for entries
                self._drain_stderr()
                if _denied(self._stderr):
                    self.error = DENIED
                elif self._clock() - self._started_at >= HEALTHY_AFTER:
                    self.error = None  # (not at once: a journalctl that fails needs a moment)
                return None
            if not data:
                self._ended(proc)
                return None
            self.error = None
            lines = self._lines(data)
            if lines:
                return lines
        return None

    def _lines(self, data: bytes) -> bytes:
        buf = self._pending + data if self._pending else data
        cut = buf.rfind(b"\n") + 1
        self._pending = buf[cut:]
        out: list[bytes] = []
        raws = buf[:cut].split(b"\n")[:-1]
        if self._skipping and raws:  # the rest of an entry too long to keep
            self._skipping = False
            raws = raws[1:]
        for raw, entry in zip(raws, _decode(raws), strict=True):
            try:
                cursor = entry["__CURSOR"]
            except (KeyError, TypeError):
                log.warning("journalctl wrote a line that is not an entry: %r", raw[:200])
                self.skipped += 1
                continue
            first, self._first = self._first, False
            if first and self._position is not None and cursor == self._position.cursor:
                continue  # --cursor starts with the entry already read, when it is still there
            line = entry_line(entry)
            if line is None:
                self.skipped += 1
            else:
                out.append(line)
                self.entries += 1
            self._position = JournalPosition(str(cursor))
        if len(self._pending) > MAX_ENTRY_BYTES:
            log.warning("a journal entry longer than %d bytes; skipped", MAX_ENTRY_BYTES)
            self.skipped += 1
            self._pending, self._skipping = b"", True
        return b"".join(out)

    # -- the child process ----------------------------------------------------------------------

    def _start(self) -> subprocess.Popen[bytes] | None:
        if self._clock() < self._next_start:
            return None
        if self._journalctl is None:
            self.error = "journalctl not found (install systemd's journalctl)"
            self._next_start = self._clock() + self.restart_after
            return None
        cmd = self.command()
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            self.error = f"cannot run {cmd[0]}: {exc.strerror or exc}"
            log.error("%s", self.error)
            self._next_start = self._clock() + self.restart_after
            return None
        self.starts += 1
        self._started_at = self._clock()
        assert proc.stdout is not None
        assert proc.stderr is not None
        os.set_blocking(proc.stdout.fileno(), False)
        os.set_blocking(proc.stderr.fileno(), False)
        self._proc, self._pending, self._skipping, self._stderr = proc, b"", False, b""
        self._first = True
        where = f"journal files in {self.directory}" if self.directory else "the system journal"
        after = f"from cursor {self._position.cursor}" if self._position else "from its start"
        log.info("reading %s (%s), %s", where, MAIL_FACILITY, after)
        return proc

    def _drain_stderr(self) -> None:
        proc = self._proc
        if proc is None or proc.stderr is None:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(proc.stderr.fileno(), 65536):
                self._stderr = (self._stderr + chunk)[-_STDERR_KEEP:]

    def _ended(self, proc: subprocess.Popen[bytes]) -> None:
        """journalctl closed its output: record why, and start it again later (from the
        position: an entry cut short is read again whole)."""
        self._drain_stderr()
        status = proc.wait()
        self._close(proc)
        self._proc = None
        self.error = f"journalctl exited with status {status}: {_last_line(self._stderr)}"
        log.error("%s; starting it again in %.0f s", self.error, self.restart_after)
        self._next_start = self._clock() + self.restart_after

    @staticmethod
    def _close(proc: subprocess.Popen[bytes]) -> None:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._close(proc)
