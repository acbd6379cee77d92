"""providers: the agent's heartbeat and rejected keys

Revision ID: 0006_heartbeat
Revises: 0005_dead_letters
Create Date: 2026-12-04 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sendpost_platform.store.dialect import UTCDateTime

revision = "0006_heartbeat"
down_revision = "0005_dead_letters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("custom_smtp_providers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent_report", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("agent_report_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("agent_key_rejected_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("custom_smtp_providers", schema=None) as batch_op:
        batch_op.drop_column("agent_key_rejected_at")
        batch_op.drop_column("agent_report_at")
        batch_op.drop_column("agent_report")
