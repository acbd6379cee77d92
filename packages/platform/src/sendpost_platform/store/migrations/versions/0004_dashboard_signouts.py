"""dashboard: sessions ended by sign-out

Revision ID: 0004_signouts
Revises: 0003_bounces
Create Date: 2026-12-04 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sendpost_platform.store.dialect import UTCDateTime

revision = "0004_signouts"
down_revision = "0003_bounces"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_signouts",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_dashboard_signouts")),
    )
    with op.batch_alter_table("dashboard_signouts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dashboard_signouts_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dashboard_signouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dashboard_signouts_expires_at"))
    op.drop_table("dashboard_signouts")
