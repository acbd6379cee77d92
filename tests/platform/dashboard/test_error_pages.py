"""Errors the dashboard did not plan for are HTML pages in its layout (never JSON, never a
trace); the API keeps answering JSON for the same failures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.store import Store, accounts
from sendpost_platform.store.schema import custom_smtp_providers

from tests.platform.conftest import Seed, add_provider
from tests.platform.dashboard.helpers import sign_in


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets the app's own answer to an unexpected error, as a browser would
    (not the exception re-raised into the test)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://platform.test") as c:
        yield c


async def test_a_bug_on_a_page_is_an_html_500_and_logged(
    served: httpx.AsyncClient, seed: Seed, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged row (an agent report stored as a list) breaks the providers page: the answer
    is a 500 page in the dashboard's layout saying it was logged, without the exception's text;
    the providers API over the same row answers JSON."""
    with store.write() as conn:
        conn.execute(
            sa.update(custom_smtp_providers)
            .where(custom_smtp_providers.c.id == seed.provider.id)
            .values(agent_report=["not", "an", "object"])
        )
    await sign_in(served, seed.account.account_key)
    page = await served.get("/dashboard/providers")
    assert (page.status_code, page.headers["content-type"].split(";")[0]) == (500, "text/html")
    assert "Something went wrong" in page.text
    assert "has no attribute" not in page.text
    assert any("unexpected error on GET /dashboard/providers" in r.message for r in caplog.records)
    assert any(r.exc_info for r in caplog.records)


async def test_a_missing_table_is_an_html_503_for_pages_and_json_for_the_api(
    sqlite_store: Store, clock: ManualClock
) -> None:
    """The database failing under a page (SQLite: a table gone) is a 503 page with
    Retry-After; the events API answers 503 JSON ``unavailable`` for the same failure."""
    with sqlite_store.write() as conn:
        account = accounts.create_account(conn, name="Acme", now=clock.now())
        add_provider(conn, account.account_id, clock)
    settings = Settings(database_url=str(sqlite_store.engine.url), secret_key="test-secret-key")
    app = create_app(settings, clock=clock, store=sqlite_store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://platform.test") as client:
        await sign_in(client, account.account_key)
        with sqlite_store.write() as conn:
            conn.execute(sa.text("DROP TABLE events"))
        page = await client.get("/dashboard/events")
        api = await client.get("/api/v1/events", headers={"X-Account-ApiKey": account.account_key})
    assert (page.status_code, page.headers["retry-after"]) == (503, "5")
    assert "Temporarily unavailable" in page.text
    assert (api.status_code, api.json()["code"]) == (503, "unavailable")
