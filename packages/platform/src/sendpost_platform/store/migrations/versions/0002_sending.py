"""sending: sender domains, IP pools, suppressions, send requests, relay queue and attempts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:59:19.597518
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sendpost_platform.store.dialect import BigId, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_attempts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("message_uuid", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_attempts")),
    )
    with op.batch_alter_table("relay_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_relay_attempts_message_uuid"), ["message_uuid"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_relay_attempts_provider_id_started_at"),
            ["provider_id", "started_at"],
            unique=False,
        )

    op.create_table(
        "send_requests",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("subaccount_id", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_requests")),
    )
    op.create_table(
        "suppressions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("subaccount_id", sa.BigInteger(), nullable=False),
        sa.Column("recipient_key", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("message_uuid", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint(
            "subaccount_id",
            "recipient_key",
            name=op.f("uq_suppressions_subaccount_id_recipient_key"),
        ),
    )
    op.create_table(
        "ip_pools",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column("sequence", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_ip_pools_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_pools")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_ip_pools_account_id_name")),
    )
    op.create_table(
        "sender_domains",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("selector", sa.String(length=63), nullable=False),
        sa.Column("dkim_algorithm", sa.String(length=16), nullable=False),
        sa.Column("dkim_private_key", sa.Text(), nullable=False),
        sa.Column("dkim_public_key", sa.Text(), nullable=False),
        sa.Column("dkim_verified", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("return_path_verified", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_checked_at", UTCDateTime(), nullable=True),
        sa.Column("last_check", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_sender_domains_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sender_domains")),
        sa.UniqueConstraint(
            "account_id", "domain", name=op.f("uq_sender_domains_account_id_domain")
        ),
    )
    op.create_table(
        "ip_pool_members",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("pool_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        sa.Column("mailbox_providers", sa.JSON(), nullable=True),
        sa.Column("sending_domains", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["ip_pools.id"], name=op.f("fk_ip_pool_members_pool_id_ip_pools")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["custom_smtp_providers.id"],
            name=op.f("fk_ip_pool_members_provider_id_custom_smtp_providers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_pool_members")),
    )
    with op.batch_alter_table("ip_pool_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ip_pool_members_pool_id"), ["pool_id"], unique=False)

    op.create_table(
        "relay_queue",
        sa.Column("message_uuid", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("domain_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("last_code", sa.Integer(), nullable=True),
        sa.Column("last_reply", sa.Text(), nullable=True),
        sa.Column("submitted_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["sender_domains.id"],
            name=op.f("fk_relay_queue_domain_id_sender_domains"),
        ),
        sa.ForeignKeyConstraint(
            ["message_uuid"], ["messages.uuid"], name=op.f("fk_relay_queue_message_uuid_messages")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["custom_smtp_providers.id"],
            name=op.f("fk_relay_queue_provider_id_custom_smtp_providers"),
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["send_requests.id"],
            name=op.f("fk_relay_queue_request_id_send_requests"),
        ),
        sa.PrimaryKeyConstraint("message_uuid", name=op.f("pk_relay_queue")),
    )
    with op.batch_alter_table("relay_queue", schema=None) as batch_op:
        batch_op.create_index(
            "ix_relay_queue_due",
            ["provider_id", "next_attempt_at"],
            unique=False,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("relay_queue", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_relay_queue_due",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )

    op.drop_table("relay_queue")
    with op.batch_alter_table("ip_pool_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ip_pool_members_pool_id"))

    op.drop_table("ip_pool_members")
    op.drop_table("sender_domains")
    op.drop_table("ip_pools")
    op.drop_table("suppressions")
    op.drop_table("send_requests")
    with op.batch_alter_table("relay_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_relay_attempts_provider_id_started_at"))
        batch_op.drop_index(batch_op.f("ix_relay_attempts_message_uuid"))

    op.drop_table("relay_attempts")
