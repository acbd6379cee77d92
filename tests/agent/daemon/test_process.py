"""``sendpost-agent run`` as a real process: SIGTERM and repeated SIGKILL at random moments."""

from __future__ import annotations

import json
import random
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from sendpost_agent.buffer import Wal
from sendpost_agent.checkpoint import DB_NAME, StateDb

from tests.support.fake_ingest import FakeIngest

from .helpers import agent_env, expected_events, last_run_copies
from .loglines import log_text


@pytest.fixture
def ingest() -> Iterator[FakeIngest]:
    with FakeIngest(keys={"test-key"}) as server:
        yield server


def _start(tmp_path: Path, url: str, **extra: str) -> subprocess.Popen[bytes]:
    with open(tmp_path / "agent.log", "ab") as log:
        return _spawn(tmp_path, url, agent_env(**extra), log)


def _spawn(tmp_path: Path, url: str, env: dict[str, str], log: BinaryIO) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sendpost_agent.cli", "run",
         "--api-key", "test-key", "--endpoint", url,
         "--log-path", str(tmp_path / "mail.log"), "--state-dir", str(tmp_path / "state"),
         "--listen", "127.0.0.1:0", "--config", str(tmp_path / "none.yaml"),
         "--batch-wait", "0.05", "--poll-interval", "0.02", "--retry-initial", "0.05",
         "--checkpoint-interval", "0.05", "--read-chunk-bytes", "8KB", "--batch-size", "20"],
        env=env,
        stderr=log,
    )  # fmt: skip


def _tear_last_save(wal: Path, rng: random.Random) -> bool:
    """Cut ``state.db-wal`` (SQLite's WAL) inside its last transaction, as a crash in the middle
    of the last save leaves it; False when there is none to cut (no two saves in this WAL, or
    SQLite may have copied them into the database already)."""
    data = wal.read_bytes() if wal.exists() else b""
    if len(data) < 32:
        return False
    page_size, salts = struct.unpack(">I", data[8:12])[0], data[16:24]
    ends, at = [32], 32
    while at + 24 + page_size <= len(data) and data[at + 8 : at + 16] == salts:
        at += 24 + page_size
        if struct.unpack(">I", data[at - page_size - 20 : at - page_size - 16])[0]:
            ends.append(at)  # a commit frame: the end of one save
    if len(ends) < 3 or at - 32 >= 1000 * (24 + page_size):  # 1,000 pages: auto-checkpoint
        return False
    with open(wal, "r+b") as fh:
        fh.truncate(rng.randrange(ends[-2] + 1, ends[-1]))
    return True


def _append(path: Path, start: int, stop: int) -> None:
    with open(path, "a") as fh:
        fh.write(log_text(start, stop))


def test_sigterm_ships_saves_state_and_exits_zero(tmp_path: Path, ingest: FakeIngest) -> None:
    """SIGTERM after the events arrived: exit 0, cursor at the end of the log, WAL empty."""
    (tmp_path / "none.yaml").write_text("")
    _append(tmp_path / "mail.log", 0, 50)
    expected = expected_events(log_text(0, 50))
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
    assert (tmp_path / "mail.log").stat().st_size == cursor.position.offset
    wal = Wal(tmp_path / "state" / "pending.wal", 1 << 20, 1 << 20)
    wal.open()
    assert wal.pending_events == 0
    assert set(expected) == set(ingest.event_ids())


def test_run_with_the_pure_python_switch(tmp_path: Path, ingest: FakeIngest) -> None:
    """SENDPOST_AGENT_PURE_PYTHON=1 is a switch, not an unknown setting: `run` starts, says
    which parser it runs (postfix, python) and ships the same events as the compiled path."""
    (tmp_path / "none.yaml").write_text("")
    _append(tmp_path / "mail.log", 0, 20)
    expected = expected_events(log_text(0, 20))
    proc = _start(tmp_path, ingest.url, SENDPOST_AGENT_PURE_PYTHON="1")
    try:
        assert ingest.wait_for(lambda s: len(s.events) >= len(expected))
        proc.send_signal(signal.SIGTERM)
        assert 0 == proc.wait(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert set(expected) == set(ingest.event_ids())
    assert "parser postfix (python)" in (tmp_path / "agent.log").read_text()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, ingest: FakeIngest) -> None:
    """Killed with SIGKILL 15 times while lines keep coming, restarted each time: every event
    arrives; an event received twice is byte-for-byte the same, with the same event_id."""
    (tmp_path / "none.yaml").write_text("")
    rng = random.Random(20260219)
    log = tmp_path / "mail.log"
    written = 0
    for _ in range(15):
        _append(log, written, written + 40)
        written += 40
        proc = _start(tmp_path, ingest.url)
        try:
            time.sleep(rng.uniform(0.05, 0.9))  # the kill moment, not a synchronisation
        finally:
            proc.kill()
            proc.wait()
    _append(log, written, written + 10)  # work for the last run, so that it is up before SIGTERM
    written += 10
    expected = expected_events(log_text(0, written))
    copies = last_run_copies(_start(tmp_path, ingest.url), ingest, expected)
    assert set(expected) == set(copies)
    assert {json.dumps(e, sort_keys=True) for e in expected.values()} == {
        next(iter(c)) for c in copies.values()
    }
    assert all(len(c) == 1 for c in copies.values())


@pytest.mark.slow
def test_sigkill_with_torn_state_saves_loses_nothing(tmp_path: Path, ingest: FakeIngest) -> None:
    """Killed with SIGKILL 8 times while lines keep coming, and each time the last save of the
    state database cut in the middle (a crash while it was written): every event arrives, an
    event received twice is the same, and the restarted agents ran on the save before."""
    (tmp_path / "none.yaml").write_text("")
    rng = random.Random(20261204)
    log = tmp_path / "mail.log"
    written, torn = 0, 0
    for _ in range(8):
        _append(log, written, written + 40)
        written += 40
        proc = _start(tmp_path, ingest.url)
        try:
            seen = len(ingest.events)  # started and reading (a loaded machine starts slowly):
            deadline = time.monotonic() + 30
            while len(ingest.events) == seen and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))  # the kill moment, not a synchronisation
        finally:
            proc.kill()
            proc.wait()
        torn += _tear_last_save(tmp_path / "state" / (DB_NAME + "-wal"), rng)
    assert torn >= 4
    _append(log, written, written + 10)  # work for the last run, so that it is up before SIGTERM
    written += 10
    expected = expected_events(log_text(0, written))
    copies = last_run_copies(_start(tmp_path, ingest.url), ingest, expected)
    assert set(expected) == set(copies)
    assert all(len(c) == 1 for c in copies.values())
