"""send API: idempotency keys

Revision ID: 0007_idempotency
Revises: 0006_heartbeat
Create Date: 2026-12-04 19:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sendpost_platform.store.dialect import BigId, UTCDateTime

revision = "0007_idempotency"
down_revision = "0006_heartbeat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_idempotency",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("subaccount_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_idempotency")),
        sa.UniqueConstraint(
            "subaccount_id", "key", name=op.f("uq_send_idempotency_subaccount_id_key")
        ),
    )
    with op.batch_alter_table("send_idempotency", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_send_idempotency_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("send_idempotency", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_send_idempotency_created_at"))
    op.drop_table("send_idempotency")
