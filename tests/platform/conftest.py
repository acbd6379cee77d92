"""Store fixtures shared by every platform test: the same tests run on SQLite and PostgreSQL.

- ``store``: a migrated, empty :class:`Store`, parametrised ``sqlite`` / ``postgres`` (the latter
  marked ``postgres``; skipped with one summary line when the server at 127.0.0.1:5432 is
  unreachable). Use ``sqlite_store`` / ``pg_store`` for one dialect only.
- PostgreSQL isolation: each pytest session creates its own schema in database ``test``
  (``sp_test_<pid>_<random>``), migrates it once, empties the tables before each test and
  drops the schema at the end, so concurrent sessions never clash.
- SQLite: migrated once per session into a template file, copied for each test.
- ``settings``: with ``allow_private_networks`` on (the development switch of ``egress.py``),
  since the SMTP servers these tests talk to listen on loopback; egress tests turn it off.
- ``clock`` (a ManualClock), ``seed`` (an account, a provider with its ingestion key, and a
  ``message()`` factory), ``app`` / ``client`` (the ASGI app over ``httpx.ASGITransport``).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.store import Store, accounts, messages, providers
from sendpost_platform.store.schema import metadata

PG_SERVER = os.environ.get("SENDPOST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
_pg_skip_reason: list[str] = []


def _pg_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(PG_SERVER, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{PG_SERVER} unreachable: {str(exc).strip().splitlines()[0]}"
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _pg_skip_reason:
        terminalreporter.write_line(
            f"PostgreSQL tests were skipped: {_pg_skip_reason[0]}", yellow=True
        )


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A migrated schema of its own in the test database, dropped at the end of the session."""
    problem = _pg_reachable()
    if problem:
        _pg_skip_reason.append(problem)
        pytest.skip(f"PostgreSQL tests were skipped: {problem}")
    schema = f"sp_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_SERVER else "?"
    url = f"{PG_SERVER}{sep}options=-csearch_path%3D{schema}"
    store = Store.open(url, pool_size=2)
    store.migrate()
    store.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    store = Store.open(f"sqlite:///{path}", pool_size=1)
    store.migrate()
    store.dispose()
    return path


BULK_ROWS = 1000
"""A table holding more rows than this is truncated rather than deleted from."""


def empty_all(store: Store) -> None:
    """Every table empty and every sequence back at its start, as a fresh migration leaves them.

    Mostly DELETE, not TRUNCATE: TRUNCATE gives each table, partition and index a new file
    (about 0.5 s for this schema, before every PostgreSQL test), while deleting the few rows a
    test wrote takes milliseconds. Children go before their parents, so no foreign key is in the
    way. The odd table a test filled in bulk is truncated, so that the tests after it do not
    scan its dead rows."""
    tables = list(reversed(metadata.sorted_tables))
    with store.write() as conn:
        beyond = {
            t: sa.select(sa.literal(1)).select_from(t).offset(BULK_ROWS).limit(1) for t in tables
        }
        bulk = [table for table, query in beyond.items() if conn.execute(query).first()]
        if bulk:
            names = ", ".join(f'"{t.name}"' for t in bulk)
            conn.execute(sa.text(f"TRUNCATE {names} CASCADE"))
        for table in tables:
            conn.execute(table.delete())
        conn.execute(
            sa.text(
                "SELECT setval(format('%I.%I', schemaname, sequencename), start_value, false)"
                " FROM pg_sequences WHERE schemaname = current_schema()"
            )
        )


@pytest.fixture
def sqlite_store(sqlite_template: Path, tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "sendpost.db"
    shutil.copyfile(sqlite_template, path)
    store = Store.open(f"sqlite:///{path}", pool_size=4)
    yield store
    store.dispose()


@pytest.fixture
def pg_store(pg_schema_url: str) -> Iterator[Store]:
    store = Store.open(pg_schema_url, pool_size=4)
    empty_all(store)
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Store:
    """A migrated, empty store on each database."""
    name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    result = request.getfixturevalue(name)
    assert isinstance(result, Store)
    return result


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(store: Store) -> Settings:
    """Settings for these tests; the SMTP servers they talk to are on loopback, so the
    development switch ``allow_private_networks`` is on (the egress tests turn it off)."""
    return Settings(
        database_url=store.engine.url.render_as_string(hide_password=False),
        secret_key="test-secret-key",
        allow_private_networks=True,
    )


@dataclasses.dataclass
class Seed:
    """An account with a sub-account, and a provider with its ingestion key."""

    store: Store
    clock: ManualClock
    account: accounts.NewAccount
    provider: providers.Provider
    ingest_key: str

    def message(
        self, *, recipient: str = "user@example.com", provider_id: int | None = -1
    ) -> messages.Message:
        """A message relayed through the seed's provider (or ``provider_id``; None: unrouted)."""
        with self.store.write() as conn:
            return messages.insert_message(
                conn,
                account_id=self.account.account_id,
                subaccount_id=self.account.subaccount_id,
                recipient=recipient,
                sender="news@sender.example",
                now=self.clock.now(),
                provider_id=self.provider.id if provider_id == -1 else provider_id,
                state="sent",
            )

    def other_provider(self, name: str = "other") -> tuple[providers.Provider, str]:
        with self.store.write() as conn:
            return add_provider(conn, self.account.account_id, self.clock, name=name)


def add_provider(
    conn: sa.Connection, account_id: int, clock: ManualClock, *, name: str = "mta"
) -> tuple[providers.Provider, str]:
    return providers.create_provider(
        conn,
        account_id=account_id,
        name=name,
        host="127.0.0.1",
        port=2525,
        security="none",
        test_from="test@sender.example",
        test_to="check@example.com",
        now=clock.now(),
    )


@pytest.fixture
def seed(store: Store, clock: ManualClock) -> Seed:
    with store.write() as conn:
        account = accounts.create_account(conn, name="Acme", now=clock.now())
        provider, key = add_provider(conn, account.account_id, clock)
    return Seed(store, clock, account, provider, key)


@pytest.fixture
def app(settings: Settings, store: Store, clock: ManualClock) -> FastAPI:
    return create_app(settings, clock=clock, store=store)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://platform.test") as c:
        yield c
