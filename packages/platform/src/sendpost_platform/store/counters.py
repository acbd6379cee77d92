"""Named counters per provider (0 = no provider): discarded and deferred events, and the like.

Names in use: ``ingest.discarded_out_of_scope`` (event for a message not relayed through the
key's provider), ``ingest.deferred``, ``ingest.delivered``, ``ingest.bounced``,
``ingest.duplicates``, ``ingest.dead_lettered`` (one event set aside, see
``dead_letters.py``), ``ingest.batches_failed``.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from sendpost_platform.store.dialect import upsert_add
from sendpost_platform.store.schema import counters


def add(conn: Connection, provider_id: int, name: str, amount: int = 1) -> None:
    if amount:
        upsert_add(conn, counters, {"provider_id": provider_id, "name": name}, "value", amount)


def add_many(conn: Connection, provider_id: int, amounts: Mapping[str, int]) -> None:
    add_keyed(conn, {(provider_id, name): amount for name, amount in amounts.items()})


def add_keyed(conn: Connection, amounts: Mapping[tuple[int, str], int]) -> None:
    """Add to several ``(provider_id, name)`` counters in one statement. Rows are written in
    key order, so concurrent writers lock them in the same order (no deadlock), and a group's
    transaction holds them only from this statement to its commit."""
    rows = [
        {"provider_id": key[0], "name": key[1], "value": amount}
        for key, amount in sorted(amounts.items())
        if amount
    ]
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        columns = {name: [row[name] for row in rows] for name in ("provider_id", "name", "value")}
        conn.execute(_ADD_PG, columns)
        return
    statement = sqlite.insert(counters).values(rows)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["provider_id", "name"],
            set_={"value": counters.c.value + statement.excluded.value},
        )
    )


_ADD_PG = sa.text(
    """
    INSERT INTO counters (provider_id, name, value)
    SELECT u.provider_id, u.name, u.value
    FROM unnest(CAST(:provider_id AS bigint[]), CAST(:name AS text[]), CAST(:value AS bigint[]))
        WITH ORDINALITY AS u(provider_id, name, value, n)
    ORDER BY n
    ON CONFLICT (provider_id, name) DO UPDATE SET value = counters.value + EXCLUDED.value
    """
)
""":func:`add_keyed` on PostgreSQL: one statement text whatever the number of counters (the
multi-row ``VALUES`` is compiled anew for each number), the rows in the order given."""


def get(conn: Connection, provider_id: int, name: str) -> int:
    value = conn.execute(
        sa.select(counters.c.value).where(
            counters.c.provider_id == provider_id, counters.c.name == name
        )
    ).scalar()
    return int(value or 0)


def for_provider(conn: Connection, provider_id: int) -> dict[str, int]:
    rows = conn.execute(
        sa.select(counters.c.name, counters.c.value).where(counters.c.provider_id == provider_id)
    )
    return {r.name: int(r.value) for r in rows}
