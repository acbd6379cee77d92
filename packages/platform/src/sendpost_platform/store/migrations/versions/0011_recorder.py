"""ingest_batches: a partial index on (provider_id, id) of pending batches, for the fair claim

Revision ID: 0011_recorder
Revises: 0010_sendpost_resources
Create Date: 2026-12-04 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_recorder"
down_revision = "0010_sendpost_resources"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_batches", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ingest_batches_pending_provider",
            ["provider_id", "id"],
            unique=False,
            sqlite_where=sa.text("processed_at IS NULL"),
            postgresql_where=sa.text("processed_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("ingest_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_ingest_batches_pending_provider")
