"""Time partitions (PostgreSQL) and retention (both): created ahead by the worker, dedup still
enforced by the database, whole partitions dropped, time-window queries pruned (EXPLAIN)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sendpost_platform.config import Settings
from sendpost_platform.recorder import RECORDER
from sendpost_platform.store import Store, ingest, reports
from sendpost_platform.store import dashboard_queries as dq
from sendpost_platform.store import events as event_store
from sendpost_platform.store import partitions as parts
from sendpost_platform.store.schema import events, ingest_batches
from sendpost_platform.worker import Worker, build_jobs
from sendpost_wire import EventType

from tests.platform.conftest import Seed

on_postgres = pytest.mark.parametrize(
    "store", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def record(seed: Seed, message_uuid: str, event_type: EventType, at: dt.datetime) -> int:
    """Record one agent event of the seed's provider through the recorder; its event ID."""
    with seed.store.write() as conn:
        [recorded] = RECORDER.record(
            conn,
            [
                event_store.NewEvent(
                    message_uuid=message_uuid,
                    account_id=seed.account.account_id,
                    subaccount_id=seed.account.subaccount_id,
                    provider_id=seed.provider.id,
                    event_type=int(event_type),
                    recipient="user@example.com",
                    occurred_at=at,
                    received_at=at,
                    source="agent",
                )
            ],
        )
    assert recorded.event_id is not None
    return recorded.event_id


def home(store: Store, event_id: int) -> str:
    """The partition holding an event (PostgreSQL)."""
    with store.read() as conn:
        return str(
            conn.execute(
                sa.text("SELECT tableoid::regclass::text FROM events WHERE id = :id"),
                {"id": event_id},
            ).scalar_one()
        )


@on_postgres
async def test_the_worker_creates_partitions_ahead_and_moves_rows_the_default_caught(
    seed: Seed, settings: Settings
) -> None:
    """Before the worker runs, a day without a partition sends rows to the default partition;
    one worker pass creates that day's and the next PARTITIONS_AHEAD days' partitions of both
    tables and moves the row (same ID) into its day; a repeat is still a duplicate."""
    seed.clock.advance(days=300)
    day = seed.clock.now().date()
    message = seed.message()
    first = record(seed, message.uuid, EventType.CSDelivered, seed.clock.now())
    assert home(seed.store, first) == "events_default"

    await Worker(build_jobs(settings, seed.store, seed.clock)).run_once()

    ahead = {day + dt.timedelta(days=n) for n in range(parts.PARTITIONS_AHEAD + 1)}
    with seed.store.read() as conn:
        for table in parts.PARTITIONED:
            assert ahead <= set(parts.daily_partitions(conn, table))
    assert home(seed.store, first) == f"events_p{day:%Y%m%d}"
    again = record(seed, message.uuid, EventType.CSDelivered, seed.clock.advance(hours=1))
    assert again == first
    with seed.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 1


@on_postgres
def test_the_database_rejects_a_second_event_for_a_slot_across_the_partitioned_table(
    seed: Seed,
) -> None:
    """The unique index of the partitioned table rejects a second delivered row for the same
    message and recipient, though it reports another time (``partition_at`` is the message's)."""
    seed.clock.advance(days=301)
    with seed.store.write() as conn:
        parts.ensure_partitions(conn, seed.clock.now().date())
    message = seed.message()
    record(seed, message.uuid, EventType.CSDelivered, seed.clock.now())
    with seed.store.read() as conn:
        row = dict(conn.execute(sa.select(events)).one()._mapping)
    row.pop("id")
    row["occurred_at"] += dt.timedelta(days=2)
    with pytest.raises(sa.exc.IntegrityError), seed.store.write() as conn:
        conn.execute(sa.insert(events).values(**row))


def count(store: Store, table: sa.Table) -> int:
    with store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_retention_drops_old_days_and_keeps_unprocessed_batches(seed: Seed) -> None:
    """Events past the retention go (PostgreSQL: their whole daily partition is dropped; SQLite:
    rows deleted), newer ones stay; a processed batch goes once processed longer ago than the
    batch retention (PostgreSQL: with its whole day, once every batch of the day is), an
    unprocessed one never."""
    seed.clock.advance(days=320)
    day_a = seed.clock.now().date()
    on_pg = not seed.store.is_sqlite
    if on_pg:
        with seed.store.write() as conn:
            parts.ensure_partitions(conn, day_a, ahead=4)
    old = seed.message()
    record(seed, old.uuid, EventType.CSDelivered, seed.clock.now())
    record(seed, old.uuid, EventType.CSOpen, seed.clock.now())
    with seed.store.write() as conn:
        done, pending = ingest.insert_batches(
            conn,
            [ingest.IncomingBatch(seed.provider.id, b'{"events":[]}', 0)] * 2,
            now=seed.clock.now(),
        )
        ingest.mark_processed(conn, [done], now=seed.clock.now())
    seed.clock.advance(days=2)
    new = seed.message()
    kept = record(seed, new.uuid, EventType.CSDelivered, seed.clock.now())
    retention = parts.Retention(events=dt.timedelta(days=1), batches=dt.timedelta(days=1))

    with seed.store.write() as conn:
        dropped = parts.apply_retention(conn, seed.clock.now(), retention)
    with seed.store.read() as conn:
        left = [r.id for r in conn.execute(sa.select(events.c.id).order_by(events.c.id))]
        batches = [
            r.id for r in conn.execute(sa.select(ingest_batches.c.id).order_by(ingest_batches.c.id))
        ]
    assert left == [kept]
    if on_pg:  # the processed batch waits for its day's partition to go as a whole
        assert batches == [done, pending]
        # (the session's schema may hold older days of other tests: they go too)
        assert f"events_p{day_a:%Y%m%d}" in dropped.partitions
        assert f"ingest_batches_p{day_a:%Y%m%d}" not in dropped.partitions
        assert all(
            name[-8:] < f"{day_a + dt.timedelta(days=1):%Y%m%d}" for name in dropped.partitions
        )
        assert dropped.rows == 0
    else:
        assert batches == [pending]
        assert (dropped.partitions, dropped.rows) == ([], 3)

    with seed.store.write() as conn:
        ingest.mark_processed(conn, [pending], now=seed.clock.now())
    seed.clock.advance(days=1, hours=1)
    with seed.store.write() as conn:
        dropped = parts.apply_retention(conn, seed.clock.now(), retention)
    assert count(seed.store, ingest_batches) == 0
    if on_pg:
        assert f"ingest_batches_p{day_a:%Y%m%d}" in dropped.partitions
        with seed.store.read() as conn:
            assert day_a not in parts.daily_partitions(conn, "ingest_batches")


@pytest.fixture
def statements(seed: Seed) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the store's engine runs while the test runs, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    sa.event.listen(seed.store.engine, "before_cursor_execute", capture)
    yield seen
    sa.event.remove(seed.store.engine, "before_cursor_execute", capture)


def scanned(store: Store, statement: str, parameters: Any) -> set[str]:
    """The partitions of ``events`` in the plan PostgreSQL makes for ``statement``."""
    with store.read() as conn:
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
    return set(re.findall(r"\bon (events_(?:p\d{8}|default))\b", plan))


@on_postgres
async def test_time_window_queries_of_the_api_and_dashboard_prune_partitions(
    seed: Seed, client: httpx.AsyncClient, statements: list[tuple[str, Any]]
) -> None:
    """With 30 daily partitions, the events API's and the dashboard's one-hour queries and the
    statistics' one-day query scan only the days the window and EVENT_LAG_BOUND allow (EXPLAIN),
    while a query without a window scans them all."""
    seed.clock.advance(days=340)
    first = seed.clock.now().date()
    with seed.store.write() as conn:
        for n in range(30):
            if first + dt.timedelta(days=n) not in parts.daily_partitions(conn, "events"):
                parts.create_partition(conn, "events", first + dt.timedelta(days=n))
    for _ in range(29):
        record(seed, seed.message().uuid, EventType.CSDelivered, seed.clock.advance(days=1))
    until = seed.clock.now() + dt.timedelta(minutes=30)
    since = until - dt.timedelta(hours=1)
    allowed = {
        f"events_p{since.date() - dt.timedelta(days=n):%Y%m%d}"
        for n in range(-1, parts.EVENT_LAG_BOUND.days + 2)
    } | {"events_default"}

    statements.clear()
    response = await client.get(
        "/api/v1/events",
        headers={"X-Account-ApiKey": seed.account.account_key},
        params={"from": since.isoformat(), "to": until.isoformat()},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 1
    with seed.store.read() as conn:
        dq.counts_by_provider(conn, seed.account.account_id, since, until)
        dq.counts_by_bucket(
            conn, seed.account.account_id, dq.Buckets(since, dt.timedelta(minutes=10), 6)
        )
        reports.daily_counts(
            conn, account_id=seed.account.account_id, since=until.date(), until=until.date()
        )
    windowed = [(s, p) for s, p in statements if re.search(r"\bFROM events\b", s)]
    assert len(windowed) >= 4
    for statement, parameters in windowed:
        plan = scanned(seed.store, statement, parameters)
        assert plan, statement
        assert plan <= allowed, statement
        assert f"events_p{first:%Y%m%d}" not in plan

    statements.clear()
    with seed.store.read() as conn:
        event_store.list_events(conn, event_store.EventFilter(seed.account.account_id), limit=5)
    [(statement, parameters)] = [(s, p) for s, p in statements if "FROM events" in s]
    everything = scanned(seed.store, statement, parameters)
    assert {f"events_p{first + dt.timedelta(days=n):%Y%m%d}" for n in range(30)} <= everything


@on_postgres
def test_retention_gives_up_on_a_busy_table_instead_of_queueing_everyone_behind_it(
    seed: Seed, caplog: pytest.LogCaptureFixture
) -> None:
    """While a long read holds ``events``, the job's DROP waits at most LOCK_TIMEOUT, leaves the
    partition, and logs; once the read ends, the next run drops it."""
    seed.clock.advance(days=360)
    day = seed.clock.now().date()
    with seed.store.write() as conn:
        parts.ensure_partitions(conn, day)
    seed.clock.advance(days=3)
    job = parts.PartitionJob(
        seed.store, seed.clock, parts.Retention(dt.timedelta(days=1), dt.timedelta(days=1))
    )
    with seed.store.engine.connect() as reader:
        reader.execute(sa.select(sa.func.count()).select_from(events))  # holds its lock
        job.run()
        with seed.store.read() as conn:
            assert day in parts.daily_partitions(conn, "events")
        assert "partition maintenance postponed" in caplog.text
        reader.rollback()
    job.run()
    with seed.store.read() as conn:
        assert day not in parts.daily_partitions(conn, "events")
