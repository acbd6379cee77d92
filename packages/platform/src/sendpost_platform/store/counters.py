"""Named counters per provider (0 = no provider): discarded and deferred events, and the like.

Names in use: ``ingest.discarded_out_of_scope`` (event for a message not relayed through the
key's provider), ``ingest.deferred``, ``ingest.delivered``, ``ingest.bounced``,
``ingest.duplicates``, ``ingest.dead_lettered`` (one event set aside, see
``dead_letters.py``), ``ingest.batches_failed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
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
    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = module.insert(counters).values(rows)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["provider_id", "name"],
            set_={"value": counters.c.value + statement.excluded.value},
        )
    )


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
