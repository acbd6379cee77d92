"""The platform's tables (SQLAlchemy Core). Migrations in ``migrations/versions`` create them.

Conventions: integer surrogate keys (``BigId``), message UUIDs as 36-character strings, every
timestamp a :class:`~sendpost_platform.store.dialect.UTCDateTime`, keys stored only as SHA-256 hex.

Adding tables or columns (e.g. for sending): define them here, in a section of your own at the
end, against the same ``metadata``, and write a migration whose ``down_revision`` is the current
head. ``tests/platform/core/test_store.py`` checks that the migrations produce exactly this
schema. One documented exception, PostgreSQL only (migration ``0013_partitions``): ``events`` and
``ingest_batches`` are range-partitioned by day, their primary keys include the partition column
(``(id, partition_at)``, ``(id, received_at)``), and their partitions are tables of their own.

Deduplication is enforced by the database: ``events`` has a unique index on
``(message_uuid, recipient_key, dedup_slot, partition_at)``, where ``partition_at`` is the same
for every slotted event of a message (its creation time, see ``store/partitions.py``), so it is
unique on ``(message_uuid, recipient_key, dedup_slot)``. ``dedup_slot`` is ``"delivered"`` for
CSDelivered and ``"bounce"`` for CSHardBounced/CSSoftBounced (one terminal bounce per recipient),
NULL for event kinds that may repeat (NULLs never clash). ``recipient_key`` is the lower-cased
recipient ("" when unknown).
"""

from __future__ import annotations

import sqlalchemy as sa

from sendpost_platform.store.dialect import BigId, UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

subaccounts = sa.Table(
    "subaccounts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Set when deleted over the API (its messages and events stay; its key stops working).
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sa.Index(None, "account_id"),
)

custom_smtp_providers = sa.Table(
    "custom_smtp_providers",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("security", sa.String(16), nullable=False),
    sa.Column("username", sa.String(255), nullable=True),
    sa.Column("password_encrypted", sa.Text, nullable=True),
    sa.Column("test_from", sa.String(320), nullable=False),
    sa.Column("test_to", sa.String(320), nullable=False),
    sa.Column("max_rate_per_hour", sa.Integer, nullable=False, server_default="100"),
    sa.Column("verify_certificate", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sa.Column("agent_last_seen_at", UTCDateTime, nullable=True),
    # The agent's last heartbeat (sendpost_wire.heartbeat, as sent) and when it came; when a
    # key of this provider that no longer works was last presented.
    sa.Column("agent_report", sa.JSON, nullable=True),
    sa.Column("agent_report_at", UTCDateTime, nullable=True),
    sa.Column("agent_key_rejected_at", UTCDateTime, nullable=True),
    sa.Index(None, "account_id"),
)

provider_ingest_keys = sa.Table(
    "provider_ingest_keys",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "provider_id", sa.BigInteger, sa.ForeignKey("custom_smtp_providers.id"), nullable=False
    ),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # NULL: the provider's current key. Set on rotation to the end of the grace period.
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Index(None, "provider_id"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("subaccount_id", sa.BigInteger, sa.ForeignKey("subaccounts.id"), nullable=False),
    # NULL until the message is routed to a provider.
    sa.Column(
        "provider_id", sa.BigInteger, sa.ForeignKey("custom_smtp_providers.id"), nullable=True
    ),
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("sender", sa.String(320), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # The send request's ``groups`` (a JSON list of strings, the message's tags; NULL: none).
    sa.Column("groups", sa.JSON, nullable=True),
    # The send request's ``webhookEndpoint`` (an http(s) URL checked by the egress guard; NULL:
    # the account's webhooks only), read by the webhook dispatcher.
    sa.Column("webhook_endpoint", sa.Text, nullable=True),
    sa.Index(None, "account_id", "created_at"),
)

ingest_batches = sa.Table(
    "ingest_batches",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("provider_id", sa.BigInteger, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("event_count", sa.Integer, nullable=False),
    # The request body exactly as received (validated JSON).
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("processed_at", UTCDateTime, nullable=True),
    # Set when the batch could not be processed (it is then dead-lettered: processed_at set too).
    sa.Column("error", sa.Text, nullable=True),
    sa.Index(
        "ix_ingest_batches_pending",
        "id",
        sqlite_where=sa.text("processed_at IS NULL"),
        postgresql_where=sa.text("processed_at IS NULL"),
    ),
    # The fair claim's skip scan over providers with pending batches (store/ingest.py).
    sa.Index(
        "ix_ingest_batches_pending_provider",
        "provider_id",
        "id",
        sqlite_where=sa.text("processed_at IS NULL"),
        postgresql_where=sa.text("processed_at IS NULL"),
    ),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("message_uuid", sa.String(36), nullable=False),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("subaccount_id", sa.BigInteger, nullable=True),
    sa.Column("provider_id", sa.BigInteger, nullable=True),
    sa.Column("event_type", sa.SmallInteger, nullable=False),
    sa.Column("recipient", sa.String(320), nullable=True),
    sa.Column("recipient_key", sa.String(320), nullable=False),
    sa.Column("dedup_slot", sa.String(16), nullable=True),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("smtp_code", sa.Integer, nullable=True),
    sa.Column("enhanced_status", sa.String(16), nullable=True),
    sa.Column("smtp_command", sa.String(64), nullable=True),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("agent_event_id", sa.String(200), nullable=True),
    sa.Column("details", sa.JSON, nullable=True),
    # The time the row is partitioned by on PostgreSQL (store/partitions.py): the message's
    # creation for events with a dedup slot, ``occurred_at`` for the others.
    sa.Column("partition_at", UTCDateTime, nullable=False),
    # The unique index also serves lookups by message (it starts with ``message_uuid``).
    sa.UniqueConstraint("message_uuid", "recipient_key", "dedup_slot", "partition_at"),
    sa.Index(None, "account_id", "occurred_at", "id"),
)

counters = sa.Table(
    "counters",
    metadata,
    # 0 for counters that belong to no provider.
    sa.Column("provider_id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

# --- sending (issue 5): domains, pools, relay queue, suppressions — add below ------------------

sender_domains = sa.Table(
    "sender_domains",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("domain", sa.String(253), nullable=False),
    sa.Column("selector", sa.String(63), nullable=False),
    sa.Column("dkim_algorithm", sa.String(16), nullable=False),
    # The private key as dkimpy takes it, encrypted with the platform secret (see api/domains.py).
    sa.Column("dkim_private_key", sa.Text, nullable=False),
    sa.Column("dkim_public_key", sa.Text, nullable=False),
    sa.Column("dkim_verified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("return_path_verified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_checked_at", UTCDateTime, nullable=True),
    sa.Column("last_check", sa.JSON, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("account_id", "domain"),
)

ip_pools = sa.Table(
    "ip_pools",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("strategy", sa.String(32), nullable=False),
    # Routing counter: incremented per routed message, drives the deterministic strategies.
    sa.Column("sequence", sa.BigInteger, nullable=False, server_default="0"),
    # SendPost's overflow: when no provider of this pool is live, route through the pool named
    # here (api/pools.py).
    sa.Column("should_overflow", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("overflow_pool_name", sa.String(200), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("account_id", "name"),
)

ip_pool_members = sa.Table(
    "ip_pool_members",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("pool_id", sa.BigInteger, sa.ForeignKey("ip_pools.id"), nullable=False),
    sa.Column(
        "provider_id", sa.BigInteger, sa.ForeignKey("custom_smtp_providers.id"), nullable=False
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("weight", sa.Integer, nullable=False, server_default="1"),
    sa.Column("mailbox_providers", sa.JSON, nullable=True),
    sa.Column("sending_domains", sa.JSON, nullable=True),
    sa.Index(None, "pool_id"),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("subaccount_id", sa.BigInteger, nullable=False),
    sa.Column("recipient_key", sa.String(320), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("message_uuid", sa.String(36), nullable=True),
    # The receiving server's reply, for hard-bounce suppressions.
    sa.Column("smtp_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("subaccount_id", "recipient_key"),
    sa.Index(None, "subaccount_id", "created_at"),
)

send_requests = sa.Table(
    "send_requests",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("subaccount_id", sa.BigInteger, nullable=False),
    # The validated request (from, to, cc, subject, bodies, headers, tracking flags), shared by
    # the messages it produced.
    sa.Column("content", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

relay_queue = sa.Table(
    "relay_queue",
    metadata,
    sa.Column("message_uuid", sa.String(36), sa.ForeignKey("messages.uuid"), primary_key=True),
    sa.Column("request_id", sa.BigInteger, sa.ForeignKey("send_requests.id"), nullable=False),
    sa.Column(
        "provider_id", sa.BigInteger, sa.ForeignKey("custom_smtp_providers.id"), nullable=False
    ),
    sa.Column("domain_id", sa.BigInteger, sa.ForeignKey("sender_domains.id"), nullable=False),
    # pending → done (sent or dropped); only pending rows are ever claimed.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Column("last_code", sa.Integer, nullable=True),
    sa.Column("last_reply", sa.Text, nullable=True),
    sa.Column("submitted_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(
        "ix_relay_queue_due",
        "provider_id",
        "next_attempt_at",
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    ),
)

relay_attempts = sa.Table(
    "relay_attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("provider_id", sa.BigInteger, nullable=False),
    sa.Column("message_uuid", sa.String(36), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    # A send slot is taken (for maxRatePerHour) when the message is claimed.
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("ok", sa.Boolean, nullable=True),
    sa.Column("smtp_code", sa.Integer, nullable=True),
    sa.Column("reply", sa.Text, nullable=True),
    sa.Index(None, "provider_id", "started_at"),
    sa.Index(None, "message_uuid"),
)

# --- bounce processor: inbound messages that were not parseable bounces ------------------------

unparsed_bounces = sa.Table(
    "unparsed_bounces",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    # The message the envelope address named (authoritative), and the addresses themselves.
    sa.Column("message_uuid", sa.String(36), nullable=True),
    sa.Column("provider_id", sa.BigInteger, nullable=True),
    sa.Column("envelope_from", sa.String(320), nullable=False),
    sa.Column("envelope_to", sa.JSON, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    # The message exactly as received, kept for an operator to read.
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Index(None, "received_at"),
)


# --- dashboard sessions ended by sign-out (kept until they would have expired anyway) -----------

dashboard_signouts = sa.Table(
    "dashboard_signouts",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Index(None, "expires_at"),
)


# --- ingestion dead letters: events (or whole batches) that processing could not store ----------

ingest_dead_letters = sa.Table(
    "ingest_dead_letters",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.BigInteger, nullable=False),
    sa.Column("provider_id", sa.BigInteger, nullable=False),
    # The event's index in the batch; NULL when the whole batch could not be read.
    sa.Column("event_index", sa.Integer, nullable=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("dead_lettered_at", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    # The event as ASCII JSON (the whole body when event_index is NULL), for an operator to read.
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Index(None, "batch_id"),
    sa.Index(None, "dead_lettered_at"),
)

# --- send API: idempotency keys (a retried request answers as the first did) -------------------

send_idempotency = sa.Table(
    "send_idempotency",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("subaccount_id", sa.BigInteger, nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    # SHA-256 of the request body: the same key with another request is refused.
    sa.Column("request_digest", sa.String(64), nullable=False),
    sa.Column("response", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("subaccount_id", "key"),
    sa.Index(None, "created_at"),
)

# --- event outbox: one row per stored event per consumer, written in the event's transaction ---
# A consumer (``webhooks`` today) claims its rows in ``id`` order, hands the events on, and
# deletes the rows it is done with. Because the row commits with the event, a consumer can
# neither miss an event nor see one whose transaction rolled back.

event_outbox = sa.Table(
    "event_outbox",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("consumer", sa.String(32), nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("message_uuid", sa.String(36), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "consumer", "id"),
)

# --- send API: templates (subject, HTML and text with {{placeholders}}) per sub-account ------

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("subaccount_id", sa.BigInteger, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("html_body", sa.Text, nullable=True),
    sa.Column("text_body", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("subaccount_id", "name"),
)

# --- webhooks (issue 13): SendPost's webhook objects and their delivery queue -------------------
# The dispatcher (``webhook_dispatch.py``) turns ``event_outbox`` rows of consumer ``webhooks``
# into ``webhook_deliveries`` (one per matching webhook, and one for the message's own
# ``webhookEndpoint``), deleting the outbox rows in the same transaction. See docs/webhooks.md.

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    # The switches, by their SendPost names ({"delivered": true, "uniqueOpen": false, ...}).
    sa.Column("switches", sa.JSON, nullable=False),
    # The signing secret, sealed with the platform secret (crypto.SecretBox, purpose "webhook").
    sa.Column("secret_encrypted", sa.Text, nullable=False),
    # active | degraded | disabled (domain/webhooks.py: health rules).
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("failure_streak", sa.Integer, nullable=False, server_default="0"),
    sa.Column("disabled_at", UTCDateTime, nullable=True),
    sa.Column("disabled_reason", sa.Text, nullable=True),
    sa.Column("delivered_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("failed_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(None, "account_id"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # NULL: the message's own webhookEndpoint (``url`` is then set).
    sa.Column("webhook_id", sa.BigInteger, nullable=True),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("url", sa.String(2048), nullable=True),
    # Deliveries of one message to one target go in id order: "w{webhook_id}" or "m".
    sa.Column("target", sa.String(32), nullable=False),
    sa.Column("message_uuid", sa.String(36), nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    # The payload's eventId, and the payload exactly as every attempt sends it.
    sa.Column("event_key", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    # pending → done (2xx) | failed (retries exhausted); only pending rows are claimed.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    # When the event's transaction committed its outbox row (commit → receipt latency).
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        "id",
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    ),
    sa.Index(
        "ix_webhook_deliveries_order",
        "target",
        "message_uuid",
        "id",
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    ),
    sa.Index(None, "webhook_id", "status"),
)
