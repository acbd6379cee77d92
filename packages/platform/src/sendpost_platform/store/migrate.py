"""Alembic, driven from code: ``sendpost-platform migrate`` and the embedded mode's auto-migrate.

The scripts live in ``sendpost_platform/store/migrations`` (inside the package, so an installed
platform can migrate its database). A new migration: ``alembic -c`` is not needed; copy the
newest file in ``versions/``, set ``revision`` and ``down_revision`` (the previous head).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from sendpost_platform.errors import SchemaNotReady

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision``."""
    command.upgrade(alembic_config(engine), revision)


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_current(engine: Engine) -> None:
    """Raise :class:`SchemaNotReady` unless the database is at the newest migration."""
    current, head = current_revision(engine), head_revision(engine)
    if current != head:
        raise SchemaNotReady(
            f"database schema is at {current or 'nothing'}, this code needs {head}: "
            "run `sendpost-platform migrate`"
        )
