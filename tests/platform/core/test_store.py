"""The store on both databases: migrations, keys stored hashed, key rotation, concurrency."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import uuid
from collections.abc import Mapping

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st
from sendpost_platform import keys
from sendpost_platform.clock import ManualClock
from sendpost_platform.processing import IngestProcessor
from sendpost_platform.store import Store, accounts, counters, ingest, messages, providers
from sendpost_platform.store.dialect import UTCDateTime
from sendpost_platform.store.schema import accounts as accounts_table
from sendpost_platform.store.schema import events, metadata, subaccounts
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from tests.platform.conftest import BULK_ROWS, Seed, add_provider, empty_all
from tests.platform.core.helpers import agent_event

PARTITION = re.compile(r"^(events|ingest_batches)_(p\d{8}|default)$")


def test_migrations_produce_exactly_the_declared_schema(store: Store) -> None:
    """Alembic finds no difference between the migrated database and ``schema.py``; the one
    documented exception (``schema.py``'s docstring): on PostgreSQL ``events`` and
    ``ingest_batches`` are range-partitioned (checked here), and their partitions, tables of
    their own, are left out of the comparison."""

    def declared(name: str | None, kind: str, parents: Mapping[str, str | None]) -> bool:
        table = name if kind == "table" else parents.get("table_name")
        return not PARTITION.match(table or "")

    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": declared})
        diff = compare_metadata(context, metadata)
        partitioned = {}
        if not store.is_sqlite:
            rows = conn.exec_driver_sql(
                "SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_class c"
                " WHERE c.relkind = 'p' AND c.relnamespace = current_schema()::regnamespace"
            )
            partitioned = dict(rows.all())
    assert diff == []
    if not store.is_sqlite:
        assert partitioned == {
            "events": "RANGE (partition_at)",
            "ingest_batches": "RANGE (received_at)",
        }


def test_keys_are_stored_only_as_sha256(store: Store, clock: ManualClock) -> None:
    """Plain keys never reach the database; lookup by key works through the hash."""
    with store.write() as conn:
        created = accounts.create_account(conn, name="Acme", now=clock.now())
    with store.read() as conn:
        stored = conn.execute(sa.select(accounts_table.c.key_hash)).scalars().all()
        sub_stored = conn.execute(sa.select(subaccounts.c.key_hash)).scalars().all()
        assert [keys.hash_key(created.account_key)] == stored
        assert [keys.hash_key(created.subaccount_key)] == sub_stored
        account = accounts.account_by_key(conn, created.account_key)
        sub = accounts.subaccount_by_key(conn, created.subaccount_key)
        assert accounts.account_by_key(conn, created.subaccount_key) is None
    assert (created.account_id, created.subaccount_id) == (
        account.id if account else None,
        sub.id if sub else None,
    )


def test_rotation_expires_previous_keys_at_the_end_of_grace(
    seed: Seed, store: Store, clock: ManualClock
) -> None:
    """Rotating twice: the key replaced by the second rotation gets the grace; the key rotated
    out by the first stops at once (rotating again is the answer to a leak)."""
    grace = dt.timedelta(hours=2)
    with store.write() as conn:
        second = providers.rotate_ingest_key(
            conn, provider_id=seed.provider.id, now=clock.now(), grace=grace
        )
    clock.advance(hours=1)
    with store.read() as conn:
        alive = [
            providers.provider_id_for_ingest_key(conn, k, now=clock.now())
            for k in (seed.ingest_key, second)
        ]
    assert [seed.provider.id] * 2 == alive
    with store.write() as conn:
        third = providers.rotate_ingest_key(
            conn, provider_id=seed.provider.id, now=clock.now(), grace=grace
        )
    clock.advance(minutes=119)
    with store.read() as conn:
        alive = [
            providers.provider_id_for_ingest_key(conn, k, now=clock.now())
            for k in (seed.ingest_key, second, third)
        ]
    assert [None, seed.provider.id, seed.provider.id] == alive
    clock.advance(minutes=2)
    with store.read() as conn:
        alive = [
            providers.provider_id_for_ingest_key(conn, k, now=clock.now())
            for k in (seed.ingest_key, second, third)
        ]
    assert [None, None, seed.provider.id] == alive


def test_timestamps_round_trip_as_aware_utc(seed: Seed, store: Store) -> None:
    """A datetime given with an offset comes back as the same instant in UTC."""
    when = dt.datetime(2026, 3, 1, 14, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with store.write() as conn:
        [batch_id] = ingest.insert_batches(
            conn, [ingest.IncomingBatch(seed.provider.id, b"{}", 1)], now=when
        )
        [batch] = ingest.claim(conn, limit=1)
    assert (batch_id, when, dt.UTC) == (batch.id, batch.received_at, batch.received_at.tzinfo)


def test_sqlite_stores_utc_datetimes_in_sqlalchemys_text_format() -> None:
    """On SQLite, UTCDateTime's own bind processor writes exactly the text SQLAlchemy's
    DateTime would write for the same instant in UTC (comparisons in SQL are on that text),
    for whole seconds, microseconds, other offsets and small years; naive values are refused."""
    dialect = sqlite_dialect()
    ours = UTCDateTime().bind_processor(dialect)
    reference = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    values = [
        dt.datetime(2026, 2, 19, 12, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 2, 19, 12, 0, 0, 123, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 1, 0, 30, 15, 999999, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(9, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
    ]
    for value in values:
        assert ours(value) == reference(value.astimezone(dt.UTC).replace(tzinfo=None))
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive"):
        ours(dt.datetime(2026, 1, 1))


def test_counters_add_up(store: Store) -> None:
    """Counter increments accumulate per provider and name."""
    with store.write() as conn:
        counters.add(conn, 7, "x", 2)
        counters.add(conn, 7, "x", 3)
        counters.add(conn, 8, "x", 1)
    with store.read() as conn:
        assert (
            counters.get(conn, 7, "x"),
            counters.get(conn, 8, "x"),
            counters.get(conn, 7, "y"),
        ) == (5, 1, 0)


@pytest.mark.postgres
@pytest.mark.parametrize("extra_accounts", [0, BULK_ROWS + 1])
def test_postgres_tests_start_on_empty_tables_and_fresh_sequences(
    pg_store: Store, extra_accounts: int
) -> None:
    """What the ``pg_store`` fixture does before each test (``empty_all``) leaves every table of
    the schema empty, however many rows it held, and every sequence where a fresh migration
    leaves it; the schema stays migrated. Every table is one ``schema.py`` declares, so none is
    left out."""
    clock = ManualClock()
    with pg_store.write() as conn:
        account = accounts.create_account(conn, name="Acme", now=clock.now())
        provider, _key = add_provider(conn, account.account_id, clock)
    Seed(pg_store, clock, account, provider, _key).message()
    if extra_accounts:
        with pg_store.write() as conn:
            conn.execute(
                sa.insert(accounts_table),
                [
                    {"name": f"a{n}", "key_hash": f"{n:064x}", "created_at": clock.now()}
                    for n in range(extra_accounts)
                ],
            )
    empty_all(pg_store)
    with pg_store.read() as conn:
        tables = conn.exec_driver_sql(
            "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND NOT relispartition"
            " AND relnamespace = current_schema()::regnamespace"
        ).scalars()
        counts = {
            name: conn.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar_one()  # noqa: S608
            for name in tables
        }
        used_sequences = conn.exec_driver_sql(
            "SELECT sequencename FROM pg_sequences"
            " WHERE schemaname = current_schema() AND last_value IS NOT NULL"
        ).scalars()
        assert [] == list(used_sequences)
    assert {t.name: 0 for t in metadata.sorted_tables} | {"alembic_version": 1} == counts
    pg_store.require_current_schema()
    with pg_store.write() as conn:
        assert 1 == accounts.create_account(conn, name="Next", now=clock.now()).account_id


@pytest.mark.postgres
def test_two_workers_on_postgres_never_store_an_event_twice(
    pg_store: Store, pg_schema_url: str
) -> None:
    """Two processors with their own connections drain one backlog concurrently; every batch is
    processed exactly once (counters add up to the events sent) and no event is duplicated."""
    clock = ManualClock()
    with pg_store.write() as conn:
        account = accounts.create_account(conn, name="Acme", now=clock.now())
        provider, _key = add_provider(conn, account.account_id, clock)
    message_ids = []
    with pg_store.write() as conn:
        for n in range(40):
            message_ids.append(
                messages.insert_message(
                    conn,
                    account_id=account.account_id,
                    subaccount_id=account.subaccount_id,
                    recipient=f"r{n}@example.com",
                    sender="s@example.com",
                    now=clock.now(),
                    provider_id=provider.id,
                    state="sent",
                ).uuid
            )
    batches = []
    for b in range(60):
        evs = [
            agent_event(message_ids[(b + i) % 40], event_id=str(uuid.uuid4())) for i in range(10)
        ]
        evs += [agent_event(message_ids[b % 40], "deferred")]
        batches.append(
            ingest.IncomingBatch(provider.id, json.dumps({"events": evs}).encode(), len(evs))
        )
    with pg_store.write() as conn:
        ingest.insert_batches(conn, batches, now=clock.now())

    second = Store.open(pg_schema_url, pool_size=2)
    processors = [
        IngestProcessor(pg_store, clock, claim_batches=3),
        IngestProcessor(second, clock, claim_batches=3),
    ]
    handled = [0, 0]
    barrier = threading.Barrier(2)

    def drain(index: int) -> None:
        barrier.wait()
        while (n := processors[index].process_available()) > 0:
            handled[index] += n

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    second.dispose()
    with pg_store.read() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
        got = counters.for_provider(conn, provider.id)
        pending = ingest.pending_count(conn)
    assert (pending, sum(handled)) == (0, 60)
    assert stored == 40  # one CSDelivered per message
    assert (
        got["ingest.inserted"],
        got["ingest.duplicate"],
        got["ingest.deferred"],
    ) == (40, 600 - 40, 60)
    assert all(h > 0 for h in handled), handled


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(), st.text(), max_size=4) | _JSON_VALUES)
def test_json_columns_are_written_as_json_dumps_writes_them(value: object) -> None:
    """A JSON column's text (an event's ``details``: a flat object of strings, put together
    without the general encoder) is exactly ``json.dumps``'s, for any JSON value."""
    from sendpost_platform.store.dialect import _json_text

    assert (None if value is None else json.dumps(value)) == _json_text(value)
