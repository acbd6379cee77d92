"""Bounce processor storage: inbound messages that were not parseable bounces, and the
hard-bounce suppression hook.

Invariant: an inbound message the bounce server answered 250 to is either turned into events
(``store/events.py``) or kept whole in ``unparsed_bounces`` (and counted as
``bounce.unparsed``) in the same transaction; nothing accepted is silently lost. Operators read
the kept messages with :func:`list_unparsed`.

:func:`suppress_hard_bounce` is a
:data:`~sendpost_platform.processing.HardBounceHook`: the bounce processor calls it when a DSN's
hard bounce becomes the event of record, and agent processing can take it as ``on_hard_bounce``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.domain.suppression import SuppressionReason
from sendpost_platform.store import suppressions
from sendpost_platform.store.schema import events, unparsed_bounces

if TYPE_CHECKING:
    from sendpost_platform.processing import HardBounce


def keep_unparsed(
    conn: Connection,
    *,
    raw: bytes,
    envelope_from: str,
    envelope_to: Sequence[str],
    message_uuid: str | None,
    provider_id: int | None,
    now: dt.datetime,
) -> int:
    """Store an inbound message that is no recognisable bounce; returns its row ID."""
    return int(
        conn.execute(
            sa.insert(unparsed_bounces)
            .values(
                received_at=now,
                message_uuid=message_uuid,
                provider_id=provider_id,
                envelope_from=envelope_from[:320],
                envelope_to=list(envelope_to),
                size=len(raw),
                raw=raw,
            )
            .returning(unparsed_bounces.c.id)
        ).scalar_one()
    )


def list_unparsed(conn: Connection, *, limit: int = 100) -> list[dict[str, Any]]:
    """The kept messages, newest first."""
    rows = conn.execute(
        sa.select(unparsed_bounces).order_by(unparsed_bounces.c.id.desc()).limit(limit)
    )
    return [dict(r._mapping) for r in rows]


def unparsed_count(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(unparsed_bounces)).scalar_one())


def unparsed_bytes_since(conn: Connection, *, provider_id: int | None, since: dt.datetime) -> int:
    """Bytes of unparsed messages kept for ``provider_id`` (None: no provider) since ``since``."""
    column = unparsed_bounces.c.provider_id
    query = sa.select(sa.func.coalesce(sa.func.sum(unparsed_bounces.c.size), 0)).where(
        unparsed_bounces.c.received_at >= since,
        column.is_(None) if provider_id is None else column == provider_id,
    )
    return int(conn.execute(query).scalar_one())


def _smtp_error(conn: Connection, event_id: int) -> str | None:
    """The bounce event's reply as SendPost's ``smtpError`` shows it: code, status, text."""
    row = conn.execute(
        sa.select(events.c.smtp_code, events.c.enhanced_status, events.c.description).where(
            events.c.id == event_id
        )
    ).first()
    if row is None:
        return None
    parts = [str(p) for p in (row.smtp_code, row.enhanced_status, row.description) if p]
    return " ".join(parts)[:2000] or None


def suppress_hard_bounce(conn: Connection, bounce: HardBounce) -> None:
    """Suppress the hard-bounced recipient for the message's sub-account (first reason kept),
    with the receiving server's reply."""
    suppressions.add_suppression(
        conn,
        account_id=bounce.account_id,
        subaccount_id=bounce.subaccount_id,
        recipient=bounce.recipient,
        reason=SuppressionReason.hard_bounce.value,
        now=bounce.occurred_at,
        message_uuid=bounce.message_uuid,
        smtp_error=_smtp_error(conn, bounce.event_id),
    )
