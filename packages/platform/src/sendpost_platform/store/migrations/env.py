"""Alembic environment: runs migrations on the engine the platform passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Engine

from sendpost_platform.store.schema import metadata

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
