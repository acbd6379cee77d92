"""ingestion: dead-lettered events

Revision ID: 0005_dead_letters
Revises: 0004_signouts
Create Date: 2026-12-04 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sendpost_platform.store.dialect import BigId, UTCDateTime

revision = "0005_dead_letters"
down_revision = "0004_signouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_dead_letters",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("event_index", sa.Integer(), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("dead_lettered_at", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_dead_letters")),
    )
    with op.batch_alter_table("ingest_dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingest_dead_letters_batch_id"), ["batch_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ingest_dead_letters_dead_lettered_at"),
            ["dead_lettered_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("ingest_dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_dead_letters_dead_lettered_at"))
        batch_op.drop_index(batch_op.f("ix_ingest_dead_letters_batch_id"))
    op.drop_table("ingest_dead_letters")
