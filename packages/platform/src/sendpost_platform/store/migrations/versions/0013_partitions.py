"""events.partition_at in the dedup key; on PostgreSQL events and ingest_batches partitioned by day

Both databases: ``events`` gets ``partition_at`` (the message's creation time for events with a
dedup slot, ``occurred_at`` for the others, see ``store/partitions.py``) and the unique index
becomes ``(message_uuid, recipient_key, dedup_slot, partition_at)``, equivalent to the former one.

PostgreSQL only: ``events`` (by ``partition_at``) and ``ingest_batches`` (by ``received_at``)
become range-partitioned tables with a default partition and one per day that holds rows, plus
today and ``PARTITIONS_AHEAD`` days ahead (the worker creates the later ones). The rows are
copied (a maintenance window on a large table: it rewrites it once). Primary keys include the
partition column, as PostgreSQL requires.

Revision ID: 0013_partitions
Revises: 0011_recorder
Create Date: 2026-12-04 22:30:00
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

from sendpost_platform.store.dialect import UTCDateTime
from sendpost_platform.store.partitions import PARTITIONS_AHEAD, UNKNOWN_MESSAGE

revision = "0013_partitions"
down_revision = "0011_recorder"
branch_labels = None
depends_on = None

_OLD_UNIQUE = "uq_events_message_uuid_recipient_key_dedup_slot"
_NEW_UNIQUE = "uq_events_message_uuid_recipient_key_dedup_slot_partition_at"

# table -> (partition column, index DDL after the copy)
_PARTITIONED = {
    "events": (
        "partition_at",
        [
            f"ALTER TABLE events ADD CONSTRAINT {_NEW_UNIQUE}"
            " UNIQUE (message_uuid, recipient_key, dedup_slot, partition_at)",
            "CREATE INDEX ix_events_account_id_occurred_at_id ON events"
            " (account_id, occurred_at, id)",
            "CREATE INDEX ix_events_message_uuid ON events (message_uuid)",
        ],
    ),
    "ingest_batches": (
        "received_at",
        [
            "CREATE INDEX ix_ingest_batches_pending ON ingest_batches (id)"
            " WHERE processed_at IS NULL",
            "CREATE INDEX ix_ingest_batches_pending_provider ON ingest_batches"
            " (provider_id, id) WHERE processed_at IS NULL",
        ],
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partition_at", UTCDateTime(), nullable=True))
    op.get_bind().execute(
        sa.text(
            "UPDATE events SET partition_at = CASE WHEN dedup_slot IS NULL THEN occurred_at"
            " ELSE COALESCE((SELECT m.created_at FROM messages m"
            " WHERE m.uuid = events.message_uuid), :unknown) END"
        ).bindparams(sa.bindparam("unknown", UNKNOWN_MESSAGE, type_=UTCDateTime()))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events ALTER COLUMN partition_at SET NOT NULL")
        for table, (column, indexes) in _PARTITIONED.items():
            _partition(table, column, indexes)
        return
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column("partition_at", existing_type=UTCDateTime(), nullable=False)
        batch_op.drop_constraint(_OLD_UNIQUE, type_="unique")
        batch_op.create_unique_constraint(
            _NEW_UNIQUE, ["message_uuid", "recipient_key", "dedup_slot", "partition_at"]
        )


def _partition(table: str, column: str, indexes: list[str]) -> None:
    """Replace ``table`` by a partitioned copy (same columns, defaults and sequence)."""
    bind = op.get_bind()
    old = f"{table}_unpartitioned"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY NONE")
    op.execute(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS) PARTITION BY RANGE ({column})"
    )
    op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    today = dt.datetime.now(dt.UTC).date()
    days = {today + dt.timedelta(days=n) for n in range(PARTITIONS_AHEAD + 1)}
    held = bind.exec_driver_sql(
        f"SELECT DISTINCT CAST(({column} AT TIME ZONE 'UTC') AS date) FROM {old}"  # noqa: S608
    )
    days |= {row[0] for row in held if row[0] != UNKNOWN_MESSAGE.date()}
    for day in sorted(days):
        low = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        high = low + dt.timedelta(days=1)
        op.execute(
            f"CREATE TABLE {table}_p{day:%Y%m%d} PARTITION OF {table}"
            f" FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"
        )
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")  # noqa: S608 (schema names)
    op.execute(f"DROP TABLE {old}")
    op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY (id, {column})")
    for ddl in indexes:
        op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        raise NotImplementedError(
            "0013_partitions cannot be undone on PostgreSQL: restore the backup taken before it"
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint(_NEW_UNIQUE, type_="unique")
        batch_op.create_unique_constraint(
            _OLD_UNIQUE, ["message_uuid", "recipient_key", "dedup_slot"]
        )
        batch_op.drop_column("partition_at")
