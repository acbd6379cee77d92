"""Durability corner cases of ``sendpost-agent run`` found in review: real processes, real files."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_ingest import FakeIngest

from .helpers import expected_events
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


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_AGENT_")}


def _limit_file_size(limit: int) -> None:
    """In the child: files may not grow past ``limit`` bytes; a write past it fails (EFBIG)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_failed_wal_append_does_not_move_the_cursor(tmp_path: Path, ingest: FakeIngest) -> None:
    """A WAL append that fails (the disk refuses the write) stops the agent without saving the
    cursor past the lines whose events were not written: after a restart every event arrives."""
    (tmp_path / "none.yaml").write_text("")
    (tmp_path / "mail.log").write_text(log_text(0, 60))
    expected = expected_events(log_text(0, 60))
    crashed = subprocess.run(
        _command(tmp_path, ingest.url),
        env=_env(),
        stderr=subprocess.PIPE,
        preexec_fn=lambda: _limit_file_size(12_000),
        timeout=60,
        check=False,
    )
    assert b"File too large" in crashed.stderr
    assert 0 != crashed.returncode
    proc = subprocess.Popen(_command(tmp_path, ingest.url), env=_env(), stderr=subprocess.DEVNULL)
    try:
        assert ingest.wait_for(lambda s: set(expected) <= set(s.event_ids()), timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert 0 == proc.wait(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert set(expected) == set(ingest.event_ids())
