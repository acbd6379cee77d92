"""Ingested batches: stored raw on the hot path, claimed and processed by the worker.

Invariants:

- A batch row is inserted and committed (one transaction for a group of requests, see
  ``api/ingest.py``) before the HTTP 200 is sent: an acknowledged batch survives a crash.
- A batch is processed inside the transaction that marks it processed: processing either
  commits its events *and* ``processed_at`` together, or neither. A crash mid-way leaves the
  batch unprocessed, to be claimed again; the unique dedup index makes any replay harmless.
- On PostgreSQL, :func:`claim` takes the rows ``FOR UPDATE SKIP LOCKED``, so concurrent workers
  take disjoint batches and never wait for each other.
- Claims are fair across providers (each provider is one agent of one tenant): a claim of up to
  ``limit`` batches takes the providers with pending batches in rotation, starting after the
  last one the caller served, up to ``limit`` of them, and gives each an equal share of the
  claim (its oldest batches). A provider's flood therefore fills only its own share: another
  provider's batch is claimed by the next claim of any worker as long as at most ``limit``
  providers have batches pending, and within ``ceil(providers / limit)`` claims otherwise (the
  bound in ``docs/events.md``, pinned by ``tests/platform/core/test_fairness.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.store.schema import custom_smtp_providers as providers
from sendpost_platform.store.schema import ingest_batches as batches
from sendpost_platform.store.schema import provider_ingest_keys as ingest_keys


@dataclasses.dataclass(frozen=True, slots=True)
class IncomingBatch:
    provider_id: int
    body: bytes
    event_count: int


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    id: int
    provider_id: int
    received_at: dt.datetime
    body: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class KeyGrant:
    """What an ingestion key hash grants: its provider, and when the key stops working (None:
    the provider's current key)."""

    provider_id: int
    expires_at: dt.datetime | None


def key_grant(conn: Connection, key_hash: str) -> KeyGrant | None:
    """The grant of an ingestion key of a provider that is not deleted (expiry not checked)."""
    row = conn.execute(
        sa.select(ingest_keys.c.provider_id, ingest_keys.c.expires_at)
        .join(providers, providers.c.id == ingest_keys.c.provider_id)
        .where(ingest_keys.c.key_hash == key_hash, providers.c.deleted_at.is_(None))
    ).first()
    return None if row is None else KeyGrant(int(row.provider_id), row.expires_at)


def _use_lz4(conn: Connection) -> None:
    """On PostgreSQL, compress this transaction's new bodies with LZ4 rather than the default
    pglz when the server has it: several times cheaper for the database on the hot path, and
    transparent to readers. Asked once per database connection (``conn.info`` persists)."""
    if conn.dialect.name != "postgresql":
        return
    available = conn.info.get(_LZ4)
    if available is None:
        available = conn.info[_LZ4] = bool(
            conn.exec_driver_sql(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            ).scalar()
        )
    if available:
        conn.exec_driver_sql("SET LOCAL default_toast_compression = 'lz4'")


_LZ4 = "sendpost.lz4"


def insert_batches(
    conn: Connection, items: Sequence[IncomingBatch], *, now: dt.datetime
) -> list[int]:
    """Insert raw batches (one statement); returns their IDs in order."""
    if not items:
        return []
    _use_lz4(conn)
    rows = [
        {
            "provider_id": i.provider_id,
            "received_at": now,
            "event_count": i.event_count,
            "body": i.body,
        }
        for i in items
    ]
    if len(rows) == 1:
        return [conn.execute(sa.insert(batches).returning(batches.c.id), rows).scalar_one()]
    result = conn.execute(
        sa.insert(batches).returning(batches.c.id, sort_by_parameter_order=True), rows
    )
    return [int(r[0]) for r in result]


def pending_providers(conn: Connection, *, after: int, limit: int) -> list[int]:
    """Up to ``limit`` providers with pending batches, in ID order starting after ``after`` and
    wrapping around. A skip scan of ``ix_ingest_batches_pending_provider`` (one index probe per
    provider), so its cost does not grow with the backlog."""
    found = _providers_from(conn, after, limit)
    if len(found) < limit:
        found += [p for p in _providers_from(conn, -1, limit - len(found)) if p not in found]
    return found


_PROVIDERS_FROM = sa.text(
    """
    WITH RECURSIVE p(provider_id) AS (
        SELECT (SELECT provider_id FROM ingest_batches
                WHERE processed_at IS NULL AND provider_id > :after
                ORDER BY provider_id LIMIT 1)
        UNION ALL
        SELECT (SELECT b.provider_id FROM ingest_batches b
                WHERE b.processed_at IS NULL AND b.provider_id > p.provider_id
                ORDER BY b.provider_id LIMIT 1)
        FROM p WHERE p.provider_id IS NOT NULL
    )
    SELECT provider_id FROM p WHERE provider_id IS NOT NULL LIMIT :limit
    """
)


def _providers_from(conn: Connection, after: int, limit: int) -> list[int]:
    rows = conn.execute(_PROVIDERS_FROM, {"after": after, "limit": limit})
    return [int(r[0]) for r in rows]


_CLAIM_PG = sa.text(
    """
    SELECT b.id, b.provider_id, b.received_at, b.body
    FROM unnest(CAST(:providers AS bigint[])) AS p(provider_id)
    CROSS JOIN LATERAL (
        SELECT id, provider_id, received_at, body FROM ingest_batches
        WHERE provider_id = p.provider_id AND processed_at IS NULL
        ORDER BY id LIMIT :share
        FOR UPDATE SKIP LOCKED
    ) AS b
    """
).columns(
    sa.column("id", sa.BigInteger),
    sa.column("provider_id", sa.BigInteger),
    batches.c.received_at,
    sa.column("body", sa.LargeBinary),
)


def claim(conn: Connection, *, limit: int, after_provider: int = -1) -> list[Batch]:
    """Lock up to ``limit`` unprocessed batches, shared fairly among the providers with pending
    batches (rotation starting after ``after_provider``, see the module docstring), skipping
    ones other workers hold; in ID order."""
    providers = pending_providers(conn, after=after_provider, limit=limit)
    if not providers:
        return []
    share = max(1, limit // len(providers))
    if conn.dialect.name == "postgresql":
        rows = list(conn.execute(_CLAIM_PG, {"providers": providers, "share": share}))
    else:  # one writer at a time: no rows can be held by anyone else
        rows = []
        for provider_id in providers:
            rows += conn.execute(
                sa.select(
                    batches.c.id, batches.c.provider_id, batches.c.received_at, batches.c.body
                )
                .where(batches.c.provider_id == provider_id, batches.c.processed_at.is_(None))
                .order_by(batches.c.id)
                .limit(share)
            ).all()
    rows.sort(key=lambda r: int(r.id))
    return [Batch(int(r.id), int(r.provider_id), r.received_at, bytes(r.body)) for r in rows]


def mark_processed(
    conn: Connection, ids: Sequence[int], *, now: dt.datetime, error: str | None = None
) -> None:
    if ids:
        conn.execute(
            sa.update(batches)
            .where(batches.c.id.in_(list(ids)))
            .values(processed_at=now, error=error)
        )


def pending_count(conn: Connection) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count()).select_from(batches).where(batches.c.processed_at.is_(None))
        ).scalar_one()
    )
