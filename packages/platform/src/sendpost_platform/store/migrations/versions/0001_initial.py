"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 03:56:29.308282
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sendpost_platform.store.dialect import BigId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_accounts_key_hash")),
    )
    op.create_table(
        "counters",
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("provider_id", "name", name=op.f("pk_counters")),
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("message_uuid", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("subaccount_id", sa.BigInteger(), nullable=True),
        sa.Column("provider_id", sa.BigInteger(), nullable=True),
        sa.Column("event_type", sa.SmallInteger(), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("recipient_key", sa.String(length=320), nullable=False),
        sa.Column("dedup_slot", sa.String(length=16), nullable=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("enhanced_status", sa.String(length=16), nullable=True),
        sa.Column("smtp_command", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("agent_event_id", sa.String(length=200), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint(
            "message_uuid",
            "recipient_key",
            "dedup_slot",
            name=op.f("uq_events_message_uuid_recipient_key_dedup_slot"),
        ),
    )
    op.create_index(
        op.f("ix_events_account_id_occurred_at_id"),
        "events",
        ["account_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_index(op.f("ix_events_message_uuid"), "events", ["message_uuid"], unique=False)

    op.create_table(
        "ingest_batches",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_batches")),
    )
    op.create_index(
        "ix_ingest_batches_pending",
        "ingest_batches",
        ["id"],
        unique=False,
        sqlite_where=sa.text("processed_at IS NULL"),
        postgresql_where=sa.text("processed_at IS NULL"),
    )

    op.create_table(
        "custom_smtp_providers",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("security", sa.String(length=16), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("password_encrypted", sa.Text(), nullable=True),
        sa.Column("test_from", sa.String(length=320), nullable=False),
        sa.Column("test_to", sa.String(length=320), nullable=False),
        sa.Column("max_rate_per_hour", sa.Integer(), server_default="100", nullable=False),
        sa.Column("verify_certificate", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.Column("agent_last_seen_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_custom_smtp_providers_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_smtp_providers")),
    )
    op.create_index(
        op.f("ix_custom_smtp_providers_account_id"),
        "custom_smtp_providers",
        ["account_id"],
        unique=False,
    )

    op.create_table(
        "subaccounts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_subaccounts_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subaccounts")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_subaccounts_key_hash")),
    )
    op.create_index(op.f("ix_subaccounts_account_id"), "subaccounts", ["account_id"], unique=False)

    op.create_table(
        "messages",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("subaccount_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_messages_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["custom_smtp_providers.id"],
            name=op.f("fk_messages_provider_id_custom_smtp_providers"),
        ),
        sa.ForeignKeyConstraint(
            ["subaccount_id"],
            ["subaccounts.id"],
            name=op.f("fk_messages_subaccount_id_subaccounts"),
        ),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_messages")),
    )
    op.create_index(
        op.f("ix_messages_account_id_created_at"),
        "messages",
        ["account_id", "created_at"],
        unique=False,
    )

    op.create_table(
        "provider_ingest_keys",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["custom_smtp_providers.id"],
            name=op.f("fk_provider_ingest_keys_provider_id_custom_smtp_providers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_ingest_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_provider_ingest_keys_key_hash")),
    )
    op.create_index(
        op.f("ix_provider_ingest_keys_provider_id"),
        "provider_ingest_keys",
        ["provider_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_provider_ingest_keys_provider_id"), table_name="provider_ingest_keys")

    op.drop_table("provider_ingest_keys")
    op.drop_index(op.f("ix_messages_account_id_created_at"), table_name="messages")

    op.drop_table("messages")
    op.drop_index(op.f("ix_subaccounts_account_id"), table_name="subaccounts")

    op.drop_table("subaccounts")
    op.drop_index(op.f("ix_custom_smtp_providers_account_id"), table_name="custom_smtp_providers")

    op.drop_table("custom_smtp_providers")
    op.drop_index(
        "ix_ingest_batches_pending",
        table_name="ingest_batches",
        sqlite_where=sa.text("processed_at IS NULL"),
        postgresql_where=sa.text("processed_at IS NULL"),
    )

    op.drop_table("ingest_batches")
    op.drop_index(op.f("ix_events_message_uuid"), table_name="events")
    op.drop_index(op.f("ix_events_account_id_occurred_at_id"), table_name="events")

    op.drop_table("events")
    op.drop_table("counters")
    op.drop_table("accounts")
