"""The journald source on real journal files (written by systemd-journal-remote, read by the real
journalctl): the lines it gives, follow, restart from the cursor, rotation, the source choice."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sendpost_agent import heartbeat
from sendpost_agent.checkpoint import JournalPosition
from sendpost_agent.errors import ConfigError
from sendpost_agent.parse import adapter
from sendpost_agent.sources.choice import choose, verdict
from sendpost_agent.sources.journal import JournalTail, _decode, entry_line
from sendpost_agent.telemetry import Status

from tests.support.corpus import POSTFIX_LOGS
from tests.support.journal import Entry, append, micros, syslog_entries

from .loglines import log_text

START = micros(dt.datetime(2026, 2, 19, 8, 0, tzinfo=dt.UTC))
CORPUS_FILES = (
    "pixelpark-postfix-logsums.log",
    "kumina-postfix_exporter.log",
    "modoboa-modoboa.log",
    "youyo-postfix-log-parser.log",
    "whyscream-postfix-grok-patterns.log",
)


def corpus_lines() -> list[bytes]:
    """The corpus lines with a ``host ident[pid]: `` envelope (the others are not entries
    journald makes of Postfix's messages)."""
    lines: list[bytes] = []
    for name in CORPUS_FILES:
        lines += (POSTFIX_LOGS / name).read_bytes().splitlines(keepends=True)
    return [line for line in lines if syslog_entries([line], 0)]


def message_entries(first: int, stop: int, start: int = START) -> list[Entry]:
    """Entries of messages ``first``..``stop`` of loglines (events for each), one ms apart."""
    lines = log_text(first, stop).encode().splitlines()
    return syslog_entries(lines, start + first * 10 * 1000)


def noise(at: int) -> list[Entry]:
    """Entries of other facilities (auth, daemon), which the source must leave out."""
    return [
        Entry(at, b"mx", b"sshd", b"812", b"Accepted publickey for root from 192.0.2.7", 4),
        Entry(at + 1, b"mx", b"systemd", b"1", b"Started postfix@-.service.", 3),
    ]


def lines(entries: list[Entry]) -> bytes:
    return b"".join(e.line() for e in entries if e.facility == 2)


def read_until(tail: JournalTail, want: int, seconds: float = 20.0) -> bytes:
    """Read until ``want`` bytes came (journalctl writes as it reads); the deadline fails."""
    out = b""
    deadline = time.monotonic() + seconds
    while len(out) < want:
        data = tail.read()
        if data is None:
            assert time.monotonic() < deadline, f"read {len(out)} of {want} bytes: {tail.error}"
            time.sleep(0.01)
            continue
        out += data
    return out


def read_quiet(tail: JournalTail, seconds: float = 0.5) -> bytes:
    """What the source gives within ``seconds`` more (expected: nothing)."""
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out += tail.read() or b""
        time.sleep(0.01)
    return out


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    path = tmp_path / "journal"
    path.mkdir()
    return path


@pytest.fixture
def tails() -> Iterator[list[JournalTail]]:
    """Sources a test opened; closed (journalctl stopped) at the end whatever happens."""
    opened: list[JournalTail] = []
    yield opened
    for tail in opened:
        tail.close()


def test_entries_become_the_lines_of_the_file_source(
    journal_dir: Path, tails: list[JournalTail]
) -> None:
    """Real Postfix lines from the corpus stored as journal entries (among entries of other
    facilities) come back as ``RFC3339 host ident[pid]: message`` lines, in order, and the
    parser reads them as it reads the original file: the same lines parsed, ignored, unparsed,
    and the same events but for the timestamps."""
    original = corpus_lines()
    entries = syslog_entries(original, START)
    assert len(entries) == len(original) > 800
    mixed = entries[:500] + noise(entries[500].micros - 5) + entries[500:]
    append(journal_dir / "system.journal", mixed)
    tail = JournalTail(None, journal_dir, chunk_bytes=64 * 1024)
    tails.append(tail)
    expected = lines(mixed)
    got = read_until(tail, len(expected))
    assert got == expected
    assert tail.position is not None
    assert read_quiet(tail, 0.3) == b""
    # the parser sees the same lines: same counts as over the corpus lines themselves
    from_file, from_journal = adapter("postfix").parser(), adapter("postfix").parser()
    events_file = from_file.feed_json(b"".join(original)) + from_file.flush_json()
    events_journal = from_journal.feed_json(got) + from_journal.flush_json()
    file_stats, journal_stats = from_file.stats.to_json(), from_journal.stats.to_json()
    assert journal_stats["lines"] == len(entries)
    for key in ("lines", "parsed", "ignored", "unparsed", "invalid_utf8"):
        assert journal_stats[key] == file_stats[key], key
    assert len(events_journal) == len(events_file) >= 4


def test_follow_gives_appended_entries_once(journal_dir: Path, tails: list[JournalTail]) -> None:
    """Entries appended while the source follows the journal come next, each once, in order."""
    journal = journal_dir / "system.journal"
    first, more = message_entries(0, 30), message_entries(30, 60)
    append(journal, first)
    tail = JournalTail(None, journal_dir)
    tails.append(tail)
    assert read_until(tail, len(lines(first))) == lines(first)
    append(journal, noise(more[0].micros - 10) + more[:40])
    append(journal, more[40:])
    assert read_until(tail, len(lines(more))) == lines(more)
    assert read_quiet(tail) == b""


def test_restart_resumes_after_the_cursor(journal_dir: Path, tails: list[JournalTail]) -> None:
    """Stopped part-way (small reads) and started again from its position, with entries added in
    between: the two runs together give every line once, in order."""
    journal = journal_dir / "system.journal"
    entries = message_entries(0, 80)
    append(journal, entries[:300])
    first = JournalTail(None, journal_dir, chunk_bytes=4096)
    tails.append(first)
    got = read_until(first, 1)  # some entries, not all: 4 KB of JSON at most
    position = first.position
    first.close()
    assert isinstance(position, JournalPosition)
    assert 0 < len(got) < len(lines(entries[:300]))
    append(journal, entries[300:])
    second = JournalTail(position, journal_dir)
    tails.append(second)
    rest = read_until(second, len(lines(entries)) - len(got))
    assert got + rest == lines(entries)
    assert read_quiet(second) == b""


def test_rotation_to_a_new_file_loses_and_repeats_nothing(
    journal_dir: Path, tails: list[JournalTail]
) -> None:
    """journald's rotation (system.journal renamed to system@….journal, a new system.journal):
    a source following it reads on into the new file; a source started again from a cursor in
    the rotated file finishes it, then reads the new file; no line lost, none repeated."""
    journal = journal_dir / "system.journal"
    entries = message_entries(0, 90)
    a, b, c = entries[:150], entries[150:300], entries[300:]
    append(journal, a)
    follow = JournalTail(None, journal_dir)
    tails.append(follow)
    assert read_until(follow, len(lines(a))) == lines(a)
    restart = JournalTail(None, journal_dir, chunk_bytes=4096)
    tails.append(restart)
    part = read_until(restart, 1)
    position = restart.position
    restart.close()
    os.rename(journal, journal_dir / "system@0b5e0d1f2c3a4b5c8d9e0f1a2b3c4d5e-01-01.journal")
    append(journal, b)  # a new file (its own sequence number ID)
    assert read_until(follow, len(lines(b))) == lines(b)
    os.rename(journal, journal_dir / "system@0b5e0d1f2c3a4b5c8d9e0f1a2b3c4d5e-02-02.journal")
    append(journal, c)
    assert read_until(follow, len(lines(c))) == lines(c)
    assert read_quiet(follow) == b""
    again = JournalTail(position, journal_dir)
    tails.append(again)
    rest = read_until(again, len(lines(entries)) - len(part))
    assert part + rest == lines(entries)
    assert read_quiet(again) == b""


def test_journalctl_that_cannot_read_is_an_error_not_lines(tmp_path: Path) -> None:
    """A journal directory that is not there: no lines, an error naming journalctl's exit,
    and journalctl started again later, not in a busy loop; once the directory is there, its
    lines come and the error is cleared."""
    clock = [100.0]
    tail = JournalTail(None, tmp_path / "absent", restart_after=5.0, clock=lambda: clock[0])
    try:
        deadline = time.monotonic() + 20
        while tail.error is None and time.monotonic() < deadline:
            assert tail.read() is None
            time.sleep(0.01)
        assert tail.error is not None
        assert tail.error.startswith("journalctl exited with status")
        assert tail.starts == 1
        clock[0] += 4.9
        assert tail.read() is None  # not started again before restart_after
        assert tail.starts == 1
        clock[0] += 0.1
        assert tail.read() is None
        assert tail.starts == 2
        deadline = time.monotonic() + 20
        while tail.running and time.monotonic() < deadline:  # (it fails again, at its pace)
            assert tail.read() is None
            time.sleep(0.01)
        assert not tail.running
        # the directory appears: the next start reads it, and the error is gone
        entries = message_entries(0, 2)
        (tmp_path / "absent").mkdir()
        append(tmp_path / "absent" / "system.journal", entries)
        clock[0] += 5.0
        assert read_until(tail, len(lines(entries))) == lines(entries)
        assert tail.error is None
        assert read_quiet(tail, 0.2) == b""
        assert tail.error is None
    finally:
        tail.close()


def test_entry_line_forms() -> None:
    """Lines from entries: PID from SYSLOG_PID else _PID, none without one, non-UTF-8 bytes
    (journalctl's list of numbers) kept, newlines flattened, no line without a message."""
    base = {"__REALTIME_TIMESTAMP": "1771488000000001", "_HOSTNAME": "mx"}
    stamp = b"2026-02-19T08:00:00.000001+00:00 mx "
    smtp = {**base, "SYSLOG_IDENTIFIER": "postfix/smtp", "_PID": "7", "MESSAGE": "a\nb"}
    assert entry_line(smtp) == stamp + b"postfix/smtp[7]: a b\n"
    qmgr = {**base, "SYSLOG_IDENTIFIER": "postfix/qmgr", "SYSLOG_PID": "8", "_PID": "9"}
    assert entry_line({**qmgr, "MESSAGE": [0x41, 0xFF]}) == stamp + b"postfix/qmgr[8]: A\xff\n"
    kernel = {**base, "SYSLOG_IDENTIFIER": "kernel", "MESSAGE": "x"}
    assert entry_line(kernel) == stamp + b"kernel: x\n"
    assert entry_line({**base, "MESSAGE": None}) is None


def test_choice_of_source(journal_dir: Path, tmp_path: Path) -> None:
    """`journald` reads the journal; the default path, absent, falls back to the journal when it
    holds Postfix's entries and fails naming both otherwise; present, it is read; another
    absent path is an error that names journald as the way out."""
    default = tmp_path / "mail.log"
    assert choose(Path("journald"), journal_dir, default).journal
    with pytest.raises(ConfigError, match="holds no Postfix log entries; set log-path"):
        choose(default, journal_dir, default)
    append(journal_dir / "system.journal", noise(START))
    with pytest.raises(ConfigError, match="holds no Postfix log entries"):
        choose(default, journal_dir, default)
    append(journal_dir / "system.journal", message_entries(0, 2, START + 10))
    chosen = choose(default, journal_dir, default)
    assert (chosen.journal, chosen.path) == (True, None)
    assert f"{default} does not exist and the journal in {journal_dir} holds Postfix" in (
        chosen.reason
    )
    ok, line = verdict(chosen, journal_dir)
    assert ok
    assert line.startswith(f"ok   the log: journal files in {journal_dir} ({default} does not")
    default.write_text("")
    assert choose(default, journal_dir, default).path == default
    with pytest.raises(ConfigError, match="log-path: journald"):
        choose(tmp_path / "maillog", journal_dir, default)


def test_the_heartbeat_names_the_journal() -> None:
    """With the journald source the heartbeat's source is ``journald`` and the bytes behind are
    unknown (None), not a size computed from a file that does not exist; a file is
    ``file:PATH``."""
    health = lambda: (200, {"reasons": []})  # noqa: E731
    beat = heartbeat.build(Status(log_path="journald", wal_max_bytes=1000), health, 1.8e9)
    assert (beat.source, beat.log_bytes_behind) == ("journald", None)
    beat = heartbeat.build(Status(log_path="/var/log/mail.log", wal_max_bytes=1000), health, 1.8e9)
    assert beat.source == "file:/var/log/mail.log"


def test_lines_that_are_not_json_are_skipped_alone() -> None:
    """Decoding a chunk of journalctl's lines at once: one that is not JSON is None and the
    others are kept; two broken halves that would join into one document do not."""
    good = b'{"__CURSOR":"c1","MESSAGE":"m"}'
    assert _decode([good, b"{broken", good]) == [json.loads(good), None, json.loads(good)]
    assert _decode([b'{"a":1', b'"b":2}']) == [None, None]
    assert _decode([good, good]) == [json.loads(good)] * 2


def test_a_cursor_whose_file_was_vacuumed_goes_on_after_it(
    journal_dir: Path, tails: list[JournalTail]
) -> None:
    """The rotated file that held the saved cursor is deleted (journald's vacuuming) before the
    restart: the source goes on with the entries after it in the remaining files, once each,
    none from before the cursor (the vacuumed file's unread entries are gone, as lines of a
    deleted log file are)."""
    journal = journal_dir / "system.journal"
    entries = message_entries(0, 40)
    old, new = entries[:100], entries[100:]
    append(journal, old)
    first = JournalTail(None, journal_dir, chunk_bytes=4096)
    tails.append(first)
    read_until(first, 1)
    position = first.position
    first.close()
    rotated = journal_dir / "system@0b5e0d1f2c3a4b5c8d9e0f1a2b3c4d5e-01-01.journal"
    os.rename(journal, rotated)
    append(journal, new)
    rotated.unlink()
    again = JournalTail(position, journal_dir)
    tails.append(again)
    assert read_until(again, len(lines(new))) == lines(new)
    assert read_quiet(again) == b""
