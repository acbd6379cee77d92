"""Shared pieces of the daemon tests: settings for a temp dir, the expected events, waiting."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from sendpost_agent.config import Settings
from sendpost_agent.parse import adapter

from tests.support.fake_ingest import FakeIngest


def agent_env(**extra: str) -> dict[str, str]:
    """The environment for an agent process: none of this shell's SENDPOST_AGENT_* settings,
    but its SENDPOST_AGENT_PURE_PYTHON switch (the pure-Python CI pass), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_AGENT_")}
    if "SENDPOST_AGENT_PURE_PYTHON" in os.environ:
        env["SENDPOST_AGENT_PURE_PYTHON"] = os.environ["SENDPOST_AGENT_PURE_PYTHON"]
    return {**env, **extra}


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
    """What the Postfix adapter's parser (the one ``parse`` and the daemon use) gives for these
    lines, by event_id."""
    wire = [json.loads(e) for e in adapter("postfix").parser().feed_json(text.encode())]
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


def copies_by_id(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each event ID posted, with the distinct bodies (canonical JSON) posted under it: one
    body per ID means every repeat was byte-identical."""
    copies: dict[str, set[str]] = {}
    for event in events:
        copies.setdefault(str(event["event_id"]), set()).add(json.dumps(event, sort_keys=True))
    return copies


def last_run_copies(
    proc: subprocess.Popen[bytes], ingest: FakeIngest, expected: Collection[str]
) -> dict[str, set[str]]:
    """The run after the kills: waits until every ``expected`` event ID has arrived, stops the
    agent with SIGTERM (it must exit 0) and returns :func:`copies_by_id` of all that was posted."""
    try:
        assert ingest.wait_for(lambda s: set(expected) <= set(s.event_ids()), timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()
    return copies_by_id(ingest.events)
