"""Messages: one row per (message UUID, recipient), filled by sending, read by processing.

``state`` values used so far: ``queued`` (accepted, waiting for relay), ``sent`` (the provider
answered 2xx), ``dropped``; sending may add more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid as uuid_mod
from collections.abc import Iterable
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.store.dialect import among
from sendpost_platform.store.schema import messages


class Message(NamedTuple):
    """A message as processing and the recorder read it (a named tuple: immutable, and cheap
    to build from a row; a claim of batches reads thousands)."""

    uuid: str
    account_id: int
    subaccount_id: int
    provider_id: int | None
    recipient: str
    sender: str
    state: str
    created_at: dt.datetime | None = None
    """When the message was accepted (``events.partition_at`` of its slotted events)."""
    webhook_endpoint: str | None = None
    """The send request's own ``webhookEndpoint`` (a consumer of its events)."""


_COLUMNS = [messages.c[name] for name in Message._fields]
_BY_UUIDS_PG = (
    f"SELECT {', '.join(c.name for c in _COLUMNS)} FROM messages"  # noqa: S608 (schema names)
    " WHERE uuid = ANY(string_to_array(%s, ','))"
)


def insert_message(
    conn: Connection,
    *,
    account_id: int,
    subaccount_id: int,
    recipient: str,
    sender: str,
    now: dt.datetime,
    provider_id: int | None = None,
    state: str = "queued",
    message_uuid: str | None = None,
    groups: list[str] | None = None,
    webhook_endpoint: str | None = None,
) -> Message:
    """A new message row; ``groups`` (the send request's tags) and ``webhook_endpoint`` are
    stored on the row for the events API and the webhook dispatcher (see :func:`send_details`)."""
    message = Message(
        uuid=message_uuid or str(uuid_mod.uuid4()),
        account_id=account_id,
        subaccount_id=subaccount_id,
        provider_id=provider_id,
        recipient=recipient,
        sender=sender,
        state=state,
        created_at=now,
        webhook_endpoint=webhook_endpoint,
    )
    conn.execute(sa.insert(messages).values(**message._asdict(), updated_at=now, groups=groups))
    return message


@dataclasses.dataclass(frozen=True, slots=True)
class SendDetails:
    groups: list[str]
    webhook_endpoint: str | None


def send_details(conn: Connection, message_uuid: str) -> SendDetails | None:
    """The send request's ``groups`` and ``webhookEndpoint`` stored on a message."""
    row = conn.execute(
        sa.select(messages.c.groups, messages.c.webhook_endpoint).where(
            messages.c.uuid == message_uuid
        )
    ).first()
    if row is None:
        return None
    return SendDetails(list(row.groups or []), row.webhook_endpoint)


def get_message(conn: Connection, message_uuid: str) -> Message | None:
    row = conn.execute(sa.select(*_COLUMNS).where(messages.c.uuid == message_uuid)).first()
    return None if row is None else Message(*row)


def get_messages(conn: Connection, uuids: Iterable[str]) -> dict[str, Message]:
    """The messages among ``uuids`` that exist, by UUID."""
    wanted = sorted(set(uuids))
    found: dict[str, Message] = {}
    if conn.dialect.name == "postgresql" and wanted:
        if not any("," in uuid for uuid in wanted):
            # The hot path of processing (a claim's thousands of messages): the UUIDs as one
            # string the server splits, the rows as psycopg's tuples, which costs the client a
            # fraction of an array parameter and SQLAlchemy's result rows.
            with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
                cursor.execute(_BY_UUIDS_PG, (",".join(wanted),))
                return {row[0]: Message(*row) for row in cursor.fetchall()}
        query = sa.select(*_COLUMNS).where(among(conn, messages.c.uuid, wanted))
        return {row.uuid: Message(*row) for row in conn.execute(query)}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for row in conn.execute(sa.select(*_COLUMNS).where(messages.c.uuid.in_(chunk))):
            found[row.uuid] = Message(*row)
    return found


def set_message_provider(
    conn: Connection, message_uuid: str, *, provider_id: int, state: str, now: dt.datetime
) -> None:
    conn.execute(
        sa.update(messages)
        .where(messages.c.uuid == message_uuid)
        .values(provider_id=provider_id, state=state, updated_at=now)
    )
