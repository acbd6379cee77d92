"""Idempotency keys of the send API: the answer given to a (sub-account, key), kept a day.

A client that did not get an answer (a timeout, a dropped connection) sends the same request
again with the same ``Idempotency-Key`` header and gets the first answer back instead of a second
send. The row is written in the send's own transaction, so either both the messages and the
remembered answer exist, or neither; two concurrent requests with one key cannot both commit (the
unique constraint), and the loser sends nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.store.schema import send_idempotency as table

KEEP_FOR = dt.timedelta(hours=24)


@dataclasses.dataclass(frozen=True, slots=True)
class Remembered:
    request_digest: str
    response: Any


def find(conn: Connection, subaccount_id: int, key: str, now: dt.datetime) -> Remembered | None:
    """The answer remembered for this key, unless it is older than :data:`KEEP_FOR`."""
    row = conn.execute(
        sa.select(table.c.request_digest, table.c.response).where(
            table.c.subaccount_id == subaccount_id,
            table.c.key == key,
            table.c.created_at > now - KEEP_FOR,
        )
    ).first()
    return None if row is None else Remembered(row.request_digest, row.response)


def remember(
    conn: Connection,
    subaccount_id: int,
    key: str,
    request_digest: str,
    response: Any,
    now: dt.datetime,
) -> None:
    """Keep the answer (raises ``IntegrityError`` when another request took the key first);
    forgets this sub-account's keys past :data:`KEEP_FOR`, expired ones included."""
    conn.execute(
        sa.delete(table).where(
            table.c.subaccount_id == subaccount_id, table.c.created_at <= now - KEEP_FOR
        )
    )
    conn.execute(
        sa.insert(table).values(
            subaccount_id=subaccount_id,
            key=key,
            request_digest=request_digest,
            response=response,
            created_at=now,
        )
    )
