"""``GET /api/v1/events``: the account's stored events, filtered, newest first, paginated.

Query parameters: ``providerId``, ``type`` (repeatable; an ID 58–68 or a name such as
``CSDelivered``), ``from`` / ``to`` (RFC 3339; ``from`` inclusive, ``to`` exclusive, on the
time the event occurred), ``subAccountId``, ``messageId``, ``recipient``, ``limit`` (1–500,
default 100) and ``cursor`` (opaque, from the previous page's ``nextCursor``). The answer is
``{"data": [event...], "nextCursor": str | null}``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sendpost_wire import EventType
from sendpost_wire.schema import format_timestamp, parse_timestamp

from sendpost_platform.api.auth import AccountDep
from sendpost_platform.api.deps import ContextDep
from sendpost_platform.errors import BadRequest
from sendpost_platform.store import events as event_store

router = APIRouter(tags=["events"])


def encode_cursor(position: event_store.Position) -> str:
    raw = json.dumps([format_timestamp(position.occurred_at), position.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> event_store.Position:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        when, event_id = json.loads(raw)
        occurred = parse_timestamp(when)
        if occurred is None or not isinstance(event_id, int) or isinstance(event_id, bool):
            raise ValueError("bad cursor")
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest(
            "invalid cursor", errors=[{"field": "query.cursor", "message": "not a cursor"}]
        ) from None
    return event_store.Position(occurred, event_id)


def parse_types(values: list[str]) -> list[int]:
    out: list[int] = []
    for value in values:
        try:
            out.append(int(EventType(int(value))) if value.isdigit() else int(EventType[value]))
        except (KeyError, ValueError):
            raise BadRequest(
                "unknown event type",
                errors=[{"field": "query.type", "message": f"unknown event type {value!r}"}],
            ) from None
    return out


def _time(value: str | None, field: str) -> dt.datetime | None:
    if value is None:
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        raise BadRequest(
            "invalid time", errors=[{"field": f"query.{field}", "message": "not RFC 3339"}]
        )
    return parsed


def event_json(row: dict[str, Any]) -> dict[str, Any]:
    event_type = EventType(row["event_type"])
    return {
        "id": row["id"],
        "messageId": row["message_uuid"],
        "type": int(event_type),
        "typeName": event_type.name,
        "accountId": row["account_id"],
        "subAccountId": row["subaccount_id"],
        "providerId": row["provider_id"],
        "recipient": row["recipient"],
        "occurredAt": format_timestamp(row["occurred_at"]),
        "receivedAt": format_timestamp(row["received_at"]),
        "smtpCode": row["smtp_code"],
        "enhancedStatus": row["enhanced_status"],
        "smtpCommand": row["smtp_command"],
        "reason": row["reason"],
        "description": row["description"],
        "source": row["source"],
        "details": row["details"] or {},
    }


@router.get("/api/v1/events", summary="List events, newest first")
def list_events(
    ctx: ContextDep,
    account: AccountDep,
    provider_id: Annotated[int | None, Query(alias="providerId", ge=1, le=2**62)] = None,
    types: Annotated[list[str] | None, Query(alias="type")] = None,
    since: Annotated[str | None, Query(alias="from")] = None,
    until: Annotated[str | None, Query(alias="to")] = None,
    subaccount_id: Annotated[int | None, Query(alias="subAccountId", ge=1, le=2**62)] = None,
    message_id: Annotated[uuid.UUID | None, Query(alias="messageId")] = None,
    recipient: Annotated[str | None, Query(max_length=320)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    where = event_store.EventFilter(
        account_id=account.id,
        provider_id=provider_id,
        event_types=parse_types(types or []),
        subaccount_id=subaccount_id,
        message_uuid=str(message_id) if message_id else None,
        recipient=recipient,
        since=_time(since, "from"),
        until=_time(until, "to"),
    )
    after = decode_cursor(cursor) if cursor else None
    with ctx.store.read() as conn:
        rows, position = event_store.list_events(conn, where, limit=limit, after=after)
    return {
        "data": [event_json(r) for r in rows],
        "nextCursor": encode_cursor(position) if position else None,
    }
