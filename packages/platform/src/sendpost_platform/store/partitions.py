"""Time partitions of ``events`` and ``ingest_batches`` (PostgreSQL) and retention (both).

On PostgreSQL both tables are declaratively range-partitioned by day (migration
``0013_partitions``): ``events`` by ``partition_at``, ``ingest_batches`` by ``received_at``. Each
has a ``<table>_default`` partition that catches rows outside every daily one (so an insert never
fails because the worker was down), and daily ones named ``<table>_pYYYYMMDD``.

``events.partition_at`` (see ``docs/scaling.md``, "Partitioning"):

- for an event with a dedup slot (delivered, hard/soft bounce): the creation time of its
  message. All such events of a message land in one partition, so the unique index
  ``(message_uuid, recipient_key, dedup_slot, partition_at)`` rejects exactly what the former
  ``(message_uuid, recipient_key, dedup_slot)`` rejected: the database still enforces dedup
  across the whole partitioned table;
- for an event that may repeat (opens, clicks, ...; no uniqueness to keep): its ``occurred_at``.

Time-window queries on ``occurred_at`` also bound ``partition_at`` (:func:`window_bounds`) so
PostgreSQL prunes partitions: ``occurred_at - EVENT_LAG_BOUND <= partition_at <= occurred_at +
CLOCK_SKEW`` holds for every event whose MTA reports it within ``EVENT_LAG_BOUND`` of the message's
creation (Postfix gives up on a message after ``maximal_queue_lifetime``, 5 days by default).

The worker (:class:`PartitionJob`) creates the daily partitions ``PARTITIONS_AHEAD`` days ahead
and applies retention: on PostgreSQL it drops whole partitions, on SQLite it deletes rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.errors import StoreError
from sendpost_platform.store.dialect import UTCDateTime
from sendpost_platform.store.schema import events, ingest_batches

if TYPE_CHECKING:
    from sendpost_platform.clock import Clock
    from sendpost_platform.store import Store

log = logging.getLogger("sendpost_platform.partitions")

EVENT_LAG_BOUND = dt.timedelta(days=14)
"""How long after its message's creation an event with a dedup slot may occur and still be
found by time-window queries: Postfix's ``maximal_queue_lifetime`` (default 5 d) plus a late
asynchronous bounce from the receiving side (their queue lifetime, typically 5 d as well)."""
CLOCK_SKEW = dt.timedelta(days=1)
"""How far an MTA's clock (which stamps ``occurred_at``) may be behind the platform's."""
UNKNOWN_MESSAGE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
"""``partition_at`` of a slotted event whose message is not in ``messages`` (no producer records
one; still one fixed value per message, so dedup holds). It lands in the default partition, which
time-window queries always include, and retention removes it by ``occurred_at``."""
PARTITIONS_AHEAD = 3
"""Daily partitions the worker keeps created beyond today."""

# table -> the column it is partitioned by
PARTITIONED = {"events": "partition_at", "ingest_batches": "received_at"}
_NAME = re.compile(r"^(events|ingest_batches)_p(\d{8})$")
_LOCK = 0x53504F5354  # pg_advisory_xact_lock key: one partition maintainer at a time


def partition_at(
    dedup_slot: str | None, occurred_at: dt.datetime, created: dt.datetime | None
) -> dt.datetime:
    """``partition_at`` of an event to insert into ``events``: for an event with a dedup slot
    its message's creation time (``created``; :data:`UNKNOWN_MESSAGE` for a message not
    there), for the others its ``occurred_at``."""
    if dedup_slot is None:
        return occurred_at
    return created or UNKNOWN_MESSAGE


def window_bounds(
    since: dt.datetime | None, until: dt.datetime | None
) -> list[sa.ColumnElement[bool]]:
    """The condition on ``events.partition_at`` implied by ``since <= occurred_at < until``
    (events of unknown messages, all at ``UNKNOWN_MESSAGE``, are always included)."""
    where = []
    if since is not None:
        where.append(events.c.partition_at >= since - EVENT_LAG_BOUND)
    if until is not None:
        where.append(events.c.partition_at < until + CLOCK_SKEW)
    if not where:
        return []
    return [sa.or_(sa.and_(*where), events.c.partition_at == UNKNOWN_MESSAGE)]


# --- PostgreSQL: creating and dropping daily partitions ----------------------------------------


def _day(at: dt.datetime) -> dt.date:
    return at.astimezone(dt.UTC).date()


def _start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def daily_partitions(conn: Connection, table: str) -> dict[dt.date, str]:
    """The daily partitions of ``table`` that exist, by day (PostgreSQL)."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = CAST(:table AS regclass)"
        ),
        {"table": table},
    )
    found = {}
    for (name,) in rows:
        match = _NAME.match(name)
        if match and match.group(1) == table:
            found[dt.datetime.strptime(match.group(2), "%Y%m%d").date()] = name
    return found


def create_partition(conn: Connection, table: str, day: dt.date) -> str:
    """Create ``table``'s partition for ``day``, moving any rows of that day the default
    partition caught into it (PostgreSQL refuses to attach over them). Returns its name."""
    column = PARTITIONED[table]
    name = f"{table}_p{day:%Y%m%d}"
    low, high = _start(day), _start(day + dt.timedelta(days=1))
    conn.exec_driver_sql(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)")
    conn.execute(
        sa.text(
            f"WITH moved AS (DELETE FROM {table}_default WHERE {column} >= :low"  # noqa: S608
            f" AND {column} < :high RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        ),
        {"low": low, "high": high},
    )
    conn.exec_driver_sql(
        f"ALTER TABLE {table} ATTACH PARTITION {name}"
        f" FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"
    )
    return name


LOCK_TIMEOUT = "2s"
"""How long partition DDL waits for a table lock before giving up until the next run: dropping
a partition needs an exclusive lock on the parent table, and waiting behind a long query would
queue every insert and read behind the DDL."""


def _maintenance(conn: Connection) -> None:
    """One maintainer at a time (transaction-scoped advisory lock); DDL gives up on busy tables."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")


def ensure_partitions(conn: Connection, today: dt.date, *, ahead: int = PARTITIONS_AHEAD) -> int:
    """Create the missing daily partitions from ``today`` to ``ahead`` days after it, for both
    tables (PostgreSQL; a no-op on SQLite). Returns how many were created."""
    if conn.dialect.name != "postgresql":
        return 0
    _maintenance(conn)
    created = 0
    for table in PARTITIONED:
        existing = daily_partitions(conn, table)
        for offset in range(ahead + 1):
            day = today + dt.timedelta(days=offset)
            if day not in existing:
                create_partition(conn, table, day)
                created += 1
    return created


# --- retention --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Retention:
    events: dt.timedelta
    """Events are kept this long after their ``partition_at``."""
    batches: dt.timedelta
    """Raw ingested batches are kept this long after they were processed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Dropped:
    partitions: list[str]
    """Whole partitions dropped (PostgreSQL)."""
    rows: int
    """Rows deleted (SQLite; on PostgreSQL those the default partitions held)."""


def apply_retention(conn: Connection, now: dt.datetime, retention: Retention) -> Dropped:
    """Remove events and processed batches past their retention.

    PostgreSQL drops a daily partition of ``events`` once its whole day is older than the
    retention, and one of ``ingest_batches`` once its day is older than the batch retention and
    every batch in it was processed more than that long ago (a backlog is never dropped); rows
    the default partitions caught are deleted. SQLite deletes the same rows."""
    event_cutoff = now - retention.events
    batch_cutoff = now - retention.batches
    old_batches = sa.and_(
        ingest_batches.c.processed_at.is_not(None), ingest_batches.c.processed_at < batch_cutoff
    )
    expired = sa.or_(
        sa.and_(events.c.partition_at < event_cutoff, events.c.partition_at != UNKNOWN_MESSAGE),
        sa.and_(events.c.partition_at == UNKNOWN_MESSAGE, events.c.occurred_at < event_cutoff),
    )
    if conn.dialect.name != "postgresql":
        rows = conn.execute(sa.delete(events).where(expired)).rowcount
        rows += conn.execute(sa.delete(ingest_batches).where(old_batches)).rowcount
        return Dropped([], rows)
    _maintenance(conn)
    dropped = []
    for day, name in sorted(daily_partitions(conn, "events").items()):
        if _start(day + dt.timedelta(days=1)) <= event_cutoff:
            conn.exec_driver_sql(f"DROP TABLE {name}")
            dropped.append(name)
    for day, name in sorted(daily_partitions(conn, "ingest_batches").items()):
        if _start(day + dt.timedelta(days=1)) > batch_cutoff:
            continue
        keep = conn.exec_driver_sql(
            f"SELECT 1 FROM {name} WHERE processed_at IS NULL"  # noqa: S608 (partition names)
            " OR processed_at >= %(cutoff)s LIMIT 1",
            {"cutoff": batch_cutoff},
        ).first()
        if keep is None:
            conn.exec_driver_sql(f"DROP TABLE {name}")
            dropped.append(name)
    rows = conn.execute(
        sa.text(
            "DELETE FROM events_default WHERE (partition_at < :cutoff AND partition_at <> :unknown)"
            " OR (partition_at = :unknown AND occurred_at < :cutoff)"
        ).bindparams(
            sa.bindparam("cutoff", event_cutoff, type_=UTCDateTime()),
            sa.bindparam("unknown", UNKNOWN_MESSAGE, type_=UTCDateTime()),
        )
    ).rowcount
    rows += conn.exec_driver_sql(
        "DELETE FROM ingest_batches_default WHERE processed_at < %(cutoff)s",
        {"cutoff": batch_cutoff},
    ).rowcount
    return Dropped(dropped, rows)


class PartitionJob:
    """Worker job: partitions ahead and retention, at most once per ``interval`` seconds."""

    name = "partitions"

    def __init__(
        self, store: Store, clock: Clock, retention: Retention, *, interval: float = 3600.0
    ) -> None:
        self.store = store
        self.clock = clock
        self.retention = retention
        self.interval = interval
        self._last: dt.datetime | None = None

    def run(self) -> int:
        """Create partitions ahead and apply retention now; returns partitions created."""
        now = self.clock.now()
        created, dropped = 0, Dropped([], 0)
        try:
            with self.store.write() as conn:
                created = ensure_partitions(conn, _day(now))
        except StoreError as exc:  # lock_timeout: tables busy, the next run retries
            log.warning("partition maintenance postponed: %s", exc)
        try:
            with self.store.write() as conn:
                dropped = apply_retention(conn, now, self.retention)
        except StoreError as exc:
            log.warning("partition maintenance postponed: %s", exc)
        if created or dropped.partitions or dropped.rows:
            log.info(
                "partitions: %d created, dropped %s, %d rows deleted",
                created,
                ", ".join(dropped.partitions) or "none",
                dropped.rows,
            )
        return created

    async def run_once(self) -> int:
        """Does the work when due; reports 0 work (it is maintenance: a pass that only did this
        still counts as idle, so ``drain`` stops)."""
        now = self.clock.now()
        if self._last is not None and (now - self._last).total_seconds() < self.interval:
            return 0
        self._last = now
        await asyncio.to_thread(self.run)
        return 0
