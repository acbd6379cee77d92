"""The agent's heartbeat: every ``heartbeat_interval`` seconds, one small authenticated request
telling the platform that this agent is alive and how it is (``sendpost_wire.heartbeat``).

Without it the platform only hears from an agent when there is mail, and cannot tell a quiet
night from a dead agent. The heartbeat goes to the ingestion endpoint's origin, with the same
key; its failures never touch the events (they have their own retries): a failed heartbeat is
counted (``sendpost_agent_heartbeats_total{result}``) and tried again at the next interval. A
platform without the heartbeat route (404) is asked again only once an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx
from sendpost_wire.heartbeat import HEARTBEAT_PATH, Heartbeat

from sendpost_agent import __version__
from sendpost_agent.telemetry import Metrics, Status

log = logging.getLogger(__name__)

UNSUPPORTED_RETRY = 3600.0


def heartbeat_url(endpoint: str) -> str:
    """The heartbeat URL on the same origin as the ingestion ``endpoint``."""
    parts = urlsplit(endpoint)
    return urlunsplit((parts.scheme, parts.netloc, HEARTBEAT_PATH, "", ""))


def bytes_behind(path: str, offset: int) -> int | None:
    """How far the reader is behind the end of the log it follows (None: cannot tell)."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return None
    return max(0, size - offset)


def _source(name: str) -> str:
    """The heartbeat's ``source``: ``journald`` or ``file:PATH``."""
    return name if name == "journald" else f"file:{name}"


def build(
    status: Status, health: Callable[[], tuple[int, dict[str, object]]], now: float
) -> Heartbeat:
    """This agent's heartbeat from its status and its own health verdict."""
    code, body = health()
    reasons = body.get("reasons")
    problems = tuple(str(r)[:300] for r in reasons[:10]) if isinstance(reasons, list) else ()
    last_ship = dt.datetime.fromtimestamp(status.last_ship, dt.UTC) if status.last_ship else None
    return Heartbeat(
        agent_version=__version__,
        source=_source(status.log_path)[:512],
        healthy=code == 200,
        problems=problems,
        log_bytes_behind=None
        if status.log_path == "journald"
        else bytes_behind(status.log_path, status.log_offset),
        wal_events=status.wal_events,
        wal_bytes=status.wal_bytes,
        last_error=status.last_error[:512] if status.last_error else None,
        last_ship_at=last_ship,
        sent_at=dt.datetime.fromtimestamp(now, dt.UTC),
    )


async def send_once(client: httpx.AsyncClient, url: str, api_key: str, beat: Heartbeat) -> str:
    """POST one heartbeat; the result label: ``ok``, ``rejected``, ``unsupported``, ``failed``."""
    try:
        response = await client.post(
            url,
            content=json.dumps(beat.to_wire(), separators=(",", ":")).encode(),
            headers={"X-SP-Event-ApiKey": api_key, "Content-Type": "application/json"},
        )
    except httpx.HTTPError as exc:
        log.debug("heartbeat not sent: %s", exc)
        return "failed"
    if 200 <= response.status_code < 300:
        return "ok"
    if response.status_code in (401, 403):
        return "rejected"
    if response.status_code in (404, 405):
        return "unsupported"
    return "failed"


async def run(
    stop: asyncio.Event,
    *,
    interval: float,
    client: httpx.AsyncClient,
    url: str,
    api_key: str,
    status: Status,
    metrics: Metrics,
    health: Callable[[], tuple[int, dict[str, object]]],
    wall: Callable[[], float],
) -> None:
    """Send a heartbeat at once, then every ``interval`` seconds, until ``stop`` is set."""
    if interval <= 0:
        return
    while not stop.is_set():
        result = await send_once(client, url, api_key, build(status, health, wall()))
        metrics.heartbeats.labels(result).inc()
        wait = interval
        if result == "unsupported":
            log.info("the platform has no heartbeat route (%s); asking again in an hour", url)
            wait = max(interval, UNSUPPORTED_RETRY)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
