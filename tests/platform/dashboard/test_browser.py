"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the platform
served over loopback HTTP by uvicorn (the same app ``sendpost-platform serve`` runs).

HTTP clients never reproduce what browsers add on their own (``Origin``, ``Sec-Fetch-Site``, the
referrer policy's effect on both, cookies' ``SameSite``); these tests exist because sign-in once
passed every HTTP-client test and failed in every browser. Each test fails on a console error or
an uncaught page error, and screenshots of each page at desktop and phone width land in
``SENDPOST_SCREENSHOTS`` (default: ``build/screenshots/`` in the checkout; the copies linked
from ``docs/dashboard.md`` come from there).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.store import Store, accounts
from sendpost_wire import EventType

from devtools.dns import DnsServer
from devtools.smtp_servers import TestServer
from tests.platform.conftest import Seed, add_provider
from tests.platform.dashboard.helpers import add_event
from tests.support.live_platform import LivePlatform

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 740}

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is missing (make setup installs it)"
)


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture
def live(sqlite_store: Store, seed_sqlite: Seed, dns_server: DnsServer) -> Iterator[LivePlatform]:
    settings = Settings(
        database_url=sqlite_store.engine.url.render_as_string(hide_password=False),
        secret_key="test-secret-key",
        allow_private_networks=True,  # providers created in the UI point at a loopback server
        smtp_test_timeout=5.0,
        dns_nameserver="127.0.0.1",  # domains are checked against the loopback DNS server
        dns_port=dns_server.port,
    )
    with LivePlatform(settings, seed_sqlite) as platform:
        yield platform


@pytest.fixture
def seed_sqlite(sqlite_store: Store, clock: ManualClock) -> Seed:
    with sqlite_store.write() as conn:
        account = accounts.create_account(conn, name="Acme", now=clock.now())
        provider, key = add_provider(conn, account.account_id, clock)
    return Seed(sqlite_store, clock, account, provider, key)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


SCREENSHOTS = Path(__file__).parents[3] / "build" / "screenshots"
"""Where every run leaves its screenshots (``$SENDPOST_SCREENSHOTS`` overrides it)."""


@pytest.fixture
def screenshots() -> Path:
    folder = Path(os.environ.get("SENDPOST_SCREENSHOTS", SCREENSHOTS))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Tab:
    """A page of a fresh browser context that records console and page errors."""

    def __init__(self, browser: object, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport)  # type: ignore[attr-defined]
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def close(self) -> None:
        self.context.close()

    def overflow(self) -> int:
        """How many CSS pixels the page is wider than the viewport (0: it fits)."""
        width = self.page.evaluate(
            "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
            " - window.innerWidth"
        )
        return int(width)

    def sign_in(self, base: str, key: str) -> None:
        self.page.goto(f"{base}/dashboard/")
        assert self.page.url.startswith(f"{base}/dashboard/login")
        self.page.fill("#key", key)
        self.page.click("button[type=submit]")


@pytest.fixture
def tab(browser: object, live: LivePlatform) -> Iterator[Tab]:
    """A desktop tab, closed before the platform stops (``live`` is set up first and torn down
    last), so a page still loading never sees its server go away."""
    opened = Tab(browser, DESKTOP)
    yield opened
    opened.close()
    assert opened.errors == []


def _store_some_events(seed: Seed) -> str:
    message = seed.message(recipient="ada@example.com")
    now = seed.clock.now()
    for offset, kind in enumerate((EventType.CSProcessed, EventType.CSSent)):
        add_event(
            seed,
            message.uuid,
            kind,
            now - dt.timedelta(minutes=10 - offset),
            recipient="ada@example.com",
        )
    add_event(
        seed,
        message.uuid,
        EventType.CSDelivered,
        now - dt.timedelta(minutes=5),
        recipient="ada@example.com",
        smtp_code=250,
        enhanced_status="2.0.0",
        description="250 2.0.0 Ok: queued as 4F9D21C0A3",
    )
    return message.uuid


def test_sign_in_with_the_form_reaches_the_overview(tab: Tab, live: LivePlatform) -> None:
    """The form posted by Chromium itself (Origin and Sec-Fetch-Site as the browser sets them)
    signs in and lands on the page asked for; the account's name is in the header."""
    tab.page.goto(f"{live.base}/dashboard/events")
    assert tab.page.url.startswith(f"{live.base}/dashboard/login?next=%2Fdashboard%2Fevents")
    tab.page.fill("#key", live.seed.account.account_key)
    tab.page.click("button[type=submit]")
    assert tab.page.url == f"{live.base}/dashboard/events"
    assert "Acme" in tab.page.inner_text("header")
    assert tab.page.locator("[role=alert]").count() == 0


def test_wrong_key_is_told_and_right_key_then_works(tab: Tab, live: LivePlatform) -> None:
    """A wrong key shows why on the form (status 401), the key is not echoed back; the right one
    typed next signs in."""
    tab.page.goto(f"{live.base}/dashboard/login")
    tab.page.fill("#key", "sp_acct_wrong")
    with tab.page.expect_response(re.compile(r"/dashboard/login$")) as answer:
        tab.page.click("button[type=submit]")
    assert answer.value.status == 401
    assert "Unknown account API key" in tab.page.inner_text("[role=alert]")
    assert "sp_acct_wrong" not in tab.page.content()
    # The console reports the 401 document load; that is the expected answer, not a page error.
    tab.errors[:] = [e for e in tab.errors if "401" not in e]
    tab.page.fill("#key", live.seed.account.account_key)
    tab.page.click("button[type=submit]")
    assert tab.page.url == f"{live.base}/dashboard/"


def test_every_page_renders_without_errors_at_desktop_and_phone_width(
    browser: object, live: LivePlatform, screenshots: Path
) -> None:
    """Overview, providers, events (with a filter), a message's timeline and counts load in
    Chromium at 1280 and 360 px wide with no console error and no horizontal overflow; a
    screenshot of each is saved."""
    message_uuid = _store_some_events(live.seed)
    pages = {
        "overview": "/dashboard/",
        "providers": "/dashboard/providers",
        "events": "/dashboard/events",
        "events-filtered": "/dashboard/events?recipient=ada%40example.com",
        "message": f"/dashboard/messages/{message_uuid}",
        "stats": "/dashboard/stats?range=24h",
        "domains": "/dashboard/domains",
        "pools": "/dashboard/pools",
        "suppressions": "/dashboard/suppressions",
        "preferences": "/dashboard/preferences",
        "provider-new": "/dashboard/providers/new",
        "login": "/dashboard/login",
    }
    for width_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        tab = Tab(browser, viewport)
        try:
            tab.sign_in(live.base, live.seed.account.account_key)
            for name, path in pages.items():
                response = tab.page.goto(f"{live.base}{path}")
                assert response is not None
                assert response.status == 200, (name, response.status)
                tab.page.screenshot(path=screenshots / f"{name}-{width_name}.png", full_page=True)
                assert tab.overflow() <= 0, f"{name} overflows {width_name} width"
            assert tab.errors == []
        finally:
            tab.close()


def test_sign_out_ends_the_session(tab: Tab, live: LivePlatform) -> None:
    """Sign out returns to the form; the dashboard then asks to sign in again."""
    tab.sign_in(live.base, live.seed.account.account_key)
    assert tab.page.url == f"{live.base}/dashboard/"
    tab.page.click("text=Sign out")
    assert tab.page.url == f"{live.base}/dashboard/login"
    tab.page.goto(f"{live.base}/dashboard/providers")
    assert tab.page.url.startswith(f"{live.base}/dashboard/login")


def test_expired_session_asks_to_sign_in_again(tab: Tab, live: LivePlatform) -> None:
    """After the session's lifetime the next page is the form, saying the session has ended,
    and signing in there returns to the page asked for."""
    tab.sign_in(live.base, live.seed.account.account_key)
    live.seed.clock.advance(hours=13)
    tab.page.goto(f"{live.base}/dashboard/stats")
    assert tab.page.url.startswith(f"{live.base}/dashboard/login")
    assert "session has ended" in tab.page.inner_text("[role=alert]")
    tab.page.fill("#key", live.seed.account.account_key)
    tab.page.click("button[type=submit]")
    assert tab.page.url == f"{live.base}/dashboard/stats"


def test_a_form_on_another_site_cannot_sign_in(tab: Tab, live: LivePlatform) -> None:
    """A page served from another origin that posts a valid key to the login form is refused
    (403) and sets no session cookie: login CSRF stays closed with the browser-compatible check."""
    other = "http://attacker.test/"
    form = (
        '<link rel="icon" href="data:,">'  # no favicon request to a host that does not exist
        f'<form method="post" action="{live.base}/dashboard/login">'
        f'<input name="key" value="{live.seed.account.account_key}">'
        '<button type="submit">go</button></form>'
    )
    tab.page.route(other, lambda route: route.fulfill(content_type="text/html", body=form))
    tab.page.goto(other)
    with tab.page.expect_response(re.compile(r"/dashboard/login$")) as answer:
        tab.page.click("button[type=submit]")
    assert answer.value.status == 403
    assert "another site" in tab.page.inner_text("[role=alert]")
    assert tab.context.cookies(live.base) == []
    tab.errors[:] = [e for e in tab.errors if "403" not in e]


def test_unknown_addresses_are_404_pages_and_root_leads_to_the_dashboard(
    tab: Tab, live: LivePlatform
) -> None:
    """An unknown message UUID and an unknown dashboard path answer 404 as HTML pages in the
    dashboard's layout (never raw JSON); the platform's root address leads to the overview."""
    tab.sign_in(live.base, live.seed.account.account_key)
    for path in (f"/dashboard/messages/{uuid.uuid4()}", "/dashboard/no-such-page"):
        response = tab.page.goto(f"{live.base}{path}")
        assert response is not None
        assert (response.status, response.headers["content-type"].split(";")[0]) == (
            404,
            "text/html",
        )
        assert "Acme" in tab.page.inner_text("header")
    assert "Page not found" in tab.page.inner_text("h1")
    tab.errors[:] = [e for e in tab.errors if "404" not in e]
    tab.page.goto(f"{live.base}/")
    assert tab.page.url == f"{live.base}/dashboard/"


def test_create_test_edit_and_rotate_a_provider_without_curl(
    tab: Tab, live: LivePlatform, screenshots: Path
) -> None:
    """In Chromium: "Test only" shows each SMTP stage with its reply and time against a
    loopback SMTP server; "Test and create" shows the ingestion key once, and that key is
    accepted by the ingestion API; editing the name saves; rotating shows a new key, and the old
    one stops at once when "now" is chosen."""
    with TestServer() as server:
        tab.sign_in(live.base, live.seed.account.account_key)
        tab.page.goto(f"{live.base}/dashboard/providers/new")
        tab.page.fill("input[name=name]", "edge-mta")
        tab.page.fill("input[name=host]", "127.0.0.1")
        tab.page.fill("input[name=port]", str(server.port))
        tab.page.select_option("select[name=security]", "none")
        tab.page.fill("input[name=testFrom]", "probe@sender.example")
        tab.page.fill("input[name=testTo]", "check@receiver.example")
        tab.page.click("button[value=test]")
        stages = tab.page.locator("table.stages tr[data-stage]")
        assert tab.page.locator("section.smtp-test").get_attribute("data-ok") == "true"
        assert stages.count() >= 4
        assert "250" in tab.page.inner_text("table.stages")
        tab.page.screenshot(path=screenshots / "provider-test-desktop.png", full_page=True)
        tab.page.click("button[value=create]")
        key = tab.page.inner_text("[data-key]").strip()
        assert key.startswith("spe_")
        tab.page.screenshot(path=screenshots / "provider-key-desktop.png", full_page=True)
    event = {
        "message_id": "5b0f8a8e-6a43-4a59-9d3e-0d5f8f3a1c11",
        "event_type": "delivered",
    }
    answer = httpx.post(
        f"{live.base}/api/v1/tpsp/custom-smtp/events",
        headers={"X-SP-Event-ApiKey": key},
        json={"events": [event]},
    )
    assert answer.status_code == 200
    tab.page.goto(f"{live.base}/dashboard/providers")
    card = tab.page.locator("section.agent-card", has_text="edge-mta")
    card.locator("text=Edit").click()
    tab.page.fill("input[name=name]", "edge-mta-2")
    tab.page.click("button[value=save]")
    assert tab.page.url == f"{live.base}/dashboard/providers"
    card = tab.page.locator("section.agent-card", has_text="edge-mta-2")
    card.locator("select[name=grace]").select_option("0")
    card.locator("button", has_text="Rotate key").click()
    new_key = tab.page.inner_text("[data-key]").strip()
    assert new_key.startswith("spe_")
    assert new_key != key
    statuses = [
        httpx.post(
            f"{live.base}/api/v1/tpsp/custom-smtp/events",
            headers={"X-SP-Event-ApiKey": k},
            json={"events": [event]},
        ).status_code
        for k in (key, new_key)
    ]
    assert [401, 200] == statuses
    tab.errors[:] = [e for e in tab.errors if "401" not in e]


def test_a_failing_smtp_test_names_the_stage_and_creates_nothing(
    tab: Tab, live: LivePlatform
) -> None:
    """A server that refuses the recipient: the page says the test failed at rcpt with the
    server's reply, the form keeps what was typed, and no provider is created."""
    with TestServer(reject={"RCPT": "550 5.1.1 no such user"}) as server:
        tab.sign_in(live.base, live.seed.account.account_key)
        tab.page.goto(f"{live.base}/dashboard/providers/new")
        tab.page.fill("input[name=name]", "broken")
        tab.page.fill("input[name=host]", "127.0.0.1")
        tab.page.fill("input[name=port]", str(server.port))
        tab.page.select_option("select[name=security]", "none")
        tab.page.fill("input[name=testFrom]", "probe@sender.example")
        tab.page.fill("input[name=testTo]", "nobody@receiver.example")
        with tab.page.expect_response(re.compile(r"/providers/new$")) as answer:
            tab.page.click("button[value=create]")
    assert answer.value.status == 422
    assert tab.page.locator("section.smtp-test").get_attribute("data-ok") == "false"
    assert "no such user" in tab.page.inner_text("table.stages")
    assert tab.page.input_value("input[name=name]") == "broken"
    tab.errors[:] = [e for e in tab.errors if "422" not in e]
    tab.page.goto(f"{live.base}/dashboard/providers")
    assert "broken" not in tab.page.inner_text("main")


def test_domains_pools_and_suppressions_without_curl(
    tab: Tab, live: LivePlatform, dns_server: DnsServer
) -> None:
    """Add a domain in the form; its DKIM and return-path records are listed; "Check DNS now"
    says what DNS holds (nothing, then the published records: verified). Suppress a recipient
    and lift it again. Create an IP pool in the form (without a provider it says so)."""
    tab.sign_in(live.base, live.seed.account.account_key)
    tab.page.goto(f"{live.base}/dashboard/domains")
    tab.page.fill("input[name=name]", "shop.example")
    tab.page.click("button:has-text('Add')")
    section = tab.page.locator("section.domain", has_text="shop.example")
    rows = section.locator("table.records tbody tr")
    assert rows.count() == 2
    records = [
        [cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]
    section.locator("button", has_text="Check DNS now").click()
    section = tab.page.locator("section.domain", has_text="shop.example")
    assert "not verified" in section.locator("h2").inner_text()
    for _purpose, rdtype, name, value in records:
        dns_server.add(name, rdtype, value)
    section.locator("button", has_text="Check DNS now").click()
    section = tab.page.locator("section.domain", has_text="shop.example")
    assert "not verified" not in section.locator("h2").inner_text()
    assert section.locator("table.checks").count() == 1
    tab.page.goto(f"{live.base}/dashboard/suppressions")
    tab.page.fill("input[name=recipient]", "Gone@Example.org")
    tab.page.click("button:has-text('Suppress')")
    assert tab.page.locator("tr[data-recipient='gone@example.org']").count() == 1
    tab.page.locator("tr[data-recipient='gone@example.org'] button").click()
    assert tab.page.locator("tr[data-recipient='gone@example.org']").count() == 0
    tab.page.goto(f"{live.base}/dashboard/pools")
    tab.page.fill("input[name=name]", "main")
    tab.page.click("button:has-text('Create pool')")  # no provider chosen: named
    assert "providers" in tab.page.inner_text("[role=alert]")
    tab.errors[:] = [e for e in tab.errors if "400" not in e]
    tab.page.fill("input[name=name]", "main")
    tab.page.select_option("select[name=strategy]", "weighted")
    tab.page.check(f"input[name=provider][value='{live.seed.provider.id}']")
    tab.page.click("button:has-text('Create pool')")
    assert "main" in tab.page.inner_text("table.pools")
    assert "weighted" in tab.page.inner_text("table.pools")
    assert live.seed.provider.name in tab.page.inner_text("table.pools")


def test_every_events_filter_through_the_form(tab: Tab, live: LivePlatform) -> None:
    """In Chromium, each filter of the events form, set by a person (select, date fields,
    text fields, type checkboxes, page size), narrows the list to the expected events; the
    form keeps what was chosen; "Clear" shows everything again."""
    message_uuid = _store_some_events(live.seed)
    other = live.seed.message(recipient="bob@other.example")
    add_event(
        live.seed,
        other.uuid,
        EventType.CSHardBounced,
        live.seed.clock.now() - dt.timedelta(minutes=1),
        recipient="bob@other.example",
        smtp_code=550,
    )
    tab.sign_in(live.base, live.seed.account.account_key)
    tab.page.goto(f"{live.base}/dashboard/events")

    def listed() -> int:
        return tab.page.locator("tr[data-event-id]").count()

    assert listed() == 4
    checks = [
        ("select[name=providerId]", str(live.seed.provider.id), 4),
        ("select[name=subAccountId]", str(live.seed.account.subaccount_id), 4),
        ("input[name=recipient]", "OTHER.example", 1),
        ("input[name=sender]", "news@", 4),
        ("input[name=messageId]", message_uuid, 3),
        ("input[name=from]", "2026-02-19T11:50:30", 3),
        ("input[name=to]", "2026-02-19T11:56:30", 3),
    ]
    for selector, value, expected in checks:
        tab.page.goto(f"{live.base}/dashboard/events")
        if selector.startswith("select"):
            tab.page.select_option(selector, value)
        else:
            tab.page.fill(selector, value)
        tab.page.click("button:has-text('Filter')")
        assert (selector, listed()) == (selector, expected)
        shown = (
            tab.page.eval_on_selector(selector, "e => e.value")
            if selector.startswith("select")
            else tab.page.input_value(selector)
        )
        assert shown == value
    tab.page.goto(f"{live.base}/dashboard/events")
    tab.page.check("input[name=type][value='63']")
    tab.page.check("input[name=type][value='60']")
    tab.page.select_option("select[name=limit]", "25")
    tab.page.click("button:has-text('Filter')")
    assert listed() == 2
    tab.page.click("text=Clear")
    assert listed() == 4
