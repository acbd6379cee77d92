"""Everything that differs between SQLite and PostgreSQL, in one place.

- URLs: ``postgresql://`` is driven by psycopg 3 (``postgresql+psycopg://``).
- SQLite runs in WAL mode with ``synchronous=FULL``: a commit returns only after the WAL is
  fsynced, so an acknowledged write survives a power cut, not just a process crash. Write
  transactions start with ``BEGIN IMMEDIATE`` (no lock-upgrade deadlocks between readers that
  turn writers); read-only connections (``execution_options(readonly=True)``) use a plain
  ``BEGIN``. Several connections may wait for the write lock up to ``busy_timeout``.
- PostgreSQL commits are durable with the server's default ``synchronous_commit=on``.
- ``insert_ignore`` / ``upsert_add`` use each dialect's ``ON CONFLICT``; ``FOR UPDATE SKIP
  LOCKED`` is rendered on PostgreSQL and ignored by SQLAlchemy on SQLite (one process there).
- :class:`UTCDateTime` stores naive UTC on SQLite and ``timestamptz`` on PostgreSQL, and always
  returns aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine

SQLITE_BUSY_TIMEOUT_MS = 30_000

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""Primary-key type: 64-bit on PostgreSQL, SQLite's INTEGER (the rowid alias) there."""


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both databases."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def normalise_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.removeprefix("postgres://")
    return url


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is too late).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get("readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def insert_ignore(
    conn: Connection, table: sa.Table, values: Mapping[str, Any], *, conflict: Sequence[str]
) -> int | None:
    """INSERT a row unless it clashes on ``conflict`` columns; returns the new primary key, or
    None when a row with the same key exists (on PostgreSQL, waits for a concurrent inserter)."""
    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    pk = next(iter(table.primary_key.columns))
    stmt = (
        module.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(conflict))
        .returning(pk)
    )
    row = conn.execute(stmt).first()
    return None if row is None else int(row[0])


def upsert_add(
    conn: Connection,
    table: sa.Table,
    key: Mapping[str, Any],
    column: str,
    amount: int,
) -> None:
    """``INSERT key + {column: amount}``, or add ``amount`` to ``column`` of the existing row."""
    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = module.insert(table).values(**key, **{column: amount})
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key), set_={column: table.c[column] + stmt.excluded[column]}
    )
    conn.execute(stmt)
