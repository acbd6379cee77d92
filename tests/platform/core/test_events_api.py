"""``GET /api/v1/events``: filters, newest first, cursor pagination stable under inserts."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from sendpost_platform.clock import ManualClock
from sendpost_platform.recorder import RECORDER
from sendpost_platform.store import Store, accounts
from sendpost_platform.store import events as event_store
from sendpost_wire import EventType

from tests.platform.conftest import Seed

T0 = dt.datetime(2026, 2, 19, 12, 0, tzinfo=dt.UTC)


def add_event(
    seed: Seed, message_uuid: str, event_type: EventType, minute: int, **extra: Any
) -> int:
    with seed.store.write() as conn:
        [recorded] = RECORDER.record(
            conn,
            [
                event_store.NewEvent(
                    message_uuid=message_uuid,
                    account_id=extra.pop("account_id", seed.account.account_id),
                    subaccount_id=seed.account.subaccount_id,
                    provider_id=extra.pop("provider_id", seed.provider.id),
                    event_type=int(event_type),
                    recipient=extra.pop("recipient", "user@example.com"),
                    occurred_at=T0 + dt.timedelta(minutes=minute),
                    received_at=T0,
                    source="agent",
                    **extra,
                ),
            ],
        )
    assert recorded.event_id is not None
    return recorded.event_id


async def get_events(client: httpx.AsyncClient, seed: Seed, **params: Any) -> httpx.Response:
    return await client.get(
        "/api/v1/events", headers={"X-Account-ApiKey": seed.account.account_key}, params=params
    )


async def test_newest_first_and_every_field_shown(client: httpx.AsyncClient, seed: Seed) -> None:
    """Events come newest first, with codes, reason and raw text."""
    m = str(uuid.uuid4())
    add_event(seed, m, EventType.CSSent, 1)
    add_event(
        seed,
        m,
        EventType.CSHardBounced,
        5,
        smtp_code=550,
        enhanced_status="5.1.1",
        smtp_command="RCPT TO",
        reason="user_unknown",
        description="550 5.1.1 no such user",
    )
    body = (await get_events(client, seed)).json()
    assert [e["typeName"] for e in body["data"]] == ["CSHardBounced", "CSSent"]
    first = body["data"][0]
    assert (
        63,
        m,
        550,
        "5.1.1",
        "RCPT TO",
        "user_unknown",
        "550 5.1.1 no such user",
        "2026-02-19T12:05:00Z",
    ) == (
        first["type"],
        first["messageId"],
        first["smtpCode"],
        first["enhancedStatus"],
        first["smtpCommand"],
        first["reason"],
        first["description"],
        first["occurredAt"],
    )
    assert body["nextCursor"] is None


async def test_filters(client: httpx.AsyncClient, seed: Seed) -> None:
    """Each filter narrows the list: provider, type (ID or name), dates, message, recipient."""
    other, _ = seed.other_provider()
    m1, m2 = str(uuid.uuid4()), str(uuid.uuid4())
    a = add_event(seed, m1, EventType.CSDelivered, 1)
    b = add_event(
        seed, m2, EventType.CSDelivered, 2, provider_id=other.id, recipient="Two@Example.com"
    )
    c = add_event(seed, m1, EventType.CSOpen, 3)
    d = add_event(
        seed, m2, EventType.CSSoftBounced, 4, provider_id=other.id, recipient="two@example.com"
    )

    async def ids(**params: Any) -> list[int]:
        response = await get_events(client, seed, **params)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["data"]]

    assert [d, b] == await ids(providerId=other.id)
    assert [d, b, a] == await ids(type=["CSSoftBounced", "60"])
    assert [c, b] == await ids(**{"from": "2026-02-19T12:02:00Z", "to": "2026-02-19T12:04:00Z"})
    assert [c, a] == await ids(messageId=m1)
    assert [d, b] == await ids(recipient="TWO@example.com")
    assert [d, c, b, a] == await ids(subAccountId=seed.account.subaccount_id)


async def test_other_accounts_events_are_invisible(
    client: httpx.AsyncClient, seed: Seed, store: Store, clock: ManualClock
) -> None:
    """An account key lists only that account's events."""
    with store.write() as conn:
        stranger = accounts.create_account(conn, name="Other", now=clock.now())
    add_event(seed, str(uuid.uuid4()), EventType.CSDelivered, 1, account_id=stranger.account_id)
    mine = add_event(seed, str(uuid.uuid4()), EventType.CSDelivered, 2)
    assert [mine] == [e["id"] for e in (await get_events(client, seed)).json()["data"]]


async def test_cursor_pages_are_stable_while_new_events_arrive(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """Walking pages while newer events are inserted yields every older event exactly once."""
    originals = [
        add_event(seed, str(uuid.uuid4()), EventType.CSDelivered, minute) for minute in range(7)
    ]
    seen: list[int] = []
    cursor = None
    for page in range(10):
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = (await get_events(client, seed, **params)).json()
        seen += [e["id"] for e in body["data"]]
        add_event(seed, str(uuid.uuid4()), EventType.CSDelivered, 100 + page)  # newer than all
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert list(reversed(originals)) == seen


async def test_same_timestamp_events_paginate_by_id(client: httpx.AsyncClient, seed: Seed) -> None:
    """Ties on occurred_at are broken by ID, so no event is skipped or repeated across pages."""
    ids = [add_event(seed, str(uuid.uuid4()), EventType.CSDelivered, 0) for _ in range(5)]
    first = (await get_events(client, seed, limit=2)).json()
    second = (await get_events(client, seed, limit=10, cursor=first["nextCursor"])).json()
    assert list(reversed(ids)) == [e["id"] for e in first["data"] + second["data"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "CSNothing"}, "query.type"),
        ({"type": "57"}, "query.type"),
        ({"cursor": "garbage"}, "query.cursor"),
        ({"from": "yesterday"}, "query.from"),
        ({"limit": 0}, "query.limit"),
        ({"messageId": "nope"}, "query.messageId"),
    ],
)
async def test_bad_parameters_are_400_naming_the_field(
    client: httpx.AsyncClient, seed: Seed, params: dict[str, Any], field: str
) -> None:
    """Invalid filters answer 400 with the offending parameter named."""
    response = await get_events(client, seed, **params)
    assert response.status_code == 400
    assert [field] == [e["field"] for e in response.json()["errors"]]


async def test_account_key_required(client: httpx.AsyncClient, seed: Seed) -> None:
    """Without a valid account key: 401; a sub-account key is not an account key."""
    assert (await client.get("/api/v1/events")).status_code == 401
    response = await client.get(
        "/api/v1/events", headers={"X-Account-ApiKey": seed.account.subaccount_key}
    )
    assert response.status_code == 401
