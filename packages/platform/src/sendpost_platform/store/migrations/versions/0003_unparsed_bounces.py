"""bounce processor: unparsed inbound bounces

Revision ID: 0003_bounces
Revises: 0002
Create Date: 2026-11-22 05:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sendpost_platform.store.dialect import BigId, UTCDateTime

revision = "0003_bounces"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unparsed_bounces",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("message_uuid", sa.String(length=36), nullable=True),
        sa.Column("provider_id", sa.BigInteger(), nullable=True),
        sa.Column("envelope_from", sa.String(length=320), nullable=False),
        sa.Column("envelope_to", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unparsed_bounces")),
    )
    with op.batch_alter_table("unparsed_bounces", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_unparsed_bounces_received_at"), ["received_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("unparsed_bounces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unparsed_bounces_received_at"))
    op.drop_table("unparsed_bounces")
