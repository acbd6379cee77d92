"""Stored events: batch recording with deduplication and the outbox, and the filtered listing.

:func:`record_events` is the storage half of the event recorder (``recorder.py``, which every
producer calls: it adds the suppression side effects and the counters). Dedup rules are in
``domain/dedup.py``, enforced by the unique index. A group of events costs one round trip per
table, however many events it holds:

1. events that may repeat (no dedup slot) are inserted in one statement;
2. the first event of each ``(message, recipient, slot)`` key is inserted with
   ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, keys in sorted order (concurrent workers take
   the unique index's entries in the same order, so they queue instead of deadlocking);
3. only the keys that clashed with a stored row, or that occur more than once in the group, are
   read back (one ``SELECT ... FOR UPDATE``), decided in memory in the group's order with
   :func:`~sendpost_platform.domain.dedup.decide`, and written back (one ``UPDATE`` per shape);
4. one ``event_outbox`` row per new or upgraded event and consumer that wants it (for
   ``webhooks``: the account has a webhook, or the message its own endpoint), in the group's
   order.

The group's messages are looked up once (``partition_at`` of slotted events, the message's
endpoint); a producer that has already read them passes them as ``known``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.domain import dedup
from sendpost_platform.store import webhooks as webhook_store
from sendpost_platform.store.dialect import copy_insert, insert_many
from sendpost_platform.store.messages import Message, get_messages
from sendpost_platform.store.partitions import partition_at, window_bounds
from sendpost_platform.store.schema import (
    event_outbox,
    events,
    messages,
    relay_queue,
    send_requests,
)

SLOT_CONFLICT = ("message_uuid", "recipient_key", "dedup_slot")
_UNIQUE = (*SLOT_CONFLICT, "partition_at")  # the unique index (store/partitions.py)

Interest = Callable[[Connection, Sequence[tuple[int, str | None]]], list[bool]]
"""Which of a group's stored events a consumer wants, from each one's (account ID, message's
``webhookEndpoint``)."""

OUTBOX_CONSUMERS: Mapping[str, Interest] = {webhook_store.CONSUMER: webhook_store.wanted}
"""Who gets an ``event_outbox`` row for a new (or upgraded) event it wants, in the event's
transaction."""


class NewEvent(NamedTuple):
    """One event to record. A named tuple rather than a frozen dataclass: as immutable, and a
    fraction of the cost to build (processing builds thousands a second); its values, in this
    order, are the first columns of the row :func:`record_events` writes."""

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


class Recorded(NamedTuple):
    """What became of one recorded event (a named tuple, like :class:`NewEvent`: one per event)."""

    outcome: Outcome
    event_id: int | None
    """The event of record; None when nothing was stored for the report (an unsubscribe of a
    recipient already suppressed, see ``recorder.py``)."""
    event_type: int
    """The type of the event of record after this call (an upgrade changes it)."""

    @property
    def stored(self) -> bool:
        """Whether the event is new or replaced the one of record (it goes to the outbox)."""
        return self.outcome in (Outcome.INSERTED, Outcome.UPGRADED)


_COLUMNS = (*NewEvent._fields, "recipient_key", "dedup_slot", "partition_at")
"""The columns of the row :func:`record_events` writes for an event, in order: the event's
values, then those derived from them."""
_AT = {name: i for i, name in enumerate(_COLUMNS)}
_REPLACED = (*dedup.Report.__slots__, "recipient", "subaccount_id", "provider_id")
_replaced_values = operator.itemgetter(*(_AT[name] for name in _REPLACED))
_PARTITION_AT = _AT["partition_at"]
Row = tuple[Any, ...]
"""An event's row: its values in the order of ``_COLUMNS``."""
_KEY_COLUMNS = [events.c[name] for name in SLOT_CONFLICT]
Key = tuple[str, str, str]

# Statements built once: recording runs for every group of events, and building and cache-keying
# them each time would cost a noticeable share of the work.
_UPDATE_DETAILS = (
    sa.update(events)
    .where(events.c.id == sa.bindparam("b_id"))
    .values(details=sa.bindparam("b_details"))
)
_UPDATE_REPLACED = (
    sa.update(events)
    .where(events.c.id == sa.bindparam("b_id"))
    .values(
        details=sa.bindparam("b_details"),
        **{name: sa.bindparam(f"b_{name}") for name in _REPLACED},
    )
)


@dataclasses.dataclass(slots=True)
class _Row:
    """The event of record of one key while a group is decided."""

    id: int
    report: dedup.Report
    details: dict[str, Any] | None
    replaced: dict[str, Any] | None = None
    dirty: bool = False


def record_events(
    conn: Connection,
    new_events: Sequence[NewEvent],
    *,
    consumers: Mapping[str, Interest] = OUTBOX_CONSUMERS,
    known: Mapping[str, Message] | None = None,
) -> list[Recorded]:
    """Store a group of events (see the module docstring); one result per event, in order.
    ``known``: messages of the group the caller has read (the others are looked up).

    Two reports for the same key in one group are decided in order, exactly as if they had been
    recorded one after the other."""
    if not new_events:
        return []
    found: Mapping[str, Message] = known or {}
    missing = {e.message_uuid for e in new_events} - found.keys()
    if missing:
        found = {**found, **get_messages(conn, missing)}
    # One pass: each event's row (its values and those derived from them, in ``_COLUMNS``
    # order, what COPY sends), and the group's dedup keys.
    rows: list[Row] = []
    plain: list[int] = []
    by_key: dict[Key, list[int]] = {}
    for i, event in enumerate(new_events):
        slot = dedup.dedup_slot(event.event_type)
        key_text = dedup.recipient_key(event.recipient)
        if slot is None:
            plain.append(i)
            created = None
        else:
            message = found.get(event.message_uuid)
            created = None if message is None else message.created_at
            key = (event.message_uuid, key_text, slot)
            occurrences = by_key.get(key)
            if occurrences is None:
                by_key[key] = [i]
            else:
                occurrences.append(i)
        rows.append((*event, key_text, slot, partition_at(slot, event.occurred_at, created)))
    results: list[Recorded | None] = [None] * len(rows)

    if plain:
        inserted = insert_many(
            conn,
            events,
            [dict(zip(_COLUMNS, rows[i], strict=True)) for i in plain],
            returning=("id",),
        )
        ids = sorted(int(r.id) for r in inserted)  # they ascend in the order given
        for i, new_id in zip(plain, ids, strict=True):
            results[i] = Recorded(Outcome.INSERTED, int(new_id), new_events[i].event_type)

    if by_key:
        _record_slotted(conn, new_events, rows, by_key, results)

    done = [r for r in results if r is not None]
    assert len(done) == len(rows)
    if consumers:
        stored = [(e, r) for e, r in zip(new_events, done, strict=True) if r.stored]
        if stored:
            _add_to_outbox(conn, stored, found, consumers)
    return done


def _add_to_outbox(
    conn: Connection,
    stored: list[tuple[NewEvent, Recorded]],
    found: Mapping[str, Message],
    consumers: Mapping[str, Interest],
) -> None:
    """One ``event_outbox`` row per stored event and consumer that wants it, in order."""
    candidates = []
    for event, _ in stored:
        message = found.get(event.message_uuid)
        candidates.append((event.account_id, message.webhook_endpoint if message else None))
    outbox = [
        {
            "consumer": consumer,
            "event_id": recorded.event_id,
            "account_id": event.account_id,
            "message_uuid": event.message_uuid,
            "created_at": event.received_at,
        }
        for consumer, wants in consumers.items()
        for (event, recorded), wanted in zip(stored, wants(conn, candidates), strict=True)
        if wanted
    ]
    insert_many(conn, event_outbox, outbox)


def _record_slotted(
    conn: Connection,
    new_events: Sequence[NewEvent],
    rows: list[Row],
    by_key: dict[Key, list[int]],
    results: list[Recorded | None],
) -> None:
    keys = sorted(by_key)
    firsts = [rows[by_key[k][0]] for k in keys]
    returning = ("id", *SLOT_CONFLICT)
    inserted: Sequence[Sequence[Any]]
    if conn.dialect.name == "postgresql":
        inserted = copy_insert(
            conn,
            events,
            _COLUMNS,
            firsts,
            order_by=SLOT_CONFLICT,
            conflict=_UNIQUE,
            returning=returning,
        )
    else:
        inserted = insert_many(
            conn,
            events,
            [dict(zip(_COLUMNS, row, strict=True)) for row in firsts],
            conflict=_UNIQUE,
            returning=returning,
        )
    state: dict[Key, _Row] = {}
    fresh = set()
    for new_id, *slot in inserted:
        key = (slot[0], slot[1], slot[2])
        fresh.add(key)
        occurrences = by_key[key]
        event = new_events[occurrences[0]]
        results[occurrences[0]] = Recorded(Outcome.INSERTED, int(new_id), event.event_type)
        if len(occurrences) > 1:  # later reports in the group are decided against this one
            state[key] = _Row(int(new_id), event.report(), event.details)
    clashed = [k for k in keys if k not in fresh]
    if clashed:
        times = [rows[by_key[k][0]][_PARTITION_AT] for k in clashed]
        found: Sequence[sa.Row[Any]]
        if conn.dialect.name == "postgresql":
            found = conn.execute(
                _CLASHED_PG,
                {
                    "uuids": [k[0] for k in clashed],
                    "recipients": [k[1] for k in clashed],
                    "slots": [k[2] for k in clashed],
                    "times": times,
                    "partitions": sorted(set(times)),
                },
            ).all()
        else:
            found = conn.execute(
                sa.select(events.c.id, events.c.details, *_KEY_COLUMNS, *_report_columns())
                .where(sa.tuple_(*_KEY_COLUMNS).in_(clashed))
                .where(events.c.partition_at.in_(sorted(set(times))))
                .order_by(*_KEY_COLUMNS)
                .with_for_update()
            ).all()
        for row in found:
            key = (row.message_uuid, row.recipient_key, row.dedup_slot)
            report = dedup.Report(**{name: row._mapping[name] for name in dedup.Report.__slots__})
            state[key] = _Row(int(row.id), report, row.details)
    for key, current in state.items():
        for i in by_key[key]:
            if results[i] is None:
                results[i] = _decide(current, new_events[i], rows[i])
    details_only = [
        {"b_id": r.id, "b_details": r.details} for r in state.values() if r.dirty and not r.replaced
    ]
    replaced = [
        {"b_id": r.id, "b_details": r.details, **{f"b_{k}": v for k, v in r.replaced.items()}}
        for r in state.values()
        if r.dirty and r.replaced
    ]
    if details_only:
        conn.execute(_UPDATE_DETAILS, details_only)
    if replaced:
        conn.execute(_UPDATE_REPLACED, replaced)


def _report_columns() -> list[sa.Column[Any]]:
    return [events.c[name] for name in dedup.Report.__slots__]


_READ_BACK = [events.c.id, events.c.details, *_KEY_COLUMNS, *_report_columns()]
_CLASHED_PG = sa.text(
    f"""
    SELECT {", ".join(f"e.{c.name}" for c in _READ_BACK)}
    FROM unnest(CAST(:uuids AS text[]), CAST(:recipients AS text[]), CAST(:slots AS text[]),
                CAST(:times AS timestamptz[])) AS k(message_uuid, recipient_key, dedup_slot, at)
    CROSS JOIN LATERAL (
        SELECT * FROM events
        WHERE message_uuid = k.message_uuid AND recipient_key = k.recipient_key
            AND dedup_slot = k.dedup_slot AND partition_at = k.at
            AND partition_at = ANY(CAST(:partitions AS timestamptz[]))
        LIMIT 1
        FOR UPDATE
    ) AS e
    """  # noqa: S608 (schema names)
).columns(*_READ_BACK)
"""The rows of record of the keys that clashed, locked one key after the other in the order
given (sorted: every recorder takes them in the same order, so concurrent ones queue instead of
deadlocking), on PostgreSQL. One probe of the unique index per key, whatever the planner
believes of a partition filled since it was last analysed (a plain join of the keys may be
planned as a scan of the whole partition), and one statement text for any number of keys (a
``(columns) IN (...)`` list is planned anew for each length, as an ``OR`` of every key)."""


def _decide(current: _Row, event: NewEvent, row: Row) -> Recorded:
    """Apply one more report for a key to its event of record (in memory)."""
    incoming = event.report()
    action = dedup.decide(current.report, incoming, current.details)
    if action is dedup.Action.DROP:
        return Recorded(Outcome.DUPLICATE, current.id, current.report.event_type)
    current.dirty = True
    if action is dedup.Action.MERGE:
        current.details = dedup.merged_details(current.details, incoming)
        return Recorded(Outcome.MERGED, current.id, current.report.event_type)
    current.details = dedup.merged_details(
        {**(current.details or {}), **(event.details or {})}, current.report
    )
    current.replaced = dict(zip(_REPLACED, _replaced_values(row), strict=True))
    current.report = incoming
    return Recorded(Outcome.UPGRADED, current.id, event.event_type)


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
    return query.where(*window_bounds(where.since, where.until))


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
