"""Real systemd journal files for the journald source's tests.

Debian's ``systemd-journal-remote`` (package ``systemd-journal-remote``) reads the journal export
format on standard input and appends the entries to a journal file (``--output=…/x.journal``),
the same on-disk format journald writes; ``journalctl --directory`` reads and follows it.

:func:`syslog_entries` turns syslog lines (the corpus, :mod:`tests.agent.daemon.loglines`) into
the entries journald makes of what Postfix sends to ``/dev/log``: ``SYSLOG_IDENTIFIER``
``postfix/smtp``, ``SYSLOG_PID``, ``SYSLOG_FACILITY`` 2 (mail), ``MESSAGE`` the text after
``: ``; the time is given by the test, the host name kept.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import struct
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

JOURNAL_REMOTE = Path("/lib/systemd/systemd-journal-remote")
BOOT_ID = "0b5e0d1f2c3a4b5c8d9e0f1a2b3c4d5e"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# stamp, host, identifier[pid]: message (the stamp forms of FORMATS.md; tests only)
_LINE = re.compile(
    rb"^(?P<stamp>.+?) (?P<host>\S+) (?P<ident>[\w./-]+)\[(?P<pid>\d+)\]: (?P<msg>.*)$"
)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One journal entry as journald stores a syslog message."""

    micros: int  # __REALTIME_TIMESTAMP
    host: bytes
    ident: bytes
    pid: bytes
    message: bytes
    facility: int = 2

    def line(self) -> bytes:
        """The syslog line the journald source is to give for this entry (RFC 3339, UTC)."""
        moment = _EPOCH + dt.timedelta(microseconds=self.micros)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00").encode()
        return b"%s %s %s[%s]: %s\n" % (stamp, self.host, self.ident, self.pid, self.message)


def syslog_entries(
    lines: Iterable[bytes], start_micros: int, step_micros: int = 1000
) -> list[Entry]:
    """Entries for the syslog lines that have a ``host ident[pid]: `` envelope, one
    ``step_micros`` apart from ``start_micros``; other lines are left out."""
    out = []
    for raw in lines:
        match = _LINE.match(raw.rstrip(b"\n"))
        if match is None:
            continue
        micros = start_micros + len(out) * step_micros
        out.append(Entry(micros, match["host"], match["ident"], match["pid"], match["msg"]))
    return out


def micros(moment: dt.datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _field(name: bytes, value: bytes) -> bytes:
    """One field in the export format; the binary form, safe for any bytes."""
    return name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"


def export(entries: Sequence[Entry]) -> bytes:
    """The entries in the journal export format."""
    out = []
    for e in entries:
        out.append(
            b"__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n"
            % (e.micros, e.micros - 1_700_000_000_000_000, BOOT_ID.encode())
        )
        out.append(b"_HOSTNAME=%s\nSYSLOG_FACILITY=%d\n" % (e.host, e.facility))
        out.append(b"SYSLOG_IDENTIFIER=%s\nSYSLOG_PID=%s\n_PID=%s\n" % (e.ident, e.pid, e.pid))
        out.append(_field(b"MESSAGE", e.message) + b"\n")
    return b"".join(out)


def append(journal: Path, entries: Sequence[Entry]) -> None:
    """Append the entries to the journal file ``journal`` (``*.journal``; created if absent)."""
    done = subprocess.run(
        [str(JOURNAL_REMOTE), f"--output={journal}", "-"],
        input=export(entries),
        capture_output=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"systemd-journal-remote failed: {done.stderr.decode()[-500:]}")
