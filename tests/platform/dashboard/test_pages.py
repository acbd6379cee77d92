"""Dashboard pages with real data stored through the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid

import httpx
import markupsafe
from sendpost_platform.store import accounts, providers
from sendpost_wire import EventType

from tests.platform.conftest import Seed, add_provider
from tests.platform.core.helpers import agent_event, post_events
from tests.platform.dashboard.helpers import T0, add_event, event_ids, next_link, row_of, sign_in

E = EventType


async def test_providers_show_agent_status(client: httpx.AsyncClient, seed: Seed) -> None:
    """✓ for an agent heard from within 15 minutes (the boundary included), ⚠️ for a stale or
    never-seen one, each with agent_last_seen_at; deleted providers are not listed."""
    fresh, boundary = seed.provider, seed.other_provider("edge")[0]
    stale = seed.other_provider("stale")[0]
    never = seed.other_provider("never")[0]
    gone = seed.other_provider("gone")[0]
    now = seed.clock.now()
    with seed.store.write() as conn:
        providers.touch_agent_seen(conn, fresh.id, now - dt.timedelta(minutes=5))
        providers.touch_agent_seen(conn, boundary.id, now - dt.timedelta(minutes=15))
        providers.touch_agent_seen(conn, stale.id, now - dt.timedelta(minutes=16))
        providers.delete_provider(conn, account_id=gone.account_id, provider_id=gone.id, now=now)
    await sign_in(client, seed.account.account_key)
    page = (await client.get("/dashboard/providers")).text
    shown = {
        p.id: (
            "✓" in row_of(page, "data-provider-id", p.id),
            row_of(page, "data-provider-id", p.id),
        )
        for p in (fresh, boundary, stale, never)
    }
    assert {fresh.id: True, boundary.id: True, stale.id: False, never.id: False} == {
        k: v[0] for k, v in shown.items()
    }
    assert "⚠️" in shown[stale.id][1]
    assert "⚠️" in shown[never.id][1]
    assert "2026-02-19 11:55:00 UTC" in shown[fresh.id][1]
    assert "2026-02-19 11:44:00 UTC" in shown[stale.id][1]
    assert "agent never seen" in shown[never.id][1]
    assert f'data-provider-id="{gone.id}"' not in page
    # The overview shows the same table.
    overview = (await client.get("/dashboard/")).text
    assert "⚠️" in row_of(overview, "data-provider-id", stale.id)


async def test_events_page_applies_each_filter(client: httpx.AsyncClient, seed: Seed) -> None:
    """Provider, type, date range, sub-account, message ID and recipient each narrow the list,
    which stays newest first, exactly as the events API filters."""
    other_provider = seed.other_provider("second")[0]
    with seed.store.write() as conn:
        sub2 = accounts.create_subaccount(
            conn, account_id=seed.account.account_id, name="Shop", now=seed.clock.now()
        )[0]
    m1, m2, m3 = (str(uuid.uuid4()) for _ in range(3))
    ids = {
        "sent1": add_event(seed, m1, E.CSSent, T0 - dt.timedelta(hours=3)),
        "deliv1": add_event(seed, m1, E.CSDelivered, T0 - dt.timedelta(hours=2)),
        "sent2": add_event(
            seed,
            m2,
            E.CSSent,
            T0 - dt.timedelta(hours=2, minutes=30),
            provider_id=other_provider.id,
            recipient="Bob@Example.org",
        ),
        "hard2": add_event(
            seed,
            m2,
            E.CSHardBounced,
            T0 - dt.timedelta(hours=1),
            provider_id=other_provider.id,
            recipient="Bob@Example.org",
            smtp_code=550,
        ),
        "open3": add_event(
            seed, m3, E.CSOpen, T0 - dt.timedelta(minutes=10), subaccount_id=sub2.id
        ),
    }
    await sign_in(client, seed.account.account_key)

    async def listed(**params: object) -> list[int]:
        response = await client.get("/dashboard/events", params=params)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        return event_ids(response.text)

    assert [ids[k] for k in ("open3", "hard2", "deliv1", "sent2", "sent1")] == await listed()
    assert [ids["hard2"], ids["sent2"]] == await listed(providerId=other_provider.id)
    assert [ids["sent2"], ids["sent1"]] == await listed(type=["59"])
    assert [ids["hard2"], ids["sent2"], ids["sent1"]] == await listed(
        type=["CSSent", "CSHardBounced"]
    )
    assert [ids["deliv1"], ids["sent2"]] == await listed(
        **{"from": "2026-02-19T09:30", "to": "2026-02-19T11:00"}
    )
    assert [ids["hard2"]] == await listed(
        **{"from": "2026-02-19T11:00:00Z", "to": "2026-02-19T11:30:00Z"}
    )
    assert [ids["open3"]] == await listed(subAccountId=sub2.id)
    assert [ids["deliv1"], ids["sent1"]] == await listed(messageId=m1)
    assert [ids["hard2"], ids["sent2"]] == await listed(recipient="bob@example.org")
    assert [ids["hard2"]] == await listed(recipient="bob@example.org", type="63")
    # The form shows the filter it applied.
    page = (await client.get("/dashboard/events", params={"messageId": m1, "type": "60"})).text
    assert f'value="{m1}"' in page
    assert 'value="60" checked' in page


async def test_invalid_filters_answer_400_naming_the_field(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """A bad filter value lists nothing and names the field and value."""
    await sign_in(client, seed.account.account_key)
    add_event(seed, str(uuid.uuid4()), E.CSSent, T0)
    response = await client.get(
        "/dashboard/events",
        params={"messageId": "not-a-uuid", "type": "CSNope", "from": "yesterday", "cursor": "@@"},
    )
    assert response.status_code == 400
    assert event_ids(response.text) == []
    for fragment in ("messageId: not a message UUID", "unknown event type", "from: not a date"):
        assert fragment in html.unescape(response.text)
    assert "cursor: not a cursor" in response.text


async def test_pagination_follows_the_cursor_and_keeps_filters(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """Pages of ``limit`` events follow one another newest first without gap or repeat, and the
    "Older" link keeps the filters; the last page has no "Older" link."""
    sent = [
        add_event(seed, str(uuid.uuid4()), E.CSSent, T0 - dt.timedelta(minutes=i)) for i in range(7)
    ]
    for i in range(3):  # same time as some CSSent events: the id breaks the tie
        add_event(seed, str(uuid.uuid4()), E.CSOpen, T0 - dt.timedelta(minutes=i))
    await sign_in(client, seed.account.account_key)
    seen: list[int] = []
    link: str | None = "/dashboard/events?type=59&limit=3"
    pages = 0
    while link is not None:
        page = (await client.get(link)).text
        seen += event_ids(page)
        link = next_link(page)
        if link is not None:
            assert "type=59" in link
            assert "limit=3" in link
        pages += 1
    assert (3, sent) == (pages, seen)


async def test_message_timeline_in_order_with_codes_reasons_and_raw_text(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """The timeline lists every event of the message oldest first, whatever the order they were
    stored in, with SMTP code, enhanced status, reason, raw text and details."""
    message = seed.message(recipient="carol@example.net")
    bounce = add_event(
        seed,
        message.uuid,
        E.CSSoftBounced,
        T0 + dt.timedelta(minutes=30),
        recipient="carol@example.net",
        smtp_code=452,
        enhanced_status="4.2.2",
        smtp_command="RCPT TO",
        reason="mailbox_full",
        description="452 4.2.2 Mailbox full, try again later",
        details={"queueId": "4Xyz1ABC"},
    )
    processed = add_event(seed, message.uuid, E.CSProcessed, T0, source="api")
    sent = add_event(
        seed, message.uuid, E.CSSent, T0 + dt.timedelta(minutes=1), smtp_code=250, source="relay"
    )
    add_event(seed, str(uuid.uuid4()), E.CSSent, T0 + dt.timedelta(minutes=2))  # another message
    await sign_in(client, seed.account.account_key)
    response = await client.get(f"/dashboard/messages/{message.uuid}")
    assert response.status_code == 200
    page = response.text
    assert [processed, sent, bounce] == event_ids(page)
    for fragment in (
        "carol@example.net",
        "452",
        "4.2.2",
        "RCPT TO",
        "mailbox_full",
        "452 4.2.2 Mailbox full, try again later",
        "4Xyz1ABC",
        "CSSoftBounced",
        "news@sender.example",
    ):
        assert fragment in page, fragment
    missing = await client.get(f"/dashboard/messages/{uuid.uuid4()}")
    assert (missing.status_code, "No such message" in missing.text) == (404, True)
    assert (await client.get("/dashboard/messages/nope")).status_code == 404


def stats_table(page: str) -> dict[str, list[int]]:
    """The counts table: interval label → the numbers of its row (per type, then the total)."""
    body = page[page.index('<table class="data counts">') :]
    rows = re.findall(r'<tr><th scope="row"><time>([^<]+)</time></th>(.*?)</tr>', body, re.S)
    return {label: [int(n) for n in re.findall(r">(\d+)</td>", cells)] for label, cells in rows}


async def test_counts_per_type_over_time(client: httpx.AsyncClient, seed: Seed) -> None:
    """Per hour for 24 h and per day for 30 days: each stored event is counted once, under its
    type and interval; events outside the period are not counted."""
    types = [t for t in EventType if t is not EventType.CSDeferred]
    col = {t: i for i, t in enumerate(types)}
    seed.clock.set(T0 + dt.timedelta(minutes=20))  # the current hour is 12:00
    for minutes in (1, 5, 59):  # 12:01, 12:05, 12:59 → the 12:00 hour (12:59 is "future")
        add_event(seed, str(uuid.uuid4()), E.CSDelivered, T0 + dt.timedelta(minutes=minutes - 1))
    add_event(seed, str(uuid.uuid4()), E.CSHardBounced, T0 - dt.timedelta(minutes=1))  # 11:59
    add_event(seed, str(uuid.uuid4()), E.CSOpen, T0 - dt.timedelta(hours=23))  # 13:00 yesterday
    add_event(seed, str(uuid.uuid4()), E.CSOpen, T0 - dt.timedelta(hours=24))  # outside 24 h
    add_event(seed, str(uuid.uuid4()), E.CSSent, T0 - dt.timedelta(days=29))  # oldest day
    add_event(seed, str(uuid.uuid4()), E.CSSent, T0 - dt.timedelta(days=30))  # outside 30 days
    await sign_in(client, seed.account.account_key)
    hourly = stats_table((await client.get("/dashboard/stats?range=24h")).text)
    assert len(hourly) == 24
    assert [min(hourly), max(hourly)] == ["2026-02-18 13:00", "2026-02-19 12:00"]
    now_row = hourly["2026-02-19 12:00"]
    assert (now_row[col[E.CSDelivered]], now_row[-1]) == (3, 3)
    assert (hourly["2026-02-19 11:00"][col[E.CSHardBounced]], hourly["2026-02-19 11:00"][-1]) == (
        1,
        1,
    )
    assert (hourly["2026-02-18 13:00"][col[E.CSOpen]], hourly["2026-02-18 13:00"][-1]) == (1, 1)
    assert sum(row[-1] for row in hourly.values()) == 5
    daily = stats_table((await client.get("/dashboard/stats?range=30d")).text)
    assert len(daily) == 30
    assert daily["2026-01-21"][col[E.CSSent]] == 1
    assert "2026-01-20" not in daily
    assert (daily["2026-02-19"][col[E.CSDelivered]], daily["2026-02-19"][col[E.CSHardBounced]]) == (
        3,
        1,
    )
    assert daily["2026-02-18"][col[E.CSOpen]] == 2
    bad = await client.get("/dashboard/stats?range=1y")
    assert (bad.status_code, "range: one of 24h, 7d, 30d" in html.unescape(bad.text)) == (400, True)


async def test_counts_per_provider(client: httpx.AsyncClient, seed: Seed) -> None:
    """The provider filter counts only that provider's events."""
    other = seed.other_provider("second")[0]
    add_event(seed, str(uuid.uuid4()), E.CSSent, T0)
    add_event(seed, str(uuid.uuid4()), E.CSSent, T0, provider_id=other.id)
    add_event(seed, str(uuid.uuid4()), E.CSSent, T0, provider_id=other.id)
    await sign_in(client, seed.account.account_key)
    table = stats_table((await client.get(f"/dashboard/stats?providerId={other.id}")).text)
    assert table["2026-02-19 12:00"][-1] == 2


async def test_hostile_values_are_escaped_everywhere(client: httpx.AsyncClient, seed: Seed) -> None:
    """Recipients, SMTP text, details, provider and account names are HTML-escaped on every page:
    no markup from stored data reaches the browser as markup."""
    hostile = '<script>alert("x")</script>'
    with seed.store.write() as conn:
        add_provider(conn, seed.account.account_id, seed.clock, name=f"p{hostile}")
    message = seed.message(recipient=f"{hostile}@example.com")
    add_event(
        seed,
        message.uuid,
        E.CSHardBounced,
        T0,
        recipient=f"{hostile}@example.com",
        description=f'550 "><img src=x onerror=alert(1)> {hostile}',
        reason="user_unknown",
        details={"note": hostile},
    )
    await sign_in(client, seed.account.account_key)
    escaped = str(markupsafe.escape(hostile))
    for path in (
        "/dashboard/",
        "/dashboard/providers",
        "/dashboard/events",
        f"/dashboard/events?recipient={hostile}@example.com",
        f"/dashboard/messages/{message.uuid}",
        "/dashboard/stats",
    ):
        page = (await client.get(path)).text
        assert "<script" not in page, path
        assert "<img" not in page, path
    assert escaped in (await client.get(f"/dashboard/messages/{message.uuid}")).text
    assert escaped in (await client.get("/dashboard/providers")).text
    echoed = await client.get("/dashboard/events", params={"recipient": f'"{hostile}'})
    assert "<script" not in echoed.text
    assert "&#34;" + escaped in echoed.text


async def test_other_accounts_data_is_never_shown(client: httpx.AsyncClient, seed: Seed) -> None:
    """Another account's providers, events, counts and messages are invisible, even when asked
    for by ID."""
    with seed.store.write() as conn:
        other = accounts.create_account(conn, name="Rival", now=seed.clock.now())
        rival_provider = add_provider(conn, other.account_id, seed.clock, name="rival-mta")[0]
    rival_message = str(uuid.uuid4())
    rival_event = add_event(
        seed,
        rival_message,
        E.CSDelivered,
        T0,
        account_id=other.account_id,
        subaccount_id=other.subaccount_id,
        provider_id=rival_provider.id,
        recipient="secret@rival.example",
    )
    mine = add_event(seed, str(uuid.uuid4()), E.CSSent, T0)
    await sign_in(client, seed.account.account_key)
    for path in ("/dashboard/", "/dashboard/providers", "/dashboard/events", "/dashboard/stats"):
        page = (await client.get(path)).text
        assert "rival" not in page.lower(), path
        assert rival_event not in event_ids(page)
    assert [mine] == event_ids((await client.get("/dashboard/events")).text)
    assert (
        event_ids((await client.get(f"/dashboard/events?providerId={rival_provider.id}")).text)
        == []
    )
    assert event_ids((await client.get(f"/dashboard/events?messageId={rival_message}")).text) == []
    assert (await client.get(f"/dashboard/messages/{rival_message}")).status_code == 404
    table = stats_table((await client.get(f"/dashboard/stats?providerId={rival_provider.id}")).text)
    assert sum(row[-1] for row in table.values()) == 0


async def test_stylesheet_is_served(client: httpx.AsyncClient, seed: Seed) -> None:
    """The pages' stylesheet is served from the package, as CSS, without signing in."""
    response = await client.get("/dashboard/static/dashboard.css")
    assert (
        response.status_code,
        response.headers["content-type"],
    ) == (200, "text/css; charset=utf-8")
    assert ".agent.ok" in response.text


async def test_agent_status_follows_real_ingestion(client: httpx.AsyncClient, seed: Seed) -> None:
    """A batch accepted by the ingestion API turns the provider ✓; 16 minutes of silence on the
    platform's clock turn it ⚠️ again."""

    async def provider_row() -> str:
        page = (await client.get("/dashboard/providers")).text
        return row_of(page, "data-provider-id", seed.provider.id)

    await sign_in(client, seed.account.account_key)
    assert "⚠️" in await provider_row()
    message = seed.message()
    accepted = await post_events(client, seed.ingest_key, [agent_event(message.uuid)])
    assert accepted.status_code == 200
    row = row_of(
        (await client.get("/dashboard/providers")).text, "data-provider-id", seed.provider.id
    )
    assert ("✓" in row, "agent seen just now" in row) == (True, True)
    seed.clock.advance(minutes=16)
    row = row_of(
        (await client.get("/dashboard/providers")).text, "data-provider-id", seed.provider.id
    )
    assert "agent silent: last seen 16 min ago" in row
