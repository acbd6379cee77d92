"""The platform's database: one SQL layer (SQLAlchemy Core) for SQLite and PostgreSQL.

Use :class:`Store` everywhere; query functions live in the modules next to this one and take a
``Connection`` so callers compose them into one transaction::

    with store.write() as conn:            # a write transaction, committed on exit
        account = accounts.create_account(conn, name="Acme", now=clock.now())
    with store.read() as conn:             # a read-only transaction
        rows = events.query_events(conn, account_id=1, filters=...)

On SQLite, ``write()`` also serialises writers inside the process with a lock, so threads queue
in Python rather than in SQLite's sleeping busy handler. Dialect details: ``dialect.py``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sendpost_platform.errors import StoreError
from sendpost_platform.store import migrate
from sendpost_platform.store.dialect import make_engine


class Store:
    """An engine plus the transaction helpers every query runs in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @classmethod
    def open(cls, url: str, *, pool_size: int = 10) -> Store:
        return cls(make_engine(url, pool_size=pool_size))

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on an exception."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database write failed: {exc.orig}") from exc
        finally:
            if lock is not None:
                lock.release()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (never takes SQLite's write lock)."""
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(readonly=True)
                with conn.begin():
                    yield conn
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database read failed: {exc.orig}") from exc

    def migrate(self) -> None:
        """Bring the schema to the newest migration."""
        migrate.upgrade(self.engine)

    def require_current_schema(self) -> None:
        migrate.require_current(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
