"""Stored events: recording with deduplication, and the filtered, paginated listing.

Everything that stores an event (agent processing, relay, bounce processor, tracking) calls
:func:`record_event`; dedup rules are in ``domain/dedup.py``, enforced by the unique index.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.domain import dedup
from sendpost_platform.store.dialect import insert_ignore
from sendpost_platform.store.schema import (
    event_outbox,
    events,
    messages,
    relay_queue,
    send_requests,
)

SLOT_CONFLICT = ("message_uuid", "recipient_key", "dedup_slot")

OUTBOX_CONSUMERS = ("webhooks",)
"""Who gets an ``event_outbox`` row for each new (or upgraded) event, in the event's transaction."""


@dataclasses.dataclass(frozen=True, slots=True)
class NewEvent:
    message_uuid: str
    account_id: int
    event_type: int
    occurred_at: dt.datetime
    received_at: dt.datetime
    source: str
    """Who reported it: ``agent``, ``dsn``, ``relay``, ``api``, ``tracking``."""
    subaccount_id: int | None = None
    provider_id: int | None = None
    recipient: str | None = None
    smtp_code: int | None = None
    enhanced_status: str | None = None
    smtp_command: str | None = None
    reason: str | None = None
    description: str | None = None
    agent_event_id: str | None = None
    details: dict[str, Any] | None = None

    def report(self) -> dedup.Report:
        return dedup.Report(
            event_type=self.event_type,
            source=self.source,
            smtp_code=self.smtp_code,
            enhanced_status=self.enhanced_status,
            smtp_command=self.smtp_command,
            reason=self.reason,
            description=self.description,
            occurred_at=self.occurred_at,
            agent_event_id=self.agent_event_id,
        )


class Outcome(enum.Enum):
    INSERTED = "inserted"
    DUPLICATE = "duplicate"
    MERGED = "merged"
    UPGRADED = "upgraded"


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    outcome: Outcome
    event_id: int
    event_type: int
    """The type of the event of record after this call (an upgrade changes it)."""


_REPORT_COLUMNS = [events.c[name] for name in ("id", "details", *dedup.Report.__slots__)]


def record_event(conn: Connection, event: NewEvent) -> Recorded:
    """Store ``event``, or merge it into the event it duplicates (see ``domain/dedup.py``).

    A new event, and an upgraded one (its type changed), is also put in the outbox for each of
    :data:`OUTBOX_CONSUMERS`; a dropped or merged duplicate is not."""
    recorded = _record(conn, event)
    if recorded.outcome in (Outcome.INSERTED, Outcome.UPGRADED):
        conn.execute(
            sa.insert(event_outbox),
            [
                {
                    "consumer": consumer,
                    "event_id": recorded.event_id,
                    "account_id": event.account_id,
                    "message_uuid": event.message_uuid,
                    "created_at": event.received_at,
                }
                for consumer in OUTBOX_CONSUMERS
            ],
        )
    return recorded


def _record(conn: Connection, event: NewEvent) -> Recorded:
    slot = dedup.dedup_slot(event.event_type)
    values = dataclasses.asdict(event)
    values["recipient_key"] = dedup.recipient_key(event.recipient)
    values["dedup_slot"] = slot
    if slot is None:
        new_id = conn.execute(sa.insert(events).values(**values).returning(events.c.id))
        return Recorded(Outcome.INSERTED, new_id.scalar_one(), event.event_type)
    inserted = insert_ignore(conn, events, values, conflict=SLOT_CONFLICT)
    if inserted is not None:
        return Recorded(Outcome.INSERTED, inserted, event.event_type)
    row = conn.execute(
        sa.select(*_REPORT_COLUMNS)
        .where(
            events.c.message_uuid == event.message_uuid,
            events.c.recipient_key == values["recipient_key"],
            events.c.dedup_slot == slot,
        )
        .with_for_update()
    ).one()
    existing = dedup.Report(**{name: row._mapping[name] for name in dedup.Report.__slots__})
    action = dedup.decide(existing, event.report(), row.details)
    if action is dedup.Action.DROP:
        return Recorded(Outcome.DUPLICATE, row.id, existing.event_type)
    if action is dedup.Action.MERGE:
        details = dedup.merged_details(row.details, event.report())
        conn.execute(sa.update(events).where(events.c.id == row.id).values(details=details))
        return Recorded(Outcome.MERGED, row.id, existing.event_type)
    details = dedup.merged_details({**(row.details or {}), **(event.details or {})}, existing)
    replace = {
        k: values[k]
        for k in (*dedup.Report.__slots__, "recipient", "subaccount_id", "provider_id")
        if k in values
    }
    conn.execute(sa.update(events).where(events.c.id == row.id).values(**replace, details=details))
    return Recorded(Outcome.UPGRADED, row.id, event.event_type)


# --- listing ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class EventFilter:
    account_id: int
    provider_id: int | None = None
    event_types: Sequence[int] = ()
    subaccount_id: int | None = None
    message_uuid: str | None = None
    recipient: str | None = None
    since: dt.datetime | None = None
    """Inclusive lower bound on ``occurred_at``."""
    until: dt.datetime | None = None
    """Exclusive upper bound on ``occurred_at``."""
    recipient_contains: str | None = None
    """Case-insensitive substring of the recipient (the dashboard's search)."""
    sender_contains: str | None = None
    """Case-insensitive substring of the message's envelope sender."""
    subject_contains: str | None = None
    """Case-insensitive substring of the subject of the send request behind the message."""


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """A keyset position: listing continues with events strictly older than this one."""

    occurred_at: dt.datetime
    id: int


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, lower-cased, its wildcards escaped."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filtered(query: sa.Select[Any], where: EventFilter) -> sa.Select[Any]:
    query = query.where(events.c.account_id == where.account_id)
    if where.provider_id is not None:
        query = query.where(events.c.provider_id == where.provider_id)
    if where.event_types:
        query = query.where(events.c.event_type.in_(list(where.event_types)))
    if where.subaccount_id is not None:
        query = query.where(events.c.subaccount_id == where.subaccount_id)
    if where.message_uuid is not None:
        query = query.where(events.c.message_uuid == where.message_uuid)
    if where.recipient is not None:
        query = query.where(events.c.recipient_key == dedup.recipient_key(where.recipient))
    if where.recipient_contains:
        query = query.where(
            events.c.recipient_key.like(_like(where.recipient_contains), escape="\\")
        )
    if where.sender_contains:
        senders = sa.select(messages.c.uuid).where(
            messages.c.account_id == where.account_id,
            sa.func.lower(messages.c.sender).like(_like(where.sender_contains), escape="\\"),
        )
        query = query.where(events.c.message_uuid.in_(senders))
    if where.subject_contains:
        subject = send_requests.c.content["subject"].as_string()
        subjects = (
            sa.select(relay_queue.c.message_uuid)
            .join(send_requests, send_requests.c.id == relay_queue.c.request_id)
            .where(
                send_requests.c.account_id == where.account_id,
                sa.func.lower(subject).like(_like(where.subject_contains), escape="\\"),
            )
        )
        query = query.where(events.c.message_uuid.in_(subjects))
    if where.since is not None:
        query = query.where(events.c.occurred_at >= where.since)
    if where.until is not None:
        query = query.where(events.c.occurred_at < where.until)
    return query


def list_events(
    conn: Connection,
    where: EventFilter,
    *,
    limit: int,
    after: Position | None = None,
    before: Position | None = None,
) -> tuple[list[dict[str, Any]], Position | None]:
    """Newest first (``occurred_at``, then ``id``); returns rows and the next page's position.

    Keyset pagination: pages stay stable while new events arrive (they sort before the cursor).
    With ``before`` (paging back towards the newest) the rows are the ``limit`` events just
    newer than that position, still newest first, and the position returned is that of the
    first row when there are newer ones still (None: this is the newest page).
    """
    query = _filtered(sa.select(events), where)
    if after is not None:
        query = query.where(
            sa.or_(
                events.c.occurred_at < after.occurred_at,
                sa.and_(events.c.occurred_at == after.occurred_at, events.c.id < after.id),
            )
        )
    if before is not None:
        query = query.where(
            sa.or_(
                events.c.occurred_at > before.occurred_at,
                sa.and_(events.c.occurred_at == before.occurred_at, events.c.id > before.id),
            )
        )
        query = query.order_by(events.c.occurred_at.asc(), events.c.id.asc()).limit(limit + 1)
        rows = [dict(r._mapping) for r in conn.execute(query)]
        newer = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        return rows, Position(rows[0]["occurred_at"], rows[0]["id"]) if newer else None
    query = query.order_by(events.c.occurred_at.desc(), events.c.id.desc()).limit(limit + 1)
    rows = [dict(r._mapping) for r in conn.execute(query)]
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, Position(last["occurred_at"], last["id"])


def count_events(conn: Connection, where: EventFilter, *, cap: int) -> int:
    """How many events match, counted up to ``cap`` (a bounded scan: ``cap`` means "or more")."""
    matching = _filtered(sa.select(events.c.id), where).limit(cap).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(matching)).scalar() or 0)


def newer_exists(conn: Connection, where: EventFilter, position: Position) -> bool:
    """Whether any matching event sorts before ``position`` (a newer page exists)."""
    query = _filtered(sa.select(events.c.id), where).where(
        sa.or_(
            events.c.occurred_at > position.occurred_at,
            sa.and_(events.c.occurred_at == position.occurred_at, events.c.id > position.id),
        )
    )
    return conn.execute(query.limit(1)).first() is not None


def iterate_events(
    conn: Connection, where: EventFilter, *, cap: int, page: int = 1000
) -> Iterator[dict[str, Any]]:
    """Every matching event, newest first, up to ``cap``, read one keyset page at a time."""
    after = None
    sent = 0
    while sent < cap:
        rows, after = list_events(conn, where, limit=min(page, cap - sent), after=after)
        yield from rows
        sent += len(rows)
        if after is None:
            return


@dataclasses.dataclass(frozen=True, slots=True)
class TrackingSeen:
    total: int
    """Stored events of the kind for the message, counted up to the limit asked."""
    recent: list[dict[str, Any] | None]
    """The details of those that occurred since the time asked."""


def tracking_seen(
    conn: Connection, message_uuid: str, event_type: int, *, since: dt.datetime, limit: int
) -> TrackingSeen:
    """How many opens (or clicks) a message has stored, and the recent ones' details."""
    rows = conn.execute(
        sa.select(events.c.occurred_at, events.c.details)
        .where(events.c.message_uuid == message_uuid, events.c.event_type == event_type)
        .order_by(events.c.id.desc())
        .limit(limit)
    ).all()
    return TrackingSeen(len(rows), [r.details for r in rows if r.occurred_at >= since])


def events_for_message(conn: Connection, message_uuid: str) -> list[dict[str, Any]]:
    """A message's timeline, oldest first."""
    rows = conn.execute(
        sa.select(events)
        .where(events.c.message_uuid == message_uuid)
        .order_by(events.c.occurred_at, events.c.id)
    )
    return [dict(r._mapping) for r in rows]
