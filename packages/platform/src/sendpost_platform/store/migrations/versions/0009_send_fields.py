"""send API: message groups and webhook endpoint, templates per sub-account

Revision ID: 0009_send_fields
Revises: 0008_outbox
Create Date: 2026-12-04 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sendpost_platform.store.dialect import BigId, UTCDateTime

revision = "0009_send_fields"
down_revision = "0008_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("groups", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("webhook_endpoint", sa.Text(), nullable=True))
    op.create_table(
        "templates",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("subaccount_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column("text_body", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_templates")),
        sa.UniqueConstraint("subaccount_id", "name", name=op.f("uq_templates_subaccount_id_name")),
    )


def downgrade() -> None:
    op.drop_table("templates")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("webhook_endpoint")
        batch_op.drop_column("groups")
