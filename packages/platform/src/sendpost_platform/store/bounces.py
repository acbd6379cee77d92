"""Bounce processor storage: inbound messages that were not parseable bounces.

Invariant: an inbound message the bounce server answered 250 to is either turned into events
(``store/events.py``) or kept whole in ``unparsed_bounces`` (and counted as
``bounce.unparsed``) in the same transaction; nothing accepted is silently lost. Operators read
the kept messages with :func:`list_unparsed`.

The hard-bounce suppression is the event recorder's (``recorder.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.store.schema import unparsed_bounces


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
