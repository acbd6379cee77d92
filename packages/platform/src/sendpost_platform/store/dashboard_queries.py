"""Read-only queries the web dashboard needs beyond the API's (``dashboard/``).

The event listing itself is :func:`sendpost_platform.store.events.list_events` (shared with
``GET /api/v1/events``); this module adds the small lookups around it and the counts over time.
Every function is scoped to one account, except the sign-out records (by random session ID).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.store.partitions import window_bounds
from sendpost_platform.store.schema import (
    accounts,
    dashboard_signouts,
    events,
    relay_attempts,
    relay_queue,
    send_requests,
    subaccounts,
)
from sendpost_platform.store.schema import custom_smtp_providers as providers


def account_key_hash(conn: Connection, account_id: int) -> tuple[str, str] | None:
    """The account's name and current key hash (a session is bound to it), or None."""
    row = conn.execute(
        sa.select(accounts.c.name, accounts.c.key_hash).where(accounts.c.id == account_id)
    ).first()
    return None if row is None else (row.name, row.key_hash)


def end_session(
    conn: Connection, session_id: str, expires_at: dt.datetime, now: dt.datetime
) -> None:
    """Record a signed-out session (idempotent) and forget those past their expiry."""
    conn.execute(sa.delete(dashboard_signouts).where(dashboard_signouts.c.expires_at < now))
    exists = conn.execute(
        sa.select(dashboard_signouts.c.session_id).where(
            dashboard_signouts.c.session_id == session_id
        )
    ).first()
    if exists is None:
        conn.execute(
            sa.insert(dashboard_signouts).values(session_id=session_id, expires_at=expires_at)
        )


def session_ended(conn: Connection, session_id: str) -> bool:
    """Whether this session was signed out."""
    row = conn.execute(
        sa.select(dashboard_signouts.c.session_id).where(
            dashboard_signouts.c.session_id == session_id
        )
    ).first()
    return row is not None


@dataclasses.dataclass(frozen=True, slots=True)
class RelayAttempt:
    attempt: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    ok: bool | None
    smtp_code: int | None
    reply: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the send request said (subject, From) and each relay attempt, for a message page."""

    subject: str | None
    from_header: str | None
    attempts: list[RelayAttempt]


def message_facts(conn: Connection, message_uuid: str) -> MessageFacts:
    """The subject and From of a message's send request (None for messages not sent through
    the send API) and its relay attempts, oldest first. The caller checks the account."""
    content = conn.execute(
        sa.select(send_requests.c.content)
        .join(relay_queue, relay_queue.c.request_id == send_requests.c.id)
        .where(relay_queue.c.message_uuid == message_uuid)
    ).scalar()
    subject = from_header = None
    if isinstance(content, dict):
        subject = content.get("subject") if isinstance(content.get("subject"), str) else None
        sender = content.get("from")
        if isinstance(sender, dict):
            email, name = sender.get("email"), sender.get("name")
            if isinstance(email, str):
                from_header = f"{name} <{email}>" if isinstance(name, str) and name else email
        elif isinstance(sender, str):
            name = content.get("fromName")
            from_header = f"{name} <{sender}>" if isinstance(name, str) and name else sender
    rows = conn.execute(
        sa.select(relay_attempts)
        .where(relay_attempts.c.message_uuid == message_uuid)
        .order_by(relay_attempts.c.attempt, relay_attempts.c.id)
    )
    attempts = [
        RelayAttempt(r.attempt, r.started_at, r.finished_at, r.ok, r.smtp_code, r.reply)
        for r in rows
    ]
    return MessageFacts(subject, from_header, attempts)


def subaccount_names(conn: Connection, account_id: int) -> dict[int, str]:
    """The account's sub-accounts, ID → name, in ID order."""
    rows = conn.execute(
        sa.select(subaccounts.c.id, subaccounts.c.name)
        .where(subaccounts.c.account_id == account_id)
        .order_by(subaccounts.c.id)
    )
    return {row.id: row.name for row in rows}


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderLabel:
    id: int
    name: str
    deleted: bool


def provider_labels(conn: Connection, account_id: int) -> dict[int, ProviderLabel]:
    """Every provider the account ever had (deleted ones too: old events still name them)."""
    rows = conn.execute(
        sa.select(providers.c.id, providers.c.name, providers.c.deleted_at)
        .where(providers.c.account_id == account_id)
        .order_by(providers.c.id)
    )
    return {row.id: ProviderLabel(row.id, row.name, row.deleted_at is not None) for row in rows}


@dataclasses.dataclass(frozen=True, slots=True)
class Buckets:
    """``count`` consecutive intervals of ``step`` starting at ``start`` (UTC)."""

    start: dt.datetime
    step: dt.timedelta
    count: int

    @property
    def end(self) -> dt.datetime:
        return self.start + self.step * self.count

    def edges(self) -> list[dt.datetime]:
        """The start of each interval."""
        return [self.start + self.step * i for i in range(self.count)]


def bucket_index(buckets: Buckets) -> sa.ColumnElement[int]:
    """The interval of ``events.occurred_at`` within ``buckets`` (0-based), as SQL."""
    edges = buckets.edges()[1:]
    if not edges:  # one interval: SQL has no CASE without a WHEN
        return sa.literal(0, sa.Integer)
    return sa.case(
        *((events.c.occurred_at < edge, i) for i, edge in enumerate(edges)),
        else_=len(edges),
    )


def counts_by_bucket(
    conn: Connection, account_id: int, buckets: Buckets, *, provider_id: int | None = None
) -> dict[tuple[int, int], int]:
    """Stored events per (interval index, event type) within ``buckets``; zero counts omitted.

    The interval of each event is computed with a portable ``CASE`` over the interval edges, so
    the same query runs on SQLite and PostgreSQL and uses the ``(account_id, occurred_at)``
    index for the range.
    """
    if buckets.count < 1:
        return {}
    inner = sa.select(bucket_index(buckets).label("bucket"), events.c.event_type).where(
        events.c.account_id == account_id,
        events.c.occurred_at >= buckets.start,
        events.c.occurred_at < buckets.end,
        *window_bounds(buckets.start, buckets.end),
    )
    if provider_id is not None:
        inner = inner.where(events.c.provider_id == provider_id)
    sub = inner.subquery()
    query = sa.select(sub.c.bucket, sub.c.event_type, sa.func.count()).group_by(
        sub.c.bucket, sub.c.event_type
    )
    return {(int(b), int(t)): int(n) for b, t, n in conn.execute(query)}


def counts_by_provider(
    conn: Connection, account_id: int, since: dt.datetime, until: dt.datetime
) -> dict[int | None, dict[int, int]]:
    """Stored events per provider (None: events of no provider) and type in ``[since, until)``."""
    query = (
        sa.select(events.c.provider_id, events.c.event_type, sa.func.count())
        .where(
            events.c.account_id == account_id,
            events.c.occurred_at >= since,
            events.c.occurred_at < until,
            *window_bounds(since, until),
        )
        .group_by(events.c.provider_id, events.c.event_type)
    )
    out: dict[int | None, dict[int, int]] = {}
    for provider_id, event_type, n in conn.execute(query):
        out.setdefault(provider_id, {})[int(event_type)] = int(n)
    return out
