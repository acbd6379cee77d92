"""``sendpost-agent run`` with ``log-path: journald`` as a real process on real journal files:
SIGTERM saves the journal cursor; SIGKILL at random moments, with journal rotations in between,
loses no event and repeats none beyond the WAL's guarantee; ``check`` says which source and why."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sendpost_agent.checkpoint import DB_NAME, JournalPosition, StateDb

from tests.support.fake_ingest import FakeIngest
from tests.support.journal import Entry, append

from .helpers import agent_env, expected_events, last_run_copies
from .loglines import log_text
from .test_journal_source import lines, message_entries, noise


@pytest.fixture
def ingest() -> Iterator[FakeIngest]:
    with FakeIngest(keys={"test-key"}) as server:
        yield server


def _agent(tmp_path: Path, command: str, url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "sendpost_agent.cli", command,
        "--api-key", "test-key", "--endpoint", url,
        "--log-path", "journald", "--journal-directory", str(tmp_path / "journal"),
        "--state-dir", str(tmp_path / "state"),
        "--listen", "127.0.0.1:0", "--config", str(tmp_path / "none.yaml"), *extra,
    ]  # fmt: skip


def _start(tmp_path: Path, url: str) -> subprocess.Popen[bytes]:
    with open(tmp_path / "agent.log", "ab") as log:
        return subprocess.Popen(
            _agent(tmp_path, "run", url,
                   "--batch-wait", "0.05", "--poll-interval", "0.02", "--retry-initial", "0.05",
                   "--checkpoint-interval", "0.05", "--read-chunk-bytes", "8KB",
                   "--batch-size", "20"),
            env=agent_env(),
            stderr=log,
        )  # fmt: skip


def _journalctl_children(journal: Path) -> list[int]:
    """PIDs of journalctl processes reading ``journal`` (the agents' children)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"journalctl") for a in argv[:1]) and (
            f"--directory={journal}".encode() in argv
        ):
            found.append(int(proc.name))
    return found


def _last_cursor(journal: Path) -> str:
    out = subprocess.run(
        ["journalctl", f"--directory={journal}", "--output=json", "--lines=1", "--no-pager",
         "SYSLOG_FACILITY=2"],
        capture_output=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return str(json.loads(out)["__CURSOR"])


def _setup(tmp_path: Path) -> Path:
    (tmp_path / "none.yaml").write_text("")
    journal = tmp_path / "journal"
    journal.mkdir()
    return journal


def test_sigterm_saves_the_journal_cursor(tmp_path: Path, ingest: FakeIngest) -> None:
    """SIGTERM after the events arrived: exit 0, the saved cursor is the last mail entry's
    (entries of other facilities after it are not read), every event sent once."""
    journal = _setup(tmp_path)
    entries = message_entries(0, 40)
    append(journal / "system.journal", entries)
    last = _last_cursor(journal)
    append(journal / "system.journal", noise(entries[-1].micros + 10))
    expected = expected_events(lines(entries).decode())
    proc = _start(tmp_path, ingest.url)
    try:
        assert ingest.wait_for(lambda s: len(s.events) >= len(expected))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()
    cursor = StateDb(tmp_path / "state" / DB_NAME).load()
    assert cursor is not None
    assert cursor.position == JournalPosition(last)
    assert sorted(expected) == sorted(ingest.event_ids().elements())
    log = (tmp_path / "agent.log").read_text()
    assert "log journald (log-path is journald)" in log
    assert _journalctl_children(journal) == []


@pytest.mark.slow
def test_sigkill_at_random_moments_with_rotations_loses_nothing(
    tmp_path: Path, ingest: FakeIngest
) -> None:
    """Killed with SIGKILL 12 times while entries keep coming, the journal rotated (a new
    system.journal) every third time, restarted each time: every event arrives, an event
    received twice is byte-for-byte the same; no journalctl is left behind."""
    journal = _setup(tmp_path)
    rng = random.Random(20261204)
    written: list[Entry] = []
    messages = 0
    for round_ in range(12):
        batch = message_entries(messages, messages + 30)
        append(journal / "system.journal", batch)
        written, messages = written + batch, messages + 30
        if round_ % 3 == 2:
            (journal / "system.journal").rename(journal / f"system@{round_:032x}-1-1.journal")
        proc = _start(tmp_path, ingest.url)
        try:
            seen = len(ingest.events)  # started and reading (a loaded machine starts slowly)
            deadline = time.monotonic() + 30
            while len(ingest.events) == seen and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))  # the kill moment, not a synchronisation
        finally:
            proc.kill()
            proc.wait()
    batch = message_entries(messages, messages + 5)
    append(journal / "system.journal", batch)
    written += batch
    expected = expected_events(lines(written).decode())
    copies = last_run_copies(_start(tmp_path, ingest.url), ingest, expected)
    assert set(expected) == set(copies)
    assert {json.dumps(e, sort_keys=True) for e in expected.values()} == {
        next(iter(c)) for c in copies.values()
    }
    assert all(len(c) == 1 for c in copies.values())
    deadline = time.monotonic() + 10  # journalctl ends when its reader is gone (POLLHUP)
    while _journalctl_children(journal) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _journalctl_children(journal) == []


def test_check_says_which_source_and_why(tmp_path: Path, ingest: FakeIngest) -> None:
    """`check` with log-path journald: one line naming the journal and why it was chosen, and
    whether it holds Postfix's entries (exit 1 while it holds none, 0 once it does)."""
    journal = _setup(tmp_path)
    append(journal / "system.journal", noise(1_771_488_000_000_000))
    cmd = _agent(tmp_path, "check", ingest.url)
    first = subprocess.run(cmd, env=agent_env(), capture_output=True, text=True, timeout=60)
    assert first.returncode == 1
    assert (
        f"FAIL the log: journal files in {journal} (log-path is journald), but the journal in "
        f"{journal} holds no Postfix log entries"
    ) in first.stdout
    append(journal / "system.journal", message_entries(0, 1))
    second = subprocess.run(cmd, env=agent_env(), capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stdout
    assert (
        f"ok   the log: journal files in {journal} (log-path is journald; the journal in "
        f"{journal} holds Postfix's log entries)"
    ) in second.stdout.splitlines()


def test_switching_from_the_file_to_the_journal(tmp_path: Path, ingest: FakeIngest) -> None:
    """A state directory whose cursor is in a file, then log-path journald: the journal is read
    from its start (the file cursor is not applied to it), with a warning; the journal's cursor
    then replaces the file's."""
    journal = _setup(tmp_path)
    (tmp_path / "mail.log").write_text(log_text(100, 105))
    with open(tmp_path / "agent.log", "ab") as log:
        file_agent = subprocess.Popen(
            [*_agent(tmp_path, "run", ingest.url), "--log-path", str(tmp_path / "mail.log"),
             "--checkpoint-interval", "0.05", "--batch-wait", "0.05"],
            env=agent_env(), stderr=log,
        )  # fmt: skip
    try:
        assert ingest.wait_for(lambda s: len(s.events) >= 5)
        file_agent.send_signal(signal.SIGTERM)
        assert file_agent.wait(timeout=20) == 0
    finally:
        file_agent.kill()
        file_agent.wait()
    before = StateDb(tmp_path / "state" / DB_NAME).load()
    assert before is not None
    assert not isinstance(before.position, JournalPosition)
    entries = message_entries(0, 10)
    append(journal / "system.journal", entries)
    expected = expected_events(lines(entries).decode())
    proc = _start(tmp_path, ingest.url)
    try:
        assert ingest.wait_for(lambda s: set(expected) <= set(s.event_ids()))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()
    after = StateDb(tmp_path / "state" / DB_NAME).load()
    assert after is not None
    assert after.position == JournalPosition(_last_cursor(journal))
    assert "the saved cursor is in" in (tmp_path / "agent.log").read_text()
