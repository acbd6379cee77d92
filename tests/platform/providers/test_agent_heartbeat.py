"""The agent's heartbeat against the real platform: the agent (in this process, on its own
event loop task) reports in over loopback HTTP to the platform's app served by uvicorn, and
the platform's providers API and dashboard show what it says. The platform runs on a manual
clock, so "an hour" of its time passes in a few seconds while the agent keeps beating."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sendpost_agent.app import Agent
from sendpost_agent.config import Settings as AgentSettings
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.store import Store, accounts, providers

from tests.agent.daemon.helpers import make_settings, until
from tests.platform.conftest import Seed, add_provider
from tests.support.live_platform import LivePlatform


@pytest.fixture
def seed_sqlite(sqlite_store: Store, clock: ManualClock) -> Seed:
    with sqlite_store.write() as conn:
        account = accounts.create_account(conn, name="Acme", now=clock.now())
        provider, key = add_provider(conn, account.account_id, clock)
    return Seed(sqlite_store, clock, account, provider, key)


@pytest.fixture
def live(sqlite_store: Store, seed_sqlite: Seed) -> Iterator[LivePlatform]:
    settings = Settings(
        database_url=sqlite_store.engine.url.render_as_string(hide_password=False),
        secret_key="test-secret-key",
    )
    with LivePlatform(settings, seed_sqlite) as platform:
        yield platform


def _agent_settings(tmp_path: Path, live: LivePlatform, **overrides: object) -> AgentSettings:
    (tmp_path / "mail.log").touch()
    settings = make_settings(
        tmp_path,
        f"{live.base}/api/v1/tpsp/custom-smtp/events",
        api_key=live.seed.ingest_key,
        heartbeat_interval=0.05,
    )
    return dataclasses.replace(settings, **overrides)


def _provider(live: LivePlatform) -> providers.Provider:
    with live.seed.store.read() as conn:
        found = providers.get_provider(
            conn, account_id=live.seed.account.account_id, provider_id=live.seed.provider.id
        )
    assert found is not None
    return found


async def _api_view(live: LivePlatform) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=live.base) as client:
        response = await client.get(
            f"/api/v1/tpsp/custom-smtp/{live.seed.provider.id}",
            headers={"X-Account-ApiKey": live.seed.account.account_key},
        )
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, dict)
    return body


async def _run(agent: Agent) -> asyncio.Task[int]:
    task = asyncio.create_task(agent.run())
    await until(lambda: agent.listening is not None or task.done())
    return task


async def test_an_idle_healthy_agent_stays_ok_for_an_hour(
    tmp_path: Path, live: LivePlatform
) -> None:
    """No mail at all: the agent's heartbeats alone keep the provider ``ok`` (✓ on the
    dashboard) minute after minute for an hour of platform time; the heartbeat carries the
    agent's version, the log it reads and its WAL depth. Once the agent stops, five silent
    minutes later the provider is ``stale`` and says since when."""
    agent = Agent(_agent_settings(tmp_path, live))
    task = await _run(agent)
    clock = live.seed.clock
    try:
        for _ in range(60):
            clock.advance(minutes=1)
            now = clock.now()
            await until(lambda now=now: _provider(live).agent_report_at == now)
            assert (await _api_view(live))["agentStatus"] == "ok"
        view = await _api_view(live)
        report = view["agent"]
        assert isinstance(report, dict)
        assert report["source"] == f"file:{tmp_path / 'mail.log'}"
        assert (report["healthy"], report["walEvents"], report["logBytesBehind"]) == (True, 0, 0)
        assert report["agentVersion"]
    finally:
        agent.stop.set()
        await asyncio.wait_for(task, 20)
    async with httpx.AsyncClient(base_url=live.base) as client:
        page = await client.get(
            "/dashboard/providers", headers={"X-Account-ApiKey": live.seed.account.account_key}
        )
    assert "✓" in page.text
    assert f"file:{tmp_path / 'mail.log'}" in page.text
    clock.advance(minutes=6)
    view = await _api_view(live)
    assert (view["agentStatus"], view["agentSummary"]) == (
        "stale",
        "agent silent: last seen 6 min ago",
    )


def _refused_after_last_seen(provider: providers.Provider) -> bool:
    rejected, seen = provider.agent_key_rejected_at, provider.agent_last_seen_at
    return rejected is not None and (seen is None or rejected > seen)


async def test_an_unhealthy_agent_says_why_and_an_old_key_is_named(
    tmp_path: Path, live: LivePlatform
) -> None:
    """An agent whose log cannot be read reports it: the provider is ``unhealthy`` naming the
    log problem. After the key is rotated with no grace, the agent's heartbeats are refused
    and the provider says its key was rejected."""
    missing = tmp_path / "no-such-dir" / "mail.log"
    agent = Agent(_agent_settings(tmp_path, live, log_path=missing))
    task = await _run(agent)
    try:
        await until(lambda: _provider(live).agent_report is not None)
        view = await _api_view(live)
        assert view["agentStatus"] == "unhealthy"
        assert "log unreadable" in str(view["agentSummary"])
        async with httpx.AsyncClient(base_url=live.base) as client:
            rotated = await client.post(
                f"/api/v1/tpsp/custom-smtp/{live.seed.provider.id}/rotate-key",
                headers={"X-Account-ApiKey": live.seed.account.account_key},
                json={"previousKeyGraceSeconds": 0},
            )
        assert rotated.status_code == 200
        # The platform's clock is manual: a heartbeat refused in the instant of the last
        # accepted one (the agent beats every 50 ms) is no later than it, and the next refusal
        # is noted only after KEY_REJECTED_RESOLUTION. Past that, the next refusal is later.
        live.seed.clock.advance(seconds=providers.KEY_REJECTED_RESOLUTION.total_seconds() + 1)
        await until(lambda: _refused_after_last_seen(_provider(live)))
        view = await _api_view(live)
        assert view["agentStatus"] == "key_rejected"
        assert agent.metrics.heartbeats.labels("rejected")._value.get() >= 1
    finally:
        agent.stop.set()
        await asyncio.wait_for(task, 20)
