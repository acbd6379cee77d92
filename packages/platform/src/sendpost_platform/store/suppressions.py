"""Suppressed recipients per sub-account (the rules: ``domain/suppression.py``).

Writers: the event recorder (``recorder.py``: unsubscribes and hard bounces, in set form through
:func:`add_suppressions`) and the dashboard (manual, :func:`add_suppression`); the send API
checks :func:`suppressed_among`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.domain.suppression import normalize_address
from sendpost_platform.store.dialect import insert_ignore, insert_many
from sendpost_platform.store.schema import suppressions


def add_suppression(
    conn: Connection,
    *,
    account_id: int,
    subaccount_id: int,
    recipient: str,
    reason: str,
    now: dt.datetime,
    message_uuid: str | None = None,
    smtp_error: str | None = None,
) -> bool:
    """Suppress a recipient; False when it already was (the first reason is kept)."""
    new_id = insert_ignore(
        conn,
        suppressions,
        {
            "account_id": account_id,
            "subaccount_id": subaccount_id,
            "recipient_key": normalize_address(recipient),
            "reason": reason,
            "message_uuid": message_uuid,
            "smtp_error": smtp_error,
            "created_at": now,
        },
        conflict=("subaccount_id", "recipient_key"),
    )
    return new_id is not None


@dataclasses.dataclass(frozen=True, slots=True)
class NewSuppression:
    account_id: int
    subaccount_id: int
    recipient: str
    reason: str
    created_at: dt.datetime
    message_uuid: str | None = None
    smtp_error: str | None = None
    """For a hard bounce, the receiving server's reply as SendPost's ``smtpError`` shows it."""


def add_suppressions(conn: Connection, rows: Sequence[NewSuppression]) -> set[tuple[int, str]]:
    """Suppress several recipients in one statement (the first reason of each is kept); returns
    the ``(subaccount_id, normalised address)`` pairs that were not suppressed before."""
    unique: dict[tuple[int, str], NewSuppression] = {}
    for row in rows:
        unique.setdefault((row.subaccount_id, normalize_address(row.recipient)), row)
    if not unique:
        return set()
    inserted = insert_many(
        conn,
        suppressions,
        [
            {
                "account_id": row.account_id,
                "subaccount_id": key[0],
                "recipient_key": key[1],
                "reason": row.reason,
                "message_uuid": row.message_uuid,
                "smtp_error": row.smtp_error,
                "created_at": row.created_at,
            }
            for key, row in sorted(unique.items())
        ],
        conflict=("subaccount_id", "recipient_key"),
        returning=("subaccount_id", "recipient_key"),
    )
    return {(int(r.subaccount_id), r.recipient_key) for r in inserted}


def suppressed_among(conn: Connection, subaccount_id: int, recipients: Iterable[str]) -> set[str]:
    """The normalised addresses among ``recipients`` that the sub-account has suppressed."""
    keys = sorted({normalize_address(r) for r in recipients})
    if not keys:
        return set()
    rows = conn.execute(
        sa.select(suppressions.c.recipient_key).where(
            suppressions.c.subaccount_id == subaccount_id,
            suppressions.c.recipient_key.in_(keys),
        )
    )
    return {r.recipient_key for r in rows}


def list_suppressions(conn: Connection, *, subaccount_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(suppressions)
        .where(suppressions.c.subaccount_id == subaccount_id)
        .order_by(suppressions.c.created_at)
    )
    return [dict(r._mapping) for r in rows]


def remove_suppression(conn: Connection, *, subaccount_id: int, recipient: str) -> bool:
    """Lift a suppression (the recipient may be sent to again); False when there was none."""
    result = conn.execute(
        sa.delete(suppressions).where(
            suppressions.c.subaccount_id == subaccount_id,
            suppressions.c.recipient_key == normalize_address(recipient),
        )
    )
    return bool(result.rowcount)


def find_suppressions(
    conn: Connection,
    *,
    subaccount_id: int,
    since: dt.datetime,
    until: dt.datetime,
    limit: int,
    offset: int = 0,
    search: str | None = None,
    reasons: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Suppressions added in ``[since, until)``, oldest first (``search``: address contains)."""
    c = suppressions.c
    query = sa.select(suppressions).where(
        c.subaccount_id == subaccount_id, c.created_at >= since, c.created_at < until
    )
    if search:
        query = query.where(c.recipient_key.contains(normalize_address(search), autoescape=True))
    if reasons is not None:
        query = query.where(c.reason.in_(list(reasons)))
    rows = conn.execute(query.order_by(c.created_at, c.id).offset(offset).limit(limit))
    return [dict(r._mapping) for r in rows]


def suppressions_of(
    conn: Connection, subaccount_id: int, recipients: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The sub-account's suppression rows for ``recipients``, by normalised address."""
    keys = sorted({normalize_address(r) for r in recipients})
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), 500):
        rows = conn.execute(
            sa.select(suppressions).where(
                suppressions.c.subaccount_id == subaccount_id,
                suppressions.c.recipient_key.in_(keys[start : start + 500]),
            )
        )
        found.update({r.recipient_key: dict(r._mapping) for r in rows})
    return found
