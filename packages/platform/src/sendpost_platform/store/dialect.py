"""Everything that differs between SQLite and PostgreSQL, in one place.

- URLs: ``postgresql://`` is driven by psycopg 3 (``postgresql+psycopg://``).
- SQLite runs in WAL mode with ``synchronous=FULL``: a commit returns only after the WAL is
  fsynced, so an acknowledged write survives a power cut, not just a process crash. Write
  transactions start with ``BEGIN IMMEDIATE`` (no lock-upgrade deadlocks between readers that
  turn writers); read-only connections (``execution_options(readonly=True)``) use a plain
  ``BEGIN``. Several connections may wait for the write lock up to ``busy_timeout``.
- PostgreSQL commits are durable with the server's default ``synchronous_commit=on``.
- ``insert_many`` writes many rows in one statement: on PostgreSQL ``INSERT ... SELECT FROM
  unnest(array, array, ...)`` with one array parameter per column, a short statement that psycopg
  and the server parse once whatever the row count (a multi-row ``VALUES`` list of thousands of
  rows costs more to parse than to insert); on SQLite SQLAlchemy's multi-row insert.
  ``among(column, values)`` is ``= ANY(array)`` on PostgreSQL and ``IN (...)`` on SQLite.
- ``insert_ignore`` / ``upsert_add`` use each dialect's ``ON CONFLICT``; ``FOR UPDATE SKIP
  LOCKED`` is rendered on PostgreSQL and ignored by SQLAlchemy on SQLite (one process there).
- :class:`UTCDateTime` stores naive UTC on SQLite and ``timestamptz`` on PostgreSQL, and always
  returns aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
import json
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

    def bind_processor(self, dialect: Dialect) -> Any:
        """On SQLite, :meth:`process_bind_param` and SQLAlchemy's text format for SQLite
        (``YYYY-MM-DD HH:MM:SS.ffffff``, what comparisons in SQL rely on) in one step: the
        format is ``isoformat(" ", "microseconds")``, which costs a fraction of the two
        processors chained (recording binds a few datetimes per event)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: dt.datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the store; use aware UTC datetimes")
            return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

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


def insert_many(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str] | None = None,
    returning: Sequence[str] = (),
) -> list[sa.Row[Any]]:
    """INSERT ``rows`` (all with the same keys) in one statement; with ``conflict``, rows that
    clash on those columns are skipped (``ON CONFLICT DO NOTHING``). Returns the ``returning``
    columns of the inserted rows. On PostgreSQL the rows are inserted in the order given, so
    serial IDs ascend in that order (what :func:`insert_many` callers rely on to match IDs)."""
    if not rows:
        return []
    names = tuple(rows[0])
    key = (conn.dialect.name, table.name, names, tuple(conflict or ()), tuple(returning))
    if conn.dialect.name == "postgresql":
        params: dict[str, Any] = {}
        varying = []
        for i, name in enumerate(names):
            values = [row[name] for row in rows]
            if isinstance(table.c[name].type, sa.JSON):
                values = [_json_text(v) for v in values]
            first = values[0]
            same = i > 0 and all(v == first and type(v) is type(first) for v in values)
            params[f"p{i}"] = first if same else values
            varying.append(not same)
        shape = (*key, tuple(varying))
        sql = _UNNEST_SQL.get(shape)
        if sql is None:
            sql = _UNNEST_SQL[shape] = _unnest_insert(
                conn, table, names, varying, conflict, returning
            )
        result = conn.exec_driver_sql(sql, params)
        return list(result.all()) if returning else []
    # SQLite: multi-row VALUES in chunks under the variable limit, values converted by the
    # columns' own bind processors (what SQLAlchemy would store), without its per-row overhead.
    processors = _PROCESSORS.get(key)
    if processors is None:
        processors = _PROCESSORS[key] = [
            table.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
            for name in names
        ]
    columns = list(zip(names, processors, strict=True))
    per_chunk = max(1, _SQLITE_VARIABLES // len(names))
    found: list[sa.Row[Any]] = []
    for start in range(0, len(rows), per_chunk):
        chunk = rows[start : start + per_chunk]
        params_list: list[Any] = []
        for row in chunk:
            for name, process in columns:
                value = row[name]
                params_list.append(value if process is None else process(value))
        sql = _values_insert(table, names, len(chunk), conflict, returning)
        result = conn.exec_driver_sql(sql, tuple(params_list))
        if returning:
            found += result.all()
    return found


_UNNEST_SQL: dict[tuple[Any, ...], str] = {}
_PROCESSORS: dict[tuple[Any, ...], list[Any]] = {}
_SQLITE_VARIABLES = 32_000


def _values_insert(
    table: sa.Table,
    names: Sequence[str],
    count: int,
    conflict: Sequence[str] | None,
    returning: Sequence[str],
) -> str:
    row = "(" + ", ".join("?" * len(names)) + ")"
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES "  # noqa: S608 (schema names)
    sql += ", ".join([row] * count)
    if conflict is not None:
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    return sql


def _unnest_insert(
    conn: Connection,
    table: sa.Table,
    names: Sequence[str],
    varying: Sequence[bool],
    conflict: Sequence[str] | None,
    returning: Sequence[str],
) -> str:
    """The statement of :func:`insert_many` on PostgreSQL: an array per column whose values
    vary, one value for a column that has the same in every row (the group's account, source,
    received_at ...). For psycopg, ``%(pN)b`` sends each parameter in binary, which costs far
    less than quoting thousands of values as text."""
    arrays, selected = [], []
    for i, name in enumerate(names):
        column = table.c[name]
        is_json = isinstance(column.type, sa.JSON)
        pg_type = "text" if is_json else column.type.compile(dialect=conn.dialect)
        if varying[i]:
            arrays.append(f"CAST(%(p{i})b AS {pg_type}[])")
            value = f"u.c{len(arrays) - 1}"
        else:
            value = f"CAST(%(p{i})b AS {pg_type})"
        selected.append(f"CAST({value} AS json)" if is_json else value)
    aliases = ", ".join(f"c{i}" for i in range(len(arrays)))
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {', '.join(selected)} "  # noqa: S608
        f"FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS u({aliases}, n) ORDER BY u.n"
    )
    if conflict is not None:
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    return sql


def copy_insert(
    conn: Connection,
    table: sa.Table,
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    order_by: Sequence[str],
    conflict: Sequence[str],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """PostgreSQL: INSERT ``rows`` (each the values of the columns ``names``, in that order;
    JSON columns encoded here as :func:`insert_many` does) in the order of the ``order_by``
    columns, skipping rows that clash on ``conflict`` (``ON CONFLICT DO NOTHING``); returns the
    ``returning`` columns of the inserted rows.

    The rows go by binary ``COPY`` into ``<table>_stage``, a temporary table with the columns
    of ``table`` (none of its constraints) whose rows are deleted at commit (and gone with a
    rollback). It is created, if missing, by every call (``IF NOT EXISTS``: one cheap
    statement), so nothing is assumed of the session: behind a pooler in transaction mode
    each server connection gets its own."""
    if not rows:
        return []
    names = tuple(names)
    stage = f"{table.name}_stage"
    columns = ", ".join(names)
    types = _COPY_TYPES.get((table.name, names))
    if types is None:
        types = _COPY_TYPES[(table.name, names)] = [
            "text" if isinstance(table.c[n].type, sa.JSON) else _pg_type(conn, table.c[n])
            for n in names
        ]
    json_at = [i for i, n in enumerate(names) if isinstance(table.c[n].type, sa.JSON)]
    create = f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS"
    with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(f"{create} SELECT * FROM {table.name} WITH NO DATA")  # noqa: S608
        with cursor.copy(f"COPY {stage} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            write_row = copy.write_row
            if json_at:
                for row in rows:
                    values = list(row)
                    for i in json_at:
                        values[i] = _json_text(values[i])
                    write_row(values)
            else:
                for row in rows:
                    write_row(row)
        cursor.execute(
            f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {stage}"  # noqa: S608
            f" ORDER BY {', '.join(order_by)}"
            f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING RETURNING {', '.join(returning)}"
        )
        return list(cursor.fetchall())


def _json_text(value: object) -> str | None:
    """A JSON column's value as its text (SQL NULL for ``None``), what both inserts send.

    Exactly ``json.dumps(value)``; an object whose keys and values are all strings (an event's
    ``details``, one per stored event) is put together from its encoded strings, at a fraction
    of the cost of the general encoder."""
    if value is None:
        return None
    if type(value) is dict:
        parts = []
        for key, item in value.items():
            if type(key) is not str or type(item) is not str:
                return json.dumps(value)
            parts.append(f"{_encode_string(key)}: {_encode_string(item)}")
        return "{" + ", ".join(parts) + "}"
    return json.dumps(value)


_encode_string = json.encoder.encode_basestring_ascii
"""How ``json.dumps`` (``ensure_ascii``, the default) writes a string."""


_COPY_TYPES: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def _pg_type(conn: Connection, column: sa.Column[Any]) -> str:
    """The PostgreSQL type name of ``column`` as psycopg's COPY knows it."""
    name = column.type.compile(dialect=conn.dialect).lower()
    return _PG_ALIASES.get(name.split("(")[0], name.split("(")[0])


_PG_ALIASES = {
    "bigint": "int8",
    "integer": "int4",
    "smallint": "int2",
    "varchar": "text",
    "timestamp with time zone": "timestamptz",
}


def among(conn: Connection, column: sa.ColumnElement[Any], values: Sequence[Any]) -> Any:
    """``column`` is one of ``values``: one array parameter on PostgreSQL, ``IN`` on SQLite."""
    if conn.dialect.name == "postgresql":
        return column == sa.any_(
            sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        )
    return column.in_(list(values))
