"""Durability corner cases of ``sendpost-agent run`` found in review: real processes, real files."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fake_ingest import Answer, FakeIngest

from .helpers import agent_env, expected_events
from .loglines import log_text


@pytest.fixture
def ingest() -> Iterator[FakeIngest]:
    with FakeIngest(keys={"test-key"}) as server:
        yield server


def _command(tmp_path: Path, url: str) -> list[str]:
    return [
        sys.executable, "-m", "sendpost_agent.cli", "run",
        "--api-key", "test-key", "--endpoint", url,
        "--log-path", str(tmp_path / "mail.log"), "--state-dir", str(tmp_path / "state"),
        "--listen", "127.0.0.1:0", "--config", str(tmp_path / "none.yaml"),
        "--batch-wait", "0.05", "--poll-interval", "0.02", "--retry-initial", "0.05",
        "--checkpoint-interval", "0.05", "--read-chunk-bytes", "8KB", "--batch-size", "20",
    ]  # fmt: skip


def _until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _limit_file_size(limit: int) -> None:
    """In the child: files may not grow past ``limit`` bytes; a write past it fails (EFBIG)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_failed_wal_append_does_not_move_the_cursor(tmp_path: Path, ingest: FakeIngest) -> None:
    """A WAL append that fails (the disk refuses the write) stops the agent without saving the
    cursor past the lines whose events were not written: after a restart every event arrives."""
    (tmp_path / "none.yaml").write_text("")
    (tmp_path / "mail.log").write_text(log_text(0, 600))
    expected = expected_events(log_text(0, 600))
    crashed = subprocess.run(
        _command(tmp_path, ingest.url),
        env=agent_env(),
        stderr=subprocess.PIPE,
        preexec_fn=lambda: _limit_file_size(64000),
        timeout=60,
        check=False,
    )
    assert b"File too large" in crashed.stderr
    assert 0 != crashed.returncode
    proc = subprocess.Popen(
        _command(tmp_path, ingest.url), env=agent_env(), stderr=subprocess.DEVNULL
    )
    try:
        assert ingest.wait_for(lambda s: set(expected) <= set(s.event_ids()), timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert 0 == proc.wait(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert set(expected) == set(ingest.event_ids())


def test_dead_letter_short_write_keeps_the_events(tmp_path: Path, ingest: FakeIngest) -> None:
    """When the dead-letter file takes only part of the rejected batches (the disk fills up), the
    batches are not released from the WAL: after a restart every event is either delivered or
    whole in the dead-letter file."""
    (tmp_path / "none.yaml").write_text("")
    (tmp_path / "mail.log").write_text(log_text(0, 200))
    expected = expected_events(log_text(0, 200))
    wal_bytes = 8 + sum(8 + len(json.dumps(e, separators=(",", ":"))) for e in expected.values())
    # Every file may grow to the size of the event WAL: the state database (one save at the end
    # of the log, < 40 KB) fits, the dead-letter file (all 200 events rejected, each with its
    # answer: larger than the WAL) is cut short.
    ingest.script = [Answer(400, body=b'{"errors":[]}')] * 10
    dead_letter = tmp_path / "state" / "dead-letter.jsonl"
    command = [
        *_command(tmp_path, ingest.url), "--shutdown-timeout", "1", "--checkpoint-interval", "5"
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        env=agent_env(),
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: _limit_file_size(wal_bytes + 300),
    )
    try:
        assert ingest.wait_for(lambda s: any(r[1] == 400 for r in s.requests))
        # it reached the cap: the write that crossed it was cut short
        assert _until(lambda: dead_letter.exists() and dead_letter.stat().st_size >= wal_bytes)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    proc = subprocess.Popen(command, env=agent_env(), stderr=subprocess.DEVNULL)
    try:
        _until(lambda: set(expected) <= _delivered_or_dead(ingest, dead_letter))
    finally:
        proc.kill()
        proc.wait()
    assert set(expected) <= _delivered_or_dead(ingest, dead_letter)


def _delivered_or_dead(ingest: FakeIngest, dead_letter: Path) -> set[str]:
    """Event IDs received by the endpoint or held whole in the dead-letter file."""
    kept = set(ingest.event_ids())
    for line in dead_letter.read_bytes().split(b"\n") if dead_letter.exists() else []:
        try:
            kept.add(json.loads(line)["event"]["event_id"])
        except ValueError:
            continue  # an incomplete line: not a kept event
    return kept
