"""The durable relay queue: send requests, queued messages, claims with leases, attempt log.

Life of a queue row (``relay_queue``, one per message)::

    pending ──claim──▶ pending + claimed_by/claimed_until ──finish──▶ done   (sent or dropped)
       ▲                                                     │
       └────────────── retry: next_attempt_at = now + delay ◀┘

- :func:`claim` takes due rows of one provider for one worker until ``claimed_until`` (a lease):
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, and the provider row is locked first so the rate
  accounting of concurrent workers is serialised. A worker that dies leaves its rows claimed until
  the lease expires; then any worker claims them again. Nothing is lost.
- Each claim takes a *send slot*: a ``relay_attempts`` row stamped ``started_at``. The number of
  slots taken in the last hour is what ``maxRatePerHour`` limits, so workers on several machines
  share one budget through the database.
- :func:`finish` applies an outcome only if the row is still claimed by the same worker (a worker
  whose lease expired cannot overwrite the newer claimant's result).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.store.schema import (
    custom_smtp_providers,
    messages,
    relay_attempts,
    relay_queue,
    send_requests,
)

PENDING = "pending"
DONE = "done"
RATE_WINDOW = dt.timedelta(hours=1)


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedMessage:
    message_uuid: str
    attempt: int
    """1 for the first attempt."""
    attempt_id: int
    request_id: int
    provider_id: int
    domain_id: int
    account_id: int
    subaccount_id: int
    recipient: str
    sender: str
    submitted_at: dt.datetime


def insert_send_request(
    conn: Connection,
    *,
    account_id: int,
    subaccount_id: int,
    content: dict[str, Any],
    now: dt.datetime,
) -> int:
    return int(
        conn.execute(
            sa.insert(send_requests)
            .values(
                account_id=account_id, subaccount_id=subaccount_id, content=content, created_at=now
            )
            .returning(send_requests.c.id)
        ).scalar_one()
    )


def enqueue(
    conn: Connection,
    *,
    message_uuid: str,
    request_id: int,
    provider_id: int,
    domain_id: int,
    now: dt.datetime,
) -> None:
    conn.execute(
        sa.insert(relay_queue).values(
            message_uuid=message_uuid,
            request_id=request_id,
            provider_id=provider_id,
            domain_id=domain_id,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            submitted_at=now,
            updated_at=now,
        )
    )


def _due(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        relay_queue.c.status == PENDING,
        relay_queue.c.next_attempt_at <= now,
        sa.or_(relay_queue.c.claimed_until.is_(None), relay_queue.c.claimed_until <= now),
    )


def due_provider_ids(conn: Connection, now: dt.datetime) -> list[int]:
    rows = conn.execute(sa.select(relay_queue.c.provider_id).where(_due(now)).distinct())
    return sorted(int(r.provider_id) for r in rows)


def slots_used(conn: Connection, provider_id: int, now: dt.datetime) -> int:
    """Send slots the provider used in the hour before ``now``."""
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                relay_attempts.c.provider_id == provider_id,
                relay_attempts.c.started_at > now - RATE_WINDOW,
            )
        ).scalar_one()
    )


def claim(
    conn: Connection,
    *,
    provider_id: int,
    worker_id: str,
    now: dt.datetime,
    lease: dt.timedelta,
    limit: int,
) -> list[ClaimedMessage]:
    """Claim up to ``limit`` due messages of one provider, within its hourly rate."""
    rate = conn.execute(
        sa.select(custom_smtp_providers.c.max_rate_per_hour)
        .where(custom_smtp_providers.c.id == provider_id)
        # FOR NO KEY UPDATE on PostgreSQL: claims still queue behind each other, but rows
        # referencing the provider (attempts, events) can be written meanwhile.
        .with_for_update(key_share=True)
    ).scalar_one_or_none()
    if rate is None:
        return []
    room = min(limit, int(rate) - slots_used(conn, provider_id, now))
    if room <= 0:
        return []
    picked = conn.execute(
        sa.select(relay_queue.c.message_uuid, relay_queue.c.attempts)
        .where(relay_queue.c.provider_id == provider_id, _due(now))
        .order_by(relay_queue.c.next_attempt_at, relay_queue.c.message_uuid)
        .limit(room)
        .with_for_update(skip_locked=True)
    ).all()
    if not picked:
        return []
    uuids = [r.message_uuid for r in picked]
    conn.execute(
        sa.update(relay_queue)
        .where(relay_queue.c.message_uuid.in_(uuids))
        .values(claimed_by=worker_id, claimed_until=now + lease, updated_at=now)
    )
    inserted = conn.execute(
        sa.insert(relay_attempts).returning(
            relay_attempts.c.id, relay_attempts.c.message_uuid, sort_by_parameter_order=True
        ),
        [
            {
                "provider_id": provider_id,
                "message_uuid": r.message_uuid,
                "attempt": r.attempts + 1,
                "started_at": now,
            }
            for r in picked
        ],
    )
    attempt_ids = {r.message_uuid: int(r.id) for r in inserted}
    rows = conn.execute(
        sa.select(
            relay_queue.c.message_uuid,
            relay_queue.c.attempts,
            relay_queue.c.request_id,
            relay_queue.c.provider_id,
            relay_queue.c.domain_id,
            relay_queue.c.submitted_at,
            messages.c.account_id,
            messages.c.subaccount_id,
            messages.c.recipient,
            messages.c.sender,
        )
        .join(messages, messages.c.uuid == relay_queue.c.message_uuid)
        .where(relay_queue.c.message_uuid.in_(uuids))
        .order_by(relay_queue.c.next_attempt_at, relay_queue.c.message_uuid)
    ).all()
    return [
        ClaimedMessage(
            message_uuid=r.message_uuid,
            attempt=r.attempts + 1,
            attempt_id=attempt_ids[r.message_uuid],
            request_id=r.request_id,
            provider_id=r.provider_id,
            domain_id=r.domain_id,
            account_id=r.account_id,
            subaccount_id=r.subaccount_id,
            recipient=r.recipient,
            sender=r.sender,
            submitted_at=r.submitted_at,
        )
        for r in rows
    ]


def request_contents(conn: Connection, request_ids: set[int]) -> dict[int, dict[str, Any]]:
    if not request_ids:
        return {}
    rows = conn.execute(
        sa.select(send_requests.c.id, send_requests.c.content).where(
            send_requests.c.id.in_(sorted(request_ids))
        )
    )
    return {int(r.id): dict(r.content) for r in rows}


def finish(
    conn: Connection,
    claimed: ClaimedMessage,
    *,
    worker_id: str,
    ok: bool,
    code: int | None,
    reply: str,
    next_attempt_at: dt.datetime | None,
    now: dt.datetime,
) -> bool:
    """Record one attempt's outcome: ``next_attempt_at`` None ends the message (sent or dropped),
    a time schedules a retry. False (and nothing written) if the claim was lost meanwhile."""
    values: dict[str, Any] = {
        "attempts": claimed.attempt,
        "claimed_by": None,
        "claimed_until": None,
        "last_code": code,
        "last_reply": reply,
        "updated_at": now,
    }
    if next_attempt_at is None:
        values["status"] = DONE
    else:
        values["next_attempt_at"] = next_attempt_at
    updated = conn.execute(
        sa.update(relay_queue)
        .where(
            relay_queue.c.message_uuid == claimed.message_uuid,
            relay_queue.c.claimed_by == worker_id,
            relay_queue.c.status == PENDING,
        )
        .values(**values)
    ).rowcount
    conn.execute(
        sa.update(relay_attempts)
        .where(relay_attempts.c.id == claimed.attempt_id)
        .values(finished_at=now, ok=ok, smtp_code=code, reply=reply)
    )
    return bool(updated)


def release(conn: Connection, unsent: Sequence[ClaimedMessage], *, worker_id: str) -> None:
    """Hand back claimed messages this worker did not try to send: they are due again at once,
    and their send slots are returned to the provider's hourly budget."""
    if not unsent:
        return
    conn.execute(
        sa.update(relay_queue)
        .where(
            relay_queue.c.message_uuid.in_([m.message_uuid for m in unsent]),
            relay_queue.c.claimed_by == worker_id,
            relay_queue.c.status == PENDING,
        )
        .values(claimed_by=None, claimed_until=None)
    )
    conn.execute(
        sa.delete(relay_attempts).where(relay_attempts.c.id.in_([m.attempt_id for m in unsent]))
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result: ``next_attempt_at`` None ends the message, a time retries it."""

    claimed: ClaimedMessage
    ok: bool
    code: int | None
    reply: str
    next_attempt_at: dt.datetime | None


# The statements of finish_many, built once: the relay commits a few outcomes
# at a time (one transaction per group of connections waiting), so building and cache-keying
# them on every commit would cost more than running them.
_HELD = (
    sa.select(relay_queue.c.message_uuid)
    .where(
        relay_queue.c.message_uuid.in_(sa.bindparam("b_uuids", expanding=True)),
        relay_queue.c.claimed_by == sa.bindparam("b_worker"),
        relay_queue.c.status == PENDING,
    )
    .with_for_update()
)
_FINISH_ATTEMPT = (
    sa.update(relay_attempts)
    .where(relay_attempts.c.id == sa.bindparam("b_id"))
    .values(
        finished_at=sa.bindparam("b_now"),
        ok=sa.bindparam("b_ok"),
        smtp_code=sa.bindparam("b_code"),
        reply=sa.bindparam("b_reply"),
    )
)
_FINISH_QUEUE = (
    sa.update(relay_queue)
    .where(relay_queue.c.message_uuid == sa.bindparam("b_uuid"))
    .values(
        status=sa.bindparam("b_status"),
        next_attempt_at=sa.bindparam("b_next"),
        attempts=sa.bindparam("b_attempts"),
        claimed_by=None,
        claimed_until=None,
        last_code=sa.bindparam("b_code"),
        last_reply=sa.bindparam("b_reply"),
        updated_at=sa.bindparam("b_now"),
    )
)
_END_MESSAGES = (
    sa.update(messages)
    .where(messages.c.uuid.in_(sa.bindparam("b_uuids", expanding=True)))
    .values(state=sa.bindparam("b_state"), updated_at=sa.bindparam("b_now"))
)


def finish_many(
    conn: Connection, outcomes: Sequence[Outcome], *, worker_id: str, now: dt.datetime
) -> list[Outcome]:
    """:func:`finish` for a batch, in a few statements; returns the outcomes applied (those
    whose claim this worker still held)."""
    if not outcomes:
        return []
    held = set(
        conn.execute(
            _HELD, {"b_uuids": [o.claimed.message_uuid for o in outcomes], "b_worker": worker_id}
        ).scalars()
    )
    kept = [o for o in outcomes if o.claimed.message_uuid in held]
    conn.execute(
        _FINISH_ATTEMPT,
        [
            {
                "b_id": o.claimed.attempt_id,
                "b_ok": o.ok,
                "b_code": o.code,
                "b_reply": o.reply,
                "b_now": now,
            }
            for o in outcomes
        ],
    )
    if not kept:
        return []
    conn.execute(
        _FINISH_QUEUE,
        [
            {
                "b_uuid": o.claimed.message_uuid,
                "b_status": DONE if o.next_attempt_at is None else PENDING,
                "b_next": o.next_attempt_at or now,
                "b_attempts": o.claimed.attempt,
                "b_code": o.code,
                "b_reply": o.reply,
                "b_now": now,
            }
            for o in kept
        ],
    )
    for state in ("sent", "dropped"):
        ended = [
            o.claimed.message_uuid
            for o in kept
            if o.next_attempt_at is None and o.ok == (state == "sent")
        ]
        if ended:
            conn.execute(_END_MESSAGES, {"b_uuids": ended, "b_state": state, "b_now": now})
    return kept


def queue_entry(conn: Connection, message_uuid: str) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(relay_queue).where(relay_queue.c.message_uuid == message_uuid)
    ).first()
    return None if row is None else dict(row._mapping)


def attempts_of(conn: Connection, message_uuid: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(relay_attempts)
        .where(relay_attempts.c.message_uuid == message_uuid)
        .order_by(relay_attempts.c.id)
    )
    return [dict(r._mapping) for r in rows]
