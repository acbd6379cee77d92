"""Shared pieces of the daemon tests: settings for a temp dir, the expected events, waiting."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sendpost_agent.config import Settings
from sendpost_agent.parse import Pipeline


def make_settings(tmp_path: Path, endpoint: str, **overrides: Any) -> Settings:
    base = Settings(
        api_key="test-key",
        endpoint=endpoint,
        log_path=tmp_path / "mail.log",
        state_dir=tmp_path / "state",
        listen=("127.0.0.1", 0),
        batch_wait=0.05,
        poll_interval=0.01,
        retry_initial=0.01,
        retry_max=0.05,
        auth_probe_interval=0.05,
        checkpoint_interval=0.05,
        shutdown_timeout=5.0,
        request_timeout=5.0,
        heartbeat_interval=0.0,  # the fake ingestion server has no heartbeat route
    )
    return dataclasses.replace(base, **overrides)


def expected_events(text: str) -> dict[str, dict[str, Any]]:
    """What ``sendpost-agent parse`` gives for these lines, by event_id."""
    events = Pipeline().feed(text.encode())
    wire = [e.to_wire() for e in events]
    by_id = {str(e["event_id"]): e for e in wire}
    assert len(by_id) == len(wire)
    return by_id


async def until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail the test when the deadline passes."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)
