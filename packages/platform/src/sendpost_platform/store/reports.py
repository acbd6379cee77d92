"""Read models for SendPost's message and statistics APIs (``api/messages.py``,
``api/stats.py``): a message with the request it came from, and event counts per UTC day.

Statistics count the CS* events (``sendpost_wire.EventType``) by the UTC day they occurred:
``processed`` CSProcessed, ``sent`` CSSent, ``dropped`` CSDropped without an SMTP attempt
(suppressed, invalid, no verified return path), ``smtpDropped`` CSDropped by the relay after
its retries (reason ``Relay failed after N attempts``), ``delivered`` CSDelivered,
``softBounced`` CSSoftBounced, ``hardBounced`` CSHardBounced, ``opened`` CSOpen, ``clicked``
CSClick, ``unsubscribed`` CSUnsubscribe, ``spam`` CSSpamReport. ``deferred`` (CSDeferred) has
no SendPost field; the answers add it under that name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sendpost_wire import EventType
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from sendpost_platform.store.dashboard_queries import Buckets, bucket_index
from sendpost_platform.store.partitions import window_bounds
from sendpost_platform.store.schema import events, messages, relay_queue, send_requests

RELAY_FAILED = "Relay failed after"
"""How the relay's reason for a drop after its retries begins (``relay_worker.py``)."""

COUNTS: tuple[str, ...] = (
    "processed",
    "sent",
    "dropped",
    "smtpDropped",
    "delivered",
    "softBounced",
    "hardBounced",
    "opened",
    "clicked",
    "unsubscribed",
    "spam",
    "deferred",
)
"""The statistic names, SendPost's first."""

_BY_TYPE = {
    EventType.CSProcessed: "processed",
    EventType.CSSent: "sent",
    EventType.CSDelivered: "delivered",
    EventType.CSSoftBounced: "softBounced",
    EventType.CSHardBounced: "hardBounced",
    EventType.CSOpen: "opened",
    EventType.CSClick: "clicked",
    EventType.CSUnsubscribe: "unsubscribed",
    EventType.CSSpamReport: "spam",
    EventType.CSDeferred: "deferred",
}


@dataclasses.dataclass(frozen=True, slots=True)
class MessageRecord:
    uuid: str
    subaccount_id: int
    provider_id: int | None
    recipient: str
    sender: str
    state: str
    created_at: dt.datetime
    content: dict[str, Any] | None


def _records(conn: Connection, query: sa.Select[Any]) -> list[MessageRecord]:
    rows = conn.execute(query).all()
    return [
        MessageRecord(
            r.uuid,
            r.subaccount_id,
            r.provider_id,
            r.recipient,
            r.sender,
            r.state,
            r.created_at,
            r.content,
        )
        for r in rows
    ]


def _message_query() -> sa.Select[Any]:
    m = messages.c
    return sa.select(
        m.uuid,
        m.subaccount_id,
        m.provider_id,
        m.recipient,
        m.sender,
        m.state,
        m.created_at,
        send_requests.c.content,
    ).select_from(
        messages.outerjoin(relay_queue, relay_queue.c.message_uuid == m.uuid).outerjoin(
            send_requests, send_requests.c.id == relay_queue.c.request_id
        )
    )


def message_record(conn: Connection, *, account_id: int, uuid: str) -> MessageRecord | None:
    found = _records(
        conn,
        _message_query().where(messages.c.uuid == uuid, messages.c.account_id == account_id),
    )
    return found[0] if found else None


def message_records(
    conn: Connection,
    *,
    account_id: int,
    since: dt.datetime,
    until: dt.datetime,
    limit: int,
    offset: int,
) -> list[MessageRecord]:
    """Messages created in ``[since, until]``, oldest first."""
    m = messages.c
    return _records(
        conn,
        _message_query()
        .where(m.account_id == account_id, m.created_at >= since, m.created_at <= until)
        .order_by(m.created_at, m.uuid)
        .offset(offset)
        .limit(limit),
    )


def daily_counts(
    conn: Connection,
    *,
    account_id: int,
    since: dt.date,
    until: dt.date,
    subaccount_ids: Iterable[int] | None = None,
    group: str | None = None,
) -> dict[dt.date, dict[str, int]]:
    """Event counts per UTC day from ``since`` to ``until`` (inclusive), every day present
    (the day of each event by ``dashboard_queries.bucket_index``, on both databases); with
    ``group``, only the events of messages sent with that group (``messages.groups``)."""
    buckets = Buckets(
        dt.datetime.combine(since, dt.time(), dt.UTC),
        dt.timedelta(days=1),
        (until - since).days + 1,
    )
    e = events.c
    # A drop after relay attempts (smtpDropped) says so in its reason; every other drop
    # (suppressed, invalid, no verified return path) happened before anything was sent.
    after_relay = sa.case((e.reason.like(f"{RELAY_FAILED}%"), "smtp"), else_="pre")
    inner = sa.select(
        bucket_index(buckets).label("day"), e.event_type, after_relay.label("source")
    ).where(
        e.account_id == account_id,
        e.occurred_at >= buckets.start,
        e.occurred_at < buckets.end,
        *window_bounds(buckets.start, buckets.end),
    )
    if subaccount_ids is not None:
        inner = inner.where(e.subaccount_id.in_(sorted(set(subaccount_ids))))
    if group is not None:
        tagged = sa.select(messages.c.uuid).where(
            messages.c.account_id == account_id, _has_group(conn, group)
        )
        inner = inner.where(e.message_uuid.in_(tagged))
    sub = inner.subquery()
    query = sa.select(sub.c.day, sub.c.event_type, sub.c.source, sa.func.count()).group_by(
        sub.c.day, sub.c.event_type, sub.c.source
    )
    days = [since + dt.timedelta(days=i) for i in range(buckets.count)]
    counts = {day: dict.fromkeys(COUNTS, 0) for day in days}
    for index, event_type, source, n in conn.execute(query):
        row = counts[days[int(index)]]
        if event_type == EventType.CSDropped:
            row["smtpDropped" if source == "smtp" else "dropped"] += int(n)
        elif event_type in _NAMES:
            row[_NAMES[event_type]] += int(n)
    return counts


_NAMES: dict[int, str] = {int(t): name for t, name in _BY_TYPE.items()}


def _has_group(conn: Connection, group: str) -> sa.ColumnElement[bool]:
    """``messages.groups`` (a JSON list of strings) holds ``group``, exactly."""
    if conn.dialect.name == "postgresql":
        return sa.cast(messages.c.groups, JSONB).op("?")(group)
    each = sa.func.json_each(messages.c.groups).table_valued("value")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value == group))
