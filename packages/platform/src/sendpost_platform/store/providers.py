"""Custom SMTP providers and their event-ingestion keys (store level).

The HTTP API (``api/providers.py``) runs the SMTP test and encrypts passwords; this module only
stores what it is given. Ingestion keys: a provider has one current key (``expires_at`` NULL);
:func:`rotate_ingest_key` gives the old ones an expiry at the end of the grace period. Deleting a
provider (soft: ``deleted_at``) makes every key of it stop working at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform import keys
from sendpost_platform.store.schema import custom_smtp_providers as providers
from sendpost_platform.store.schema import provider_ingest_keys as ingest_keys

AGENT_SEEN_RESOLUTION = dt.timedelta(seconds=1)
"""``agent_last_seen_at`` is rewritten at most this often, so concurrent ingestion requests of one
provider do not all queue on its row lock."""

UPDATABLE = frozenset(
    {
        "name",
        "host",
        "port",
        "security",
        "username",
        "password_encrypted",
        "test_from",
        "test_to",
        "max_rate_per_hour",
        "verify_certificate",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class Provider:
    id: int
    account_id: int
    name: str
    host: str
    port: int
    security: str
    username: str | None
    password_encrypted: str | None
    test_from: str
    test_to: str
    max_rate_per_hour: int
    verify_certificate: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None
    agent_last_seen_at: dt.datetime | None
    agent_report: dict[str, Any] | None
    agent_report_at: dt.datetime | None
    agent_key_rejected_at: dt.datetime | None


def _provider(row: Any) -> Provider:
    return Provider(**{f.name: row._mapping[f.name] for f in dataclasses.fields(Provider)})


def create_provider(
    conn: Connection,
    *,
    account_id: int,
    name: str,
    host: str,
    port: int,
    security: str,
    test_from: str,
    test_to: str,
    now: dt.datetime,
    username: str | None = None,
    password_encrypted: str | None = None,
    max_rate_per_hour: int = 100,
    verify_certificate: bool = True,
) -> tuple[Provider, str]:
    """Insert a provider and its first ingestion key; returns the provider and the plain key."""
    row = conn.execute(
        sa.insert(providers)
        .values(
            account_id=account_id,
            name=name,
            host=host,
            port=port,
            security=security,
            username=username,
            password_encrypted=password_encrypted,
            test_from=test_from,
            test_to=test_to,
            max_rate_per_hour=max_rate_per_hour,
            verify_certificate=verify_certificate,
            created_at=now,
            updated_at=now,
        )
        .returning(*providers.c)
    ).one()
    provider = _provider(row)
    return provider, _add_key(conn, provider.id, now)


def _add_key(conn: Connection, provider_id: int, now: dt.datetime) -> str:
    key = keys.generate_key(keys.INGEST_PREFIX)
    conn.execute(
        sa.insert(ingest_keys).values(
            provider_id=provider_id, key_hash=keys.hash_key(key), created_at=now, expires_at=None
        )
    )
    return key


def get_provider(conn: Connection, *, account_id: int, provider_id: int) -> Provider | None:
    """The account's provider, or None when missing, deleted or someone else's."""
    row = conn.execute(
        sa.select(providers).where(
            providers.c.id == provider_id,
            providers.c.account_id == account_id,
            providers.c.deleted_at.is_(None),
        )
    ).first()
    return None if row is None else _provider(row)


def get_provider_by_id(conn: Connection, provider_id: int) -> Provider | None:
    """Any provider by ID, deleted ones included (for the relay and processing)."""
    row = conn.execute(sa.select(providers).where(providers.c.id == provider_id)).first()
    return None if row is None else _provider(row)


def list_providers(conn: Connection, *, account_id: int) -> list[Provider]:
    rows = conn.execute(
        sa.select(providers)
        .where(providers.c.account_id == account_id, providers.c.deleted_at.is_(None))
        .order_by(providers.c.id)
    )
    return [_provider(r) for r in rows]


def update_provider(
    conn: Connection,
    *,
    account_id: int,
    provider_id: int,
    changes: Mapping[str, Any],
    now: dt.datetime,
) -> Provider | None:
    """Apply ``changes`` (columns from :data:`UPDATABLE`); None when the provider is not found."""
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    row = conn.execute(
        sa.update(providers)
        .where(
            providers.c.id == provider_id,
            providers.c.account_id == account_id,
            providers.c.deleted_at.is_(None),
        )
        .values(**changes, updated_at=now)
        .returning(*providers.c)
    ).first()
    return None if row is None else _provider(row)


def delete_provider(
    conn: Connection, *, account_id: int, provider_id: int, now: dt.datetime
) -> bool:
    """Soft-delete; its ingestion keys stop working immediately. False when not found."""
    result = conn.execute(
        sa.update(providers)
        .where(
            providers.c.id == provider_id,
            providers.c.account_id == account_id,
            providers.c.deleted_at.is_(None),
        )
        .values(deleted_at=now, updated_at=now)
    )
    if result.rowcount == 0:
        return False
    conn.execute(
        sa.update(ingest_keys)
        .where(
            ingest_keys.c.provider_id == provider_id,
            sa.or_(ingest_keys.c.expires_at.is_(None), ingest_keys.c.expires_at > now),
        )
        .values(expires_at=now)
    )
    return True


def rotate_ingest_key(
    conn: Connection, *, provider_id: int, now: dt.datetime, grace: dt.timedelta
) -> str:
    """A new current key. The key it replaces keeps working until ``now + grace`` (so the
    agent can be given the new one); keys rotated out earlier stop at once: rotating again
    is what an operator does after a leak, and must not leave the leaked key alive.
    Returns the new key."""
    conn.execute(
        sa.update(ingest_keys)
        .where(ingest_keys.c.provider_id == provider_id, ingest_keys.c.expires_at > now)
        .values(expires_at=now)
    )
    conn.execute(
        sa.update(ingest_keys)
        .where(ingest_keys.c.provider_id == provider_id, ingest_keys.c.expires_at.is_(None))
        .values(expires_at=now + grace)
    )
    return _add_key(conn, provider_id, now)


def provider_id_for_ingest_key(conn: Connection, key: str, *, now: dt.datetime) -> int | None:
    """The provider a working ingestion key belongs to (current or in its grace period)."""
    return conn.execute(
        sa.select(ingest_keys.c.provider_id)
        .join(providers, providers.c.id == ingest_keys.c.provider_id)
        .where(
            ingest_keys.c.key_hash == keys.hash_key(key),
            sa.or_(ingest_keys.c.expires_at.is_(None), ingest_keys.c.expires_at > now),
            providers.c.deleted_at.is_(None),
        )
    ).scalar()


def touch_agent_seen(conn: Connection, provider_id: int, now: dt.datetime) -> None:
    """Record that the provider's agent was heard from (at most once per second)."""
    conn.execute(
        sa.update(providers)
        .where(
            providers.c.id == provider_id,
            sa.or_(
                providers.c.agent_last_seen_at.is_(None),
                providers.c.agent_last_seen_at <= now - AGENT_SEEN_RESOLUTION,
            ),
        )
        .values(agent_last_seen_at=now)
    )


def record_heartbeat(
    conn: Connection, provider_id: int, report: Mapping[str, Any], now: dt.datetime
) -> None:
    """Keep the agent's latest heartbeat; the agent was seen now."""
    conn.execute(
        sa.update(providers)
        .where(providers.c.id == provider_id)
        .values(agent_report=dict(report), agent_report_at=now, agent_last_seen_at=now)
    )


KEY_REJECTED_RESOLUTION = dt.timedelta(minutes=1)


def record_key_rejected(conn: Connection, key_hash: str, now: dt.datetime) -> int | None:
    """If ``key_hash`` is an expired or revoked key of a live provider, note that it was just
    presented (at most once a minute) and return the provider's ID; None for unknown keys."""
    provider_id = conn.execute(
        sa.select(ingest_keys.c.provider_id)
        .join(providers, providers.c.id == ingest_keys.c.provider_id)
        .where(
            ingest_keys.c.key_hash == key_hash,
            ingest_keys.c.expires_at <= now,
            providers.c.deleted_at.is_(None),
        )
        .limit(1)
    ).scalar()
    if provider_id is None:
        return None
    conn.execute(
        sa.update(providers)
        .where(
            providers.c.id == provider_id,
            sa.or_(
                providers.c.agent_key_rejected_at.is_(None),
                providers.c.agent_key_rejected_at <= now - KEY_REJECTED_RESOLUTION,
            ),
        )
        .values(agent_key_rejected_at=now)
    )
    return int(provider_id)
