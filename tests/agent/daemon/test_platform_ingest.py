"""The agent shipping into the real platform ingestion endpoint (ASGI app over httpx)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import sqlalchemy as sa
from sendpost_agent.app import Agent
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings as PlatformSettings
from sendpost_platform.store import Store, accounts
from sendpost_platform.store.schema import ingest_batches

from tests.platform.conftest import add_provider, sqlite_store, sqlite_template

from .helpers import expected_events, make_settings, until
from .loglines import log_text

__all__ = ["sqlite_store", "sqlite_template"]


def _stored_events(store: Store) -> list[dict[str, object]]:
    with store.read() as conn:
        bodies = [bytes(b) for b in conn.execute(sa.select(ingest_batches.c.body)).scalars()]
    return [event for body in bodies for event in json.loads(body)["events"]]


def _platform(store: Store) -> tuple[httpx.ASGITransport, str]:
    clock = ManualClock()
    with store.write() as conn:
        account = accounts.create_account(conn, name="Acme", now=clock.now())
        _, key = add_provider(conn, account.account_id, clock)
    settings = PlatformSettings(
        database_url=store.engine.url.render_as_string(hide_password=False),
        secret_key="test-secret-key",
    )
    app = create_app(settings, clock=clock, store=store)
    return httpx.ASGITransport(app=app), key


async def test_agent_events_are_stored_by_the_platform(tmp_path: Path, sqlite_store: Store) -> None:
    """Every event the agent produces is accepted and stored by the platform, as sent."""
    transport, key = _platform(sqlite_store)
    (tmp_path / "mail.log").write_text(log_text(0, 60))
    expected = expected_events(log_text(0, 60))
    settings = make_settings(
        tmp_path, "http://platform.test/api/v1/tpsp/custom-smtp/events", api_key=key
    )
    agent = Agent(settings, transport=transport)
    task = asyncio.create_task(agent.run())
    try:
        await until(lambda: len(_stored_events(sqlite_store)) >= len(expected))
    finally:
        agent.stop.set()
        assert await asyncio.wait_for(task, 20) == 0
    assert expected == {str(e["event_id"]): e for e in _stored_events(sqlite_store)}


async def test_platform_rejecting_the_key_keeps_the_events(
    tmp_path: Path, sqlite_store: Store
) -> None:
    """A key the platform does not know: 401, the agent is unhealthy and keeps every event."""
    transport, _ = _platform(sqlite_store)
    (tmp_path / "mail.log").write_text(log_text(0, 5))
    expected = expected_events(log_text(0, 5))
    settings = make_settings(
        tmp_path, "http://platform.test/api/v1/tpsp/custom-smtp/events", api_key="spe_wrong"
    )
    agent = Agent(settings, transport=transport)
    task = asyncio.create_task(agent.run())
    try:
        await until(lambda: agent.status.key_rejected)
        assert agent.health()[0] == 503
        assert len(expected) == agent.wal.pending_events
    finally:
        agent.stop.set()
        assert await asyncio.wait_for(task, 20) == 0
    assert _stored_events(sqlite_store) == []
