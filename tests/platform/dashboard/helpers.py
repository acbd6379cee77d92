"""Helpers for the dashboard tests: signing in, storing events, reading rendered pages."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx
from sendpost_platform.recorder import RECORDER
from sendpost_platform.store import events as event_store
from sendpost_wire import EventType

from tests.platform.conftest import Seed

T0 = dt.datetime(2026, 2, 19, 12, 0, tzinfo=dt.UTC)
"""The seed clock's start (``ManualClock``'s default)."""


async def sign_in(client: httpx.AsyncClient, key: str, next_path: str = "") -> httpx.Response:
    data = {"key": key}
    if next_path:
        data["next"] = next_path
    return await client.post("/dashboard/login", data=data)


def add_event(
    seed: Seed,
    message_uuid: str,
    event_type: EventType,
    at: dt.datetime,
    **extra: Any,
) -> int:
    """Store one event of the seed's account (override ``account_id`` etc. through ``extra``)."""
    values: dict[str, Any] = {
        "account_id": seed.account.account_id,
        "subaccount_id": seed.account.subaccount_id,
        "provider_id": seed.provider.id,
        "recipient": "user@example.com",
        "received_at": at,
        "source": "agent",
    }
    values.update(extra)
    with seed.store.write() as conn:
        [recorded] = RECORDER.record(
            conn,
            [
                event_store.NewEvent(
                    message_uuid=message_uuid, event_type=int(event_type), occurred_at=at, **values
                ),
            ],
        )
    assert recorded.event_id is not None
    return recorded.event_id


def event_ids(html: str) -> list[int]:
    """The IDs of the event rows (or timeline entries) of a page, in page order."""
    return [int(v) for v in re.findall(r'data-event-id="(\d+)"', html)]


def row_of(html: str, attribute: str, value: int) -> str:
    """The HTML of the ``<tr>`` carrying ``attribute="value"``."""
    match = re.search(rf'<tr[^>]*{attribute}="{value}"[^>]*>.*?</tr>', html, re.S)
    assert match is not None, f"no row with {attribute}={value}"
    return match.group(0)


def next_link(html: str) -> str | None:
    match = re.search(r'<a rel="next" href="([^"]+)"', html)
    return None if match is None else match.group(1).replace("&amp;", "&")
