"""The events page answers an operator's questions: substring search on recipient, sender and
subject, a result count, paging both ways, CSV export of the whole filtered list, auto-refresh,
and times in the viewer's time zone. Stored through the store on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re
import uuid

import httpx
from sendpost_platform.store import messages
from sendpost_wire import EventType

from tests.platform.conftest import Seed
from tests.platform.dashboard.helpers import T0, add_event, event_ids, sign_in

E = EventType


def _link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a rel="{rel}" href="([^"]+)"', page)
    return None if found is None else html.unescape(found.group(1))


def _message(seed: Seed, recipient: str, sender: str) -> str:
    with seed.store.write() as conn:
        made = messages.insert_message(
            conn,
            account_id=seed.account.account_id,
            subaccount_id=seed.account.subaccount_id,
            recipient=recipient,
            sender=sender,
            now=seed.clock.now(),
            provider_id=seed.provider.id,
            state="sent",
        )
    return made.uuid


async def test_recipient_and_sender_match_any_part_ignoring_case(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """``recipient`` matches a substring of the recipient (a domain, a local part), ``sender``
    a substring of the message's envelope sender; LIKE wildcards typed are taken literally."""
    m1 = _message(seed, "ada@shop.example", "news@brand.test")
    m2 = _message(seed, "bob_x@other.example", "alerts@brand.test")
    a = add_event(seed, m1, E.CSSent, T0, recipient="Ada@Shop.example")
    b = add_event(seed, m2, E.CSSent, T0 + dt.timedelta(minutes=1), recipient="bob_x@other.example")
    await sign_in(client, seed.account.account_key)

    async def listed(**params: str) -> list[int]:
        response = await client.get("/dashboard/events", params=params)
        assert response.status_code == 200, response.text
        return event_ids(response.text)

    assert [a] == await listed(recipient="SHOP.EXAMPLE")
    assert [b, a] == await listed(recipient="example")
    assert [b] == await listed(recipient="b_x")
    assert [] == await listed(recipient="b%x")
    assert [b] == await listed(sender="ALERTS@")
    assert [b, a] == await listed(sender="brand.test")
    assert [] == await listed(sender="nobody")


async def test_from_after_to_is_an_error_not_an_empty_list(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """A "From" later than "To" says so (400) instead of silently showing nothing."""
    await sign_in(client, seed.account.account_key)
    response = await client.get(
        "/dashboard/events", params={"from": "2026-02-19T12:00", "to": "2026-02-19T11:00"}
    )
    assert response.status_code == 400
    assert "from: must be earlier than to" in response.text


async def test_count_and_paging_both_ways_without_gaps(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """7 events, 3 per page: the count says 7; Older goes 3 → 3 → 1, then Newer walks back the
    same pages in the same order, and the newest page has no Newer link."""
    ids = [
        add_event(seed, str(uuid.uuid4()), E.CSSent, T0 - dt.timedelta(minutes=i)) for i in range(7)
    ]
    await sign_in(client, seed.account.account_key)
    first = (await client.get("/dashboard/events?limit=3")).text
    assert 'data-total="7"' in first
    assert _link(first, "prev") is None
    pages = [event_ids(first)]
    link = _link(first, "next")
    while link is not None:
        page = (await client.get(link)).text
        pages.append(event_ids(page))
        last = page
        link = _link(page, "next")
    assert [ids[0:3], ids[3:6], ids[6:7]] == pages
    back = []
    link = _link(last, "prev")
    while link is not None:
        page = (await client.get(link)).text
        back.append(event_ids(page))
        link = _link(page, "prev")
    assert [ids[3:6], ids[0:3]] == back


async def test_csv_exports_every_filtered_event_and_defuses_formulas(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """The CSV link carries the filters, not the page: all matching events (beyond one page),
    newest first, one header row; a reply starting with ``=`` is prefixed so a spreadsheet
    does not run it."""
    ids = [
        add_event(
            seed,
            str(uuid.uuid4()),
            E.CSHardBounced,
            T0 - dt.timedelta(minutes=i),
            smtp_code=550,
            description='=HYPERLINK("http://evil.test")' if i == 0 else "550 5.1.1 unknown",
        )
        for i in range(60)
    ]
    add_event(seed, str(uuid.uuid4()), E.CSSent, T0)
    await sign_in(client, seed.account.account_key)
    page = (await client.get("/dashboard/events?type=63&limit=25")).text
    link = re.search(r'<a class="csv" href="([^"]+)"', page)
    assert link is not None
    response = await client.get(html.unescape(link.group(1)))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert ids == [int(r["id"]) for r in rows]
    assert {"CSHardBounced"} == {r["event_name"] for r in rows}
    assert rows[0]["description"].startswith("'=HYPERLINK")


async def test_auto_refresh_only_on_the_newest_page(client: httpx.AsyncClient, seed: Seed) -> None:
    """refresh=on sends a Refresh header (the browser reloads every 30 s) on the first page; a
    page reached through a cursor never refreshes away from where the reader is."""
    for i in range(3):
        add_event(seed, str(uuid.uuid4()), E.CSSent, T0 - dt.timedelta(minutes=i))
    await sign_in(client, seed.account.account_key)
    first = await client.get("/dashboard/events", params={"refresh": "on", "limit": "1"})
    assert first.headers.get("refresh") == "30"
    older = _link(first.text, "next")
    assert older is not None
    assert "refresh" not in (await client.get(older)).headers


async def test_times_follow_the_chosen_time_zone(client: httpx.AsyncClient, seed: Seed) -> None:
    """Saving Europe/Berlin in the preferences shows event times in CET and reads typed filter
    dates in that zone; an unknown zone is refused with 400 naming it."""
    event = add_event(seed, str(uuid.uuid4()), E.CSSent, T0)  # 12:00 UTC = 13:00 CET
    await sign_in(client, seed.account.account_key)
    bad = await client.post("/dashboard/preferences", data={"tz": "Mars/Olympus"})
    assert bad.status_code == 400
    assert "Mars/Olympus" in html.unescape(bad.text)
    saved = await client.post(
        "/dashboard/preferences", data={"tz": "Europe/Berlin", "next": "/dashboard/events"}
    )
    assert (saved.status_code, saved.headers["location"]) == (303, "/dashboard/events")
    page = (await client.get("/dashboard/events")).text
    assert "2026-02-19 13:00:00 CET" in page
    window = {"from": "2026-02-19T12:30", "to": "2026-02-19T13:30"}  # Berlin time
    assert [event] == event_ids((await client.get("/dashboard/events", params=window)).text)
