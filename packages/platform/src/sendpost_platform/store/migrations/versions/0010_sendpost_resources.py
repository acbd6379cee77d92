"""SendPost's resource API: pool overflow, sub-account deletion, suppression SMTP errors

Revision ID: 0010_sendpost_resources
Revises: 0009_send_fields
Create Date: 2026-12-04 21:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sendpost_platform.store.dialect import UTCDateTime

revision = "0010_sendpost_resources"
down_revision = "0009_send_fields"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ip_pools", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("should_overflow", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("overflow_pool_name", sa.String(length=200), nullable=True))
    with op.batch_alter_table("subaccounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("smtp_error", sa.Text(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_suppressions_subaccount_id_created_at"),
            ["subaccount_id", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suppressions_subaccount_id_created_at"))
        batch_op.drop_column("smtp_error")
    with op.batch_alter_table("subaccounts", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
    with op.batch_alter_table("ip_pools", schema=None) as batch_op:
        batch_op.drop_column("overflow_pool_name")
        batch_op.drop_column("should_overflow")
