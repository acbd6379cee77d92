"""Wrong keys are throttled per client address: API (account, sub-account, ingestion keys) and
the dashboard (header and sign-in form), with the limit from SENDPOST_AUTH_FAILURE_LIMIT."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.store import Store

from tests.platform.conftest import Seed
from tests.platform.core.helpers import agent_event, post_events

Client = Callable[[str], httpx.AsyncClient]


@pytest.fixture
def throttled_app(settings: Settings, store: Store, clock: ManualClock) -> FastAPI:
    limited = Settings(
        database_url=settings.database_url,
        secret_key=settings.secret_key,
        auth_failure_limit="3/minute",
    )
    return create_app(limited, clock=clock, store=store)


@pytest.fixture
async def client_from(throttled_app: FastAPI) -> AsyncIterator[Client]:
    """Clients of the same app, each from a client address of its choosing."""
    opened: list[httpx.AsyncClient] = []

    def make(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=throttled_app, client=(address, 40000))
        made = httpx.AsyncClient(transport=transport, base_url="http://platform.test")
        opened.append(made)
        return made

    yield make
    for made in opened:
        await made.aclose()


async def test_wrong_account_keys_are_throttled_per_address(
    client_from: Client, seed: Seed
) -> None:
    """Three wrong keys: 401 each; the fourth request from that address, even with the right
    key, is 429 with Retry-After; another address with the right key is served."""
    attacker, other = client_from("203.0.113.7"), client_from("198.51.100.9")
    wrong = {"X-Account-ApiKey": "sp_acct_wrong"}
    statuses = [(await attacker.get("/api/v1/events", headers=wrong)).status_code for _ in range(3)]
    assert [401, 401, 401] == statuses
    right = {"X-Account-ApiKey": seed.account.account_key}
    refused = await attacker.get("/api/v1/events", headers=right)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["code"] == "rate_limited"
    assert (await other.get("/api/v1/events", headers=right)).status_code == 200


async def test_wrong_ingestion_and_subaccount_keys_share_the_budget(
    client_from: Client, seed: Seed
) -> None:
    """Failures count across key kinds: two wrong ingestion keys and one wrong sub-account key
    exhaust the budget, after which ingestion from that address is 429."""
    attacker = client_from("203.0.113.8")
    events = [agent_event(str(uuid.uuid4()))]
    assert (await post_events(attacker, "sp_ingest_wrong", events)).status_code == 401
    assert (await post_events(attacker, "sp_ingest_wrong", events)).status_code == 401
    send = await attacker.post(
        "/api/v1/subaccount/email/", headers={"X-SubAccount-ApiKey": "nope"}, json={}
    )
    assert send.status_code == 401
    assert (await post_events(attacker, seed.ingest_key, events)).status_code == 429
    assert (await post_events(client_from("192.0.2.1"), seed.ingest_key, events)).status_code == 200


async def test_dashboard_sign_in_is_throttled_after_wrong_keys(
    client_from: Client, seed: Seed
) -> None:
    """The sign-in form counts wrong keys too: the fourth attempt shows a 429 page saying how
    long to wait, with Retry-After, and sets no cookie."""
    browser = client_from("203.0.113.9")
    for _ in range(3):
        page = await browser.post("/dashboard/login", data={"key": "sp_acct_wrong"})
        assert page.status_code == 401
    page = await browser.post("/dashboard/login", data={"key": seed.account.account_key})
    assert page.status_code == 429
    assert "Too many wrong keys" in page.text
    assert int(page.headers["Retry-After"]) >= 1
    assert page.cookies.get("sp_dashboard") is None
