"""events: drop ix_events_message_uuid, which the dedup unique index already covers

The unique index ``(message_uuid, recipient_key, dedup_slot, partition_at)`` starts with
``message_uuid``, so it serves every lookup by message (a message's timeline, tracking counts,
the webhook fan-out's first-of-kind check) as well as the single-column index did; keeping both
cost every stored event one more index insertion (docs/benchmarks.md, "Event processing"). On a
partitioned ``events`` (PostgreSQL) dropping the parent's index drops the partitions' too.

Revision ID: 0015_proc_events_index
Revises: 0014_webhooks
Create Date: 2026-12-05 01:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0015_proc_events_index"
down_revision = "0014_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_events_message_uuid", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_message_uuid", "events", ["message_uuid"], unique=False)
