"""Messages: one row per (message UUID, recipient), filled by sending, read by processing.

``state`` values used so far: ``queued`` (accepted, waiting for relay), ``sent`` (the provider
answered 2xx), ``dropped``; sending may add more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid as uuid_mod
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.store.dialect import among
from sendpost_platform.store.schema import messages


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    uuid: str
    account_id: int
    subaccount_id: int
    provider_id: int | None
    recipient: str
    sender: str
    state: str


_COLUMNS = [messages.c[f.name] for f in dataclasses.fields(Message)]


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
) -> Message:
    message = Message(
        uuid=message_uuid or str(uuid_mod.uuid4()),
        account_id=account_id,
        subaccount_id=subaccount_id,
        provider_id=provider_id,
        recipient=recipient,
        sender=sender,
        state=state,
    )
    conn.execute(
        sa.insert(messages).values(**dataclasses.asdict(message), created_at=now, updated_at=now)
    )
    return message


def get_message(conn: Connection, message_uuid: str) -> Message | None:
    row = conn.execute(sa.select(*_COLUMNS).where(messages.c.uuid == message_uuid)).first()
    return None if row is None else Message(*row)


def get_messages(conn: Connection, uuids: Iterable[str]) -> dict[str, Message]:
    """The messages among ``uuids`` that exist, by UUID."""
    wanted = sorted(set(uuids))
    found: dict[str, Message] = {}
    if conn.dialect.name == "postgresql" and wanted:
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
