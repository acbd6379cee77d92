"""Webhooks and their delivery queue (``webhooks``, ``webhook_deliveries``).

Life of an event on its way out::

    event_outbox (consumer "webhooks")
        ──fan_out──▶ webhook_deliveries: pending ──claim──▶ pending + claimed_by/claimed_until
                                            ▲                          │ finish
                                            └── retry: next_attempt_at ┤
                                                                       ├─▶ done    (2xx)
                                                                       └─▶ failed  (schedule
                                                                            exhausted; replay
                                                                            sets it pending)

- The recorder writes an outbox row for an event only when :func:`wanted` says so: the
  account has a webhook or the message has a ``webhookEndpoint``. An event recorded before
  its account's first webhook existed is not delivered to it.
- :func:`fan_out` turns outbox rows into one delivery per enabled webhook of the account whose
  switches want the event, plus one for the message's ``webhookEndpoint`` (when the ``messages``
  table has that column and the message set it), and deletes the outbox rows, in one
  transaction. On PostgreSQL one dispatcher fans out at a time (a transaction-level advisory
  lock), so delivery ids follow outbox ids across processes.
- :func:`claim` takes due deliveries for one dispatcher until ``claimed_until`` (a lease), with
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL. A delivery is due only when no earlier delivery of
  the same message to the same target is still pending: **in order per message**. A dispatcher
  that dies leaves its claims to expire; another takes them then (at least once).
- :func:`finish_many` applies outcomes only where the claim is still the dispatcher's, and
  :func:`update_health` moves each webhook's health (``domain/webhooks.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.domain import webhooks as rules
from sendpost_platform.store.dialect import among, insert_many
from sendpost_platform.store.schema import (
    event_outbox,
    events,
    messages,
    relay_queue,
    send_requests,
    webhook_deliveries,
    webhooks,
)

CONSUMER = "webhooks"
PENDING = "pending"
DONE = "done"
FAILED = "failed"
MESSAGE_TARGET = "m"
_FANOUT_LOCK = 0x5E4D_0013
"""PostgreSQL advisory lock key held by the dispatcher that fans out."""


@dataclasses.dataclass(frozen=True, slots=True)
class StoredWebhook:
    id: int
    account_id: int
    url: str
    enabled: bool
    switches: dict[str, bool]
    status: str
    failure_streak: int
    disabled_at: dt.datetime | None
    disabled_reason: str | None
    delivered_count: int
    failed_count: int
    created_at: dt.datetime
    secret_encrypted: str


def _webhook(row: Any) -> StoredWebhook:
    m = row._mapping
    return StoredWebhook(
        id=int(m["id"]),
        account_id=int(m["account_id"]),
        url=m["url"],
        enabled=bool(m["enabled"]),
        switches={**rules.SWITCHES, **dict(m["switches"])},
        status=m["status"],
        failure_streak=int(m["failure_streak"]),
        disabled_at=m["disabled_at"],
        disabled_reason=m["disabled_reason"],
        delivered_count=int(m["delivered_count"]),
        failed_count=int(m["failed_count"]),
        created_at=m["created_at"],
        secret_encrypted=m["secret_encrypted"],
    )


# --- the webhook objects ------------------------------------------------------------------------


def create_webhook(
    conn: Connection,
    *,
    account_id: int,
    url: str,
    enabled: bool,
    switches: dict[str, bool],
    secret_encrypted: str,
    now: dt.datetime,
) -> StoredWebhook:
    new_id = conn.execute(
        sa.insert(webhooks)
        .values(
            account_id=account_id,
            url=url,
            enabled=enabled,
            switches=switches,
            secret_encrypted=secret_encrypted,
            status=rules.ACTIVE,
            failure_streak=0,
            delivered_count=0,
            failed_count=0,
            created_at=now,
            updated_at=now,
        )
        .returning(webhooks.c.id)
    ).scalar_one()
    found = get_webhook(conn, account_id=account_id, webhook_id=int(new_id))
    assert found is not None
    return found


def get_webhook(conn: Connection, *, account_id: int, webhook_id: int) -> StoredWebhook | None:
    row = conn.execute(
        sa.select(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.account_id == account_id)
    ).first()
    return None if row is None else _webhook(row)


def list_webhooks(
    conn: Connection, *, account_id: int, limit: int, offset: int, search: str | None
) -> list[StoredWebhook]:
    query = sa.select(webhooks).where(webhooks.c.account_id == account_id)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(sa.func.lower(webhooks.c.url).like(f"%{escaped}%", escape="\\"))
    rows = conn.execute(query.order_by(webhooks.c.id).limit(limit).offset(offset))
    return [_webhook(r) for r in rows]


def update_webhook(
    conn: Connection,
    *,
    account_id: int,
    webhook_id: int,
    url: str,
    enabled: bool,
    switches: dict[str, bool],
    now: dt.datetime,
) -> StoredWebhook | None:
    """Replace the webhook's settings. Enabling a ``disabled`` webhook re-enables it: status
    ``active``, streak 0, and its failed deliveries are replayed (see :func:`replay`)."""
    current = get_webhook(conn, account_id=account_id, webhook_id=webhook_id)
    if current is None:
        return None
    values: dict[str, Any] = {
        "url": url,
        "enabled": enabled,
        "switches": switches,
        "updated_at": now,
    }
    if enabled and current.status == rules.DISABLED:
        values.update(status=rules.ACTIVE, failure_streak=0, disabled_at=None, disabled_reason=None)
    conn.execute(sa.update(webhooks).where(webhooks.c.id == webhook_id).values(**values))
    if enabled and current.status == rules.DISABLED:
        replay(conn, webhook_id=webhook_id, now=now)
    return get_webhook(conn, account_id=account_id, webhook_id=webhook_id)


def replay(conn: Connection, *, webhook_id: int, now: dt.datetime) -> int:
    """Send the webhook's failed deliveries again from the start of the schedule; how many."""
    return int(
        conn.execute(
            sa.update(webhook_deliveries)
            .where(
                webhook_deliveries.c.webhook_id == webhook_id,
                webhook_deliveries.c.status == FAILED,
            )
            .values(
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                claimed_by=None,
                claimed_until=None,
                finished_at=None,
            )
        ).rowcount
    )


def delete_webhook(conn: Connection, *, account_id: int, webhook_id: int) -> bool:
    """Delete the webhook and its deliveries not yet made."""
    deleted = conn.execute(
        sa.delete(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.account_id == account_id)
    ).rowcount
    if deleted:
        conn.execute(
            sa.delete(webhook_deliveries).where(
                webhook_deliveries.c.webhook_id == webhook_id,
                webhook_deliveries.c.status != DONE,
            )
        )
    return bool(deleted)


# --- fan-out ----------------------------------------------------------------------------------


def wanted(conn: Connection, candidates: Sequence[tuple[int, str | None]]) -> list[bool]:
    """Which events the webhooks consumer wants an outbox row for, given each one's account and
    its message's own ``webhookEndpoint``: those of an account that has a webhook (whatever its
    switches and state: :func:`fan_out` decides with what it finds then) or of a message with
    an endpoint. One query of the (small) ``webhooks`` table for the accounts without one."""
    asking = sorted({account for account, endpoint in candidates if not endpoint})
    having: set[int] = set()
    if asking:
        having = {
            int(r[0])
            for r in conn.execute(
                sa.select(webhooks.c.account_id).where(webhooks.c.account_id.in_(asking)).distinct()
            )
        }
    return [bool(endpoint) or account in having for account, endpoint in candidates]


def _try_fanout_lock(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return True  # SQLite: writers are serialised (BEGIN IMMEDIATE)
    return bool(
        conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(_FANOUT_LOCK))).scalar_one()
    )


@dataclasses.dataclass(slots=True)
class Room:
    """How many more deliveries one dispatcher may claim in a pass: in all, per endpoint URL,
    and for a URL it holds nothing of yet. :meth:`take` uses one up."""

    total: int
    per_url: dict[str, int]
    new_url: int

    def take(self, url: str) -> bool:
        left = self.per_url.get(url, self.new_url)
        if self.total <= 0 or left <= 0:
            return False
        self.total -= 1
        self.per_url[url] = left - 1
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """Who claims (``worker_id``), until when, and within what room."""

    worker_id: str
    until: dt.datetime
    room: Room


def fan_out(
    conn: Connection, *, limit: int, now: dt.datetime, claim: Claim | None = None
) -> tuple[int, list[ClaimedDelivery]]:
    """Turn up to ``limit`` outbox rows into deliveries; returns the outbox rows consumed and,
    with ``claim``, the new deliveries claimed as they are inserted (within its room).

    A new delivery is claimed at once only where :func:`due` and :func:`take` would have
    claimed it: its webhook live (enabled, not disabled) or a message endpoint, and no pending
    delivery of its message to its target before it, neither in the table (fan-out is one
    transaction at a time, so every earlier one is there) nor earlier in this batch. That saves
    the claim's read and update of rows just written; the others wait for :func:`due`."""
    if not _try_fanout_lock(conn):
        return 0, []
    o, e = event_outbox, events
    outbox = conn.execute(
        sa.select(o.c.id, o.c.event_id, o.c.account_id, o.c.message_uuid, o.c.created_at)
        .where(o.c.consumer == CONSUMER)
        .order_by(o.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not outbox:
        return 0, []
    event_ids = sorted({int(r.event_id) for r in outbox})
    stored = {
        int(r.id): r
        for r in conn.execute(
            sa.select(
                e.c.id,
                e.c.message_uuid,
                e.c.event_type,
                e.c.occurred_at,
                e.c.recipient,
                e.c.smtp_code,
                e.c.description,
                e.c.details,
            ).where(among(conn, e.c.id, event_ids))
        )
    }
    facts = _message_facts(conn, {r.message_uuid for r in outbox})
    firsts = _first_of_kind(
        conn, [e for e in stored.values() if e.event_type in rules.UNIQUE_SWITCH]
    )
    accounts = sorted({int(r.account_id) for r in outbox})
    hooks = [
        _webhook(r)
        for r in conn.execute(
            sa.select(webhooks)
            .where(among(conn, webhooks.c.account_id, accounts), webhooks.c.enabled.is_(True))
            .order_by(webhooks.c.id)
        )
    ]
    rows: list[dict[str, Any]] = []
    made: set[tuple[str, str]] = set()  # (event_key, target): an upgraded event seen twice
    for entry in outbox:
        event = stored.get(int(entry.event_id))
        message = facts.get(entry.message_uuid)
        if event is None or message is None or event.event_type not in rules.SENDPOST_TYPES:
            continue
        body = json.dumps(
            rules.payload(
                event_id=int(event.id),
                event_type=int(event.event_type),
                occurred_at=event.occurred_at,
                recipient=event.recipient,
                smtp_code=event.smtp_code,
                description=event.description,
                details=event.details,
                message=message,
            ),
            separators=(",", ":"),
        )
        base = {
            "account_id": int(entry.account_id),
            "message_uuid": entry.message_uuid,
            "event_id": int(event.id),
            "event_key": rules.event_key(int(event.id), int(event.event_type)),
            "body": body,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": entry.created_at,
        }
        first = int(event.id) in firsts
        targets: list[tuple[int | None, str | None, str]] = [
            (hook.id, None, f"w{hook.id}")
            for hook in hooks
            if hook.account_id == entry.account_id
            and rules.wanted(hook.switches, int(event.event_type), first_of_kind=first)
        ]
        if message.webhook_endpoint:
            targets.append((None, message.webhook_endpoint, MESSAGE_TARGET))
        for webhook_id, url, target in targets:
            if (base["event_key"], target) not in made:
                made.add((base["event_key"], target))
                rows.append({**base, "webhook_id": webhook_id, "url": url, "target": target})
    claimed: list[ClaimedDelivery] = []
    if claim is not None and rows:
        claimed = _insert_claimed(conn, rows, hooks, claim)
    else:
        insert_many(conn, webhook_deliveries, rows)
    conn.execute(sa.delete(o).where(among(conn, o.c.id, [int(r.id) for r in outbox])))
    return len(outbox), claimed


def _insert_claimed(
    conn: Connection, rows: list[dict[str, Any]], hooks: Sequence[StoredWebhook], claim: Claim
) -> list[ClaimedDelivery]:
    """Insert the fanned-out ``rows``, those that may be claimed now claimed by ``claim``
    (:func:`fan_out`); returns the claimed ones in id order."""
    d = webhook_deliveries
    live = {h.id: h for h in hooks if h.status != rules.DISABLED}
    waiting = set(
        conn.execute(
            sa.select(d.c.message_uuid, d.c.target).where(
                d.c.status == PENDING,
                among(conn, d.c.message_uuid, sorted({r["message_uuid"] for r in rows})),
                among(conn, d.c.target, sorted({r["target"] for r in rows})),
            )
        ).tuples()
    )
    endpoint_secrets = _endpoint_secrets(
        conn, {r["account_id"] for r in rows if r["webhook_id"] is None}
    )
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        order = (row["message_uuid"], row["target"])
        hook = live.get(row["webhook_id"]) if row["webhook_id"] is not None else None
        url = row["url"] if row["webhook_id"] is None else None if hook is None else hook.url
        mine = url is not None and order not in waiting and claim.room.take(url)
        waiting.add(order)
        row["claimed_by"] = claim.worker_id if mine else None
        row["claimed_until"] = claim.until if mine else None
        if mine:
            chosen[(row["event_key"], row["target"])] = row
    inserted = insert_many(conn, webhook_deliveries, rows, returning=("id", "event_key", "target"))
    claimed: list[ClaimedDelivery] = []
    for delivery_id, event_key, target in (tuple(r) for r in inserted):
        made = chosen.get((event_key, target))
        if made is None:
            continue
        webhook_id = made["webhook_id"]
        hook = None if webhook_id is None else live[webhook_id]
        claimed.append(_claimed(delivery_id, made, event_key, 1, hook, endpoint_secrets))
    claimed.sort(key=lambda c: c.id)
    return claimed


def _message_facts(conn: Connection, uuids: set[str]) -> dict[str, rules.MessageFacts]:
    columns: list[Any] = [
        messages.c.uuid,
        messages.c.account_id,
        messages.c.subaccount_id,
        messages.c.sender,
        messages.c.recipient,
        messages.c.created_at,
        send_requests.c.content,
        messages.c.webhook_endpoint,
    ]
    query = (
        sa.select(*columns)
        .select_from(
            messages.outerjoin(
                relay_queue, relay_queue.c.message_uuid == messages.c.uuid
            ).outerjoin(send_requests, send_requests.c.id == relay_queue.c.request_id)
        )
        .where(among(conn, messages.c.uuid, sorted(uuids)))
    )
    found: dict[str, rules.MessageFacts] = {}
    for r in conn.execute(query):
        m = r._mapping
        found[m["uuid"]] = rules.MessageFacts(
            uuid=m["uuid"],
            account_id=int(m["account_id"]),
            subaccount_id=m["subaccount_id"],
            sender=m["sender"],
            recipient=m["recipient"],
            submitted_at=m["created_at"],
            content=dict(m["content"]) if m["content"] else None,
            webhook_endpoint=m["webhook_endpoint"],
        )
    return found


def _first_of_kind(conn: Connection, candidates: Sequence[Any]) -> set[int]:
    """The ids among ``candidates`` that are their message's first event of their type."""
    if not candidates:
        return set()
    rows = conn.execute(
        sa.select(sa.func.min(events.c.id))
        .where(
            among(conn, events.c.message_uuid, sorted({c.message_uuid for c in candidates})),
            among(conn, events.c.event_type, [int(t) for t in rules.UNIQUE_SWITCH]),
        )
        .group_by(events.c.message_uuid, events.c.event_type)
    )
    return {int(r[0]) for r in rows}


# --- claims and outcomes ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    webhook_id: int | None
    account_id: int
    url: str
    event_key: str
    body: str
    attempt: int
    """1 for the first attempt."""
    secret_encrypted: str | None


def _live_webhooks() -> sa.Select[Any]:
    return sa.select(webhooks.c.id).where(
        webhooks.c.enabled.is_(True), webhooks.c.status != rules.DISABLED
    )


def due(conn: Connection, *, now: dt.datetime, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` deliveries that may be claimed now, oldest due first, as (id, URL): pending,
    due, not claimed, of a live webhook (or a message endpoint), and the first pending one of
    their message to their target. Runs in a read transaction; :func:`take` claims."""
    d = webhook_deliveries
    earlier = d.alias("earlier")
    url = sa.func.coalesce(d.c.url, webhooks.c.url).label("target_url")
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        _ordered_walk(conn, True)
    rows = conn.execute(
        sa.select(d.c.id, url)
        .select_from(d.outerjoin(webhooks, webhooks.c.id == d.c.webhook_id))
        .where(
            d.c.status == PENDING,
            d.c.next_attempt_at <= now,
            sa.or_(d.c.claimed_until.is_(None), d.c.claimed_until <= now),
            sa.or_(d.c.webhook_id.is_(None), d.c.webhook_id.in_(_live_webhooks())),
            ~sa.exists().where(
                earlier.c.target == d.c.target,
                earlier.c.message_uuid == d.c.message_uuid,
                earlier.c.id < d.c.id,
                earlier.c.status == PENDING,
            ),
        )
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(limit)
    ).all()
    if postgres:
        _ordered_walk(conn, False)
    return [(int(r.id), str(r.target_url)) for r in rows]


def _ordered_walk(conn: Connection, on: bool) -> None:
    """Make PostgreSQL walk the due index in order and stop at the limit (``on``), or undo it.

    The queue churns faster than autovacuum analyzes it, so the planner often believes it is
    nearly empty and picks a bitmap scan of *every* due row, each checked against the order
    rule, then a sort: a pass's cost grows with the backlog, which grows while passes are slow
    (seen: 1 s per pass at a backlog of a few thousand). Without sorts and bitmap scans the plan
    is the index walk (0.4 ms instead of 30 ms at a 4,500 backlog, docs/benchmarks.md). Local
    to the transaction, and undone right after the query."""
    value = "off" if on else "on"
    conn.execute(
        sa.select(
            sa.func.set_config("enable_sort", value, True),
            sa.func.set_config("enable_bitmapscan", value, True),
        )
    )


def outbox_waiting(conn: Connection) -> bool:
    """Whether any outbox row waits for the webhooks (a cheap read before a write)."""
    query = sa.select(event_outbox.c.id).where(event_outbox.c.consumer == CONSUMER).limit(1)
    return conn.execute(query).first() is not None


def take(
    conn: Connection,
    chosen: Sequence[int],
    *,
    worker_id: str,
    now: dt.datetime,
    lease: dt.timedelta,
) -> list[ClaimedDelivery]:
    """Claim those of ``chosen`` (from :func:`due`) still unclaimed, until ``now + lease``, in
    one statement (``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``: another
    dispatcher's concurrent claim wins, never both). A delivery found due stays first of its
    message: deliveries are only ever added after it."""
    d = webhook_deliveries
    if not chosen:
        return []
    unclaimed = (
        sa.select(d.c.id)
        .where(
            among(conn, d.c.id, sorted(chosen)),
            d.c.status == PENDING,
            sa.or_(d.c.claimed_until.is_(None), d.c.claimed_until <= now),
        )
        .with_for_update(skip_locked=True)
    )
    rows = conn.execute(
        sa.update(d)
        .where(d.c.id.in_(unclaimed.scalar_subquery()))
        .values(claimed_by=worker_id, claimed_until=now + lease)
        .returning(
            d.c.id, d.c.webhook_id, d.c.account_id, d.c.url, d.c.event_key, d.c.body, d.c.attempts
        )
    ).all()
    if not rows:
        return []
    hooks = {
        int(r.id): r
        for r in conn.execute(
            sa.select(webhooks.c.id, webhooks.c.url, webhooks.c.secret_encrypted).where(
                among(
                    conn, webhooks.c.id, sorted({int(r.webhook_id) for r in rows if r.webhook_id})
                ),
            )
        )
    }
    endpoint_secrets = _endpoint_secrets(
        conn, {int(r.account_id) for r in rows if r.webhook_id is None}
    )
    claimed: list[ClaimedDelivery] = []
    for r in sorted(rows, key=lambda r: int(r.id)):
        hook = None if r.webhook_id is None else hooks.get(int(r.webhook_id))
        if r.webhook_id is not None and hook is None:
            continue  # the webhook was deleted meanwhile (its deliveries with it)
        claimed.append(
            _claimed(r.id, r._mapping, r.event_key, int(r.attempts) + 1, hook, endpoint_secrets)
        )
    return claimed


class _Addressed(Protocol):
    """What a claim needs of a webhook: a stored one, or its row read by :func:`take`."""

    @property
    def url(self) -> str: ...

    @property
    def secret_encrypted(self) -> str: ...


def _claimed(
    delivery_id: int,
    row: Mapping[Any, Any],
    event_key: str,
    attempt: int,
    hook: _Addressed | None,
    endpoint_secrets: Mapping[int, str],
) -> ClaimedDelivery:
    """A claimed delivery (``row``: its ``webhook_id``, ``account_id``, ``url`` and ``body``),
    addressed and signed as its webhook says now (``hook``), or, for a message's own endpoint
    (no webhook), to its own URL with the account's endpoint secret (:func:`_endpoint_secrets`).
    """
    webhook_id, account_id = row["webhook_id"], int(row["account_id"])
    return ClaimedDelivery(
        id=int(delivery_id),
        webhook_id=None if webhook_id is None else int(webhook_id),
        account_id=account_id,
        url=row["url"] if hook is None else hook.url,
        event_key=event_key,
        body=row["body"],
        attempt=attempt,
        secret_encrypted=(
            endpoint_secrets.get(account_id) if hook is None else hook.secret_encrypted
        ),
    )


def _endpoint_secrets(conn: Connection, account_ids: set[int]) -> dict[int, str]:
    """The secret a message's own ``webhookEndpoint`` is signed with: that of the account's
    oldest webhook (docs/webhooks.md)."""
    if not account_ids:
        return {}
    rows = conn.execute(
        sa.select(webhooks.c.account_id, webhooks.c.secret_encrypted)
        .where(among(conn, webhooks.c.account_id, sorted(account_ids)))
        .order_by(webhooks.c.id.desc())
    )
    return {int(r.account_id): r.secret_encrypted for r in rows}


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    delivery: ClaimedDelivery
    ok: bool
    status: int | None
    """The HTTP status, None for a network failure."""
    error: str
    next_attempt_at: dt.datetime | None
    """When to try again; None ends the delivery (done when ``ok``, else failed)."""


@dataclasses.dataclass(frozen=True, slots=True)
class HealthPolicy:
    degrade_after: int
    disable_after: int


def finish_many(
    conn: Connection,
    outcomes: Sequence[Outcome],
    *,
    worker_id: str,
    now: dt.datetime,
) -> list[Outcome]:
    """Apply outcomes whose claim this dispatcher still holds; returns them (for
    :func:`update_health`). The successes go in one statement; the failures (each with its own
    next attempt and error) row by row."""
    if not outcomes:
        return []
    d = webhook_deliveries
    mine = sa.and_(d.c.claimed_by == worker_id, d.c.status == PENDING)
    succeeded = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    held: set[int] = set()
    if succeeded:
        # the claim is held, so nobody else has attempted it since: attempts + 1 is this one
        held.update(
            conn.execute(
                sa.update(d)
                .where(among(conn, d.c.id, sorted(o.delivery.id for o in succeeded)), mine)
                .values(
                    status=DONE,
                    attempts=d.c.attempts + 1,
                    claimed_by=None,
                    claimed_until=None,
                    last_status=_statuses(d.c.id, succeeded),
                    last_error=None,
                    finished_at=now,
                )
                .returning(d.c.id)
            ).scalars()
        )
    if failed:
        held.update(
            conn.execute(
                sa.select(d.c.id)
                .where(among(conn, d.c.id, sorted(o.delivery.id for o in failed)), mine)
                .with_for_update()
            ).scalars()
        )
        kept_failed = [o for o in failed if o.delivery.id in held]
        if kept_failed:
            conn.execute(
                sa.update(d)
                .where(d.c.id == sa.bindparam("b_id"))
                .values(
                    status=sa.bindparam("b_status"),
                    attempts=sa.bindparam("b_attempts"),
                    next_attempt_at=sa.bindparam("b_next"),
                    claimed_by=None,
                    claimed_until=None,
                    last_status=sa.bindparam("b_http"),
                    last_error=sa.bindparam("b_error"),
                    finished_at=sa.bindparam("b_finished"),
                ),
                [
                    {
                        "b_id": o.delivery.id,
                        "b_status": PENDING if o.next_attempt_at else FAILED,
                        "b_attempts": o.delivery.attempt,
                        "b_next": o.next_attempt_at or now,
                        "b_http": o.status,
                        "b_error": o.error[:1000] or None,
                        "b_finished": None if o.next_attempt_at else now,
                    }
                    for o in kept_failed
                ],
            )
    return [o for o in outcomes if o.delivery.id in held]


def _statuses(key: Any, outcomes: Sequence[Outcome]) -> Any:
    """The HTTP status of each outcome as one SQL value (200, or a CASE for the others)."""
    others = [(key == o.delivery.id, o.status) for o in outcomes if o.status != 200]
    return sa.case(*others, else_=200) if others else 200


def update_health(
    conn: Connection, outcomes: Sequence[Outcome], *, now: dt.datetime, policy: HealthPolicy
) -> None:
    """Move the health (streak, status, counts) of the webhooks of ``outcomes`` (those that
    :func:`finish_many` kept). It locks the webhooks' rows: run it last in the transaction, so
    that concurrent dispatchers wait for each other only for the commit."""
    outcomes = [o for o in outcomes if o.delivery.webhook_id is not None]
    ids = sorted({o.delivery.webhook_id for o in outcomes if o.delivery.webhook_id is not None})
    if not ids:
        return
    current = {
        int(r.id): r
        for r in conn.execute(
            sa.select(
                webhooks.c.id,
                webhooks.c.status,
                webhooks.c.failure_streak,
                webhooks.c.disabled_at,
                webhooks.c.disabled_reason,
            )
            .where(among(conn, webhooks.c.id, ids))
            .order_by(webhooks.c.id)
            .with_for_update()
        )
    }
    for webhook_id in ids:
        row = current.get(webhook_id)
        if row is None:
            continue  # deleted meanwhile
        state = rules.Health(row.status, int(row.failure_streak), row.disabled_reason)
        disabled_at = row.disabled_at
        ok = failed = 0
        for o in outcomes:
            if o.delivery.webhook_id != webhook_id:
                continue
            if o.ok:
                ok += 1
                if state.status != rules.DISABLED:
                    state = rules.after_success()
            else:
                failed += 1
                if state.status != rules.DISABLED:
                    problem = f"HTTP {o.status}" if o.status is not None else o.error
                    state = rules.after_failure(
                        state.failure_streak,
                        degrade_after=policy.degrade_after,
                        disable_after=policy.disable_after,
                        problem=problem,
                    )
                    if state.status == rules.DISABLED:
                        disabled_at = now
        conn.execute(
            sa.update(webhooks)
            .where(webhooks.c.id == webhook_id)
            .values(
                status=state.status,
                failure_streak=state.failure_streak,
                disabled_at=disabled_at,
                disabled_reason=state.disabled_reason,
                delivered_count=webhooks.c.delivered_count + ok,
                failed_count=webhooks.c.failed_count + failed,
            )
        )


def release(conn: Connection, ids: Sequence[int], *, worker_id: str) -> None:
    """Hand back claimed deliveries this dispatcher did not attempt: due again at once."""
    if not ids:
        return
    d = webhook_deliveries
    conn.execute(
        sa.update(d)
        .where(among(conn, d.c.id, list(ids)), d.c.claimed_by == worker_id, d.c.status == PENDING)
        .values(claimed_by=None, claimed_until=None)
    )


def deliveries_of(conn: Connection, webhook_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(webhook_deliveries)
        .where(webhook_deliveries.c.webhook_id == webhook_id)
        .order_by(webhook_deliveries.c.id)
    )
    return [dict(r._mapping) for r in rows]
