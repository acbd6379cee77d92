"""Messages at SendPost's paths (``X-Account-ApiKey``): what was sent, to whom, how.

SendPost's ``MessageApi``:

- ``GET /api/v1/account/message/{message_id}`` → ``Message``: one recipient's message (each
  recipient of a send request is its own message, with the ``messageId`` the send answered).
- ``GET /api/v1/account/message?from=...&to=...`` (ISO 8601 timestamps, a time without offset
  is UTC; at most 60 days apart; ``limit`` default 50, at most 100; ``offset``) → ``[Message]``
  created in that range, oldest first.

A message the platform dropped at once (suppressed, invalid, no verified return path) kept no
content: it answers ``from``, ``to`` and ``submittedAt`` only. ``publicIp`` and ``emailType``
are not known here (the customer's own server sends), so they are left out; ``ipPool`` is the
pool named in the send request. The answers add ``state`` (``queued``, ``sent``, ``dropped``)
and ``tpspId`` (the Custom SMTP provider it was routed to).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field

from sendpost_platform.api.auth import AccountDep
from sendpost_platform.api.deps import ContextDep, PageOffset
from sendpost_platform.api.sendpost import ResponseModel, SendPostRoute, nanos
from sendpost_platform.domain.addresses import Mailbox
from sendpost_platform.domain.suppression import normalize_address
from sendpost_platform.errors import BadRequest, NotFound
from sendpost_platform.sending import copy_for
from sendpost_platform.store import reports

PATH = "/api/v1/account/message"
MAX_DAYS = 60

router = APIRouter(tags=["messages"], route_class=SendPostRoute)


class EmailAddress(ResponseModel):
    """SendPost's ``EmailAddress`` (``Recipient``/``CopyTo`` without custom fields)."""

    email: str
    name: str | None = None


class Message(ResponseModel):
    """SendPost's ``Message``."""

    message_id: str
    sub_account_id: int
    submitted_at: int = Field(description="UNIX epoch nanoseconds")
    from_: EmailAddress = Field(alias="from")
    reply_to: EmailAddress | None = None
    to: EmailAddress
    header_to: EmailAddress | None = None
    header_cc: list[EmailAddress] | None = None
    ip_pool: str | None = None
    headers: dict[str, str] | None = None
    subject: str | None = None
    html_body: str | None = None
    text_body: str | None = None
    track_opens: bool | None = None
    track_clicks: bool | None = None
    state: str = Field(description="queued, sent or dropped (this platform's)")
    tpsp_id: int | None = Field(None, description="The Custom SMTP provider it was routed to")


def _address(value: Any) -> EmailAddress | None:
    if value is None:
        return None
    mailbox = Mailbox.from_json(value)
    return EmailAddress(email=mailbox.email, name=mailbox.name or None)


def message_out(record: reports.MessageRecord) -> Message:
    content = record.content or {}
    to_json, cc_json = ([], []) if not content else copy_for(content, record.recipient)[:2]
    header_to = [_address(v) for v in to_json]
    mine = next(
        (
            a
            for a in header_to
            if a is not None and normalize_address(a.email) == normalize_address(record.recipient)
        ),
        None,
    )
    sender = EmailAddress(email=record.sender, name=content.get("fromName") or None)
    return Message.model_validate(
        {
            "message_id": record.uuid,
            "sub_account_id": record.subaccount_id,
            "submitted_at": nanos(record.created_at),
            "from_": sender,
            "reply_to": _address(content.get("replyTo")),
            "to": mine or EmailAddress(email=record.recipient),
            "header_to": next((a for a in header_to if a is not None), None),
            "header_cc": [a for a in map(_address, cc_json) if a] if content else None,
            "ip_pool": content.get("ippool"),
            "headers": content.get("headers") if content else None,
            "subject": content.get("subject"),
            "html_body": content.get("htmlBody"),
            "text_body": content.get("textBody"),
            "track_opens": content.get("trackOpens"),
            "track_clicks": content.get("trackClicks"),
            "state": record.state,
            "tpsp_id": record.provider_id,
        }
    )


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


@router.get(PATH)
def get_all_messages(
    ctx: ContextDep,
    account: AccountDep,
    from_: Annotated[dt.datetime, Query(alias="from")],
    to: Annotated[dt.datetime, Query()],
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: PageOffset = 0,
) -> list[Message]:
    """The account's messages created from ``from`` to ``to``, oldest first."""
    since, until = _utc(from_), _utc(to)
    if until < since or until - since > dt.timedelta(days=MAX_DAYS):
        raise BadRequest(
            "invalid time range",
            errors=[{"field": "query.to", "message": f"must be from `from` to {MAX_DAYS} days on"}],
        )
    with ctx.store.read() as conn:
        found = reports.message_records(
            conn, account_id=account.id, since=since, until=until, limit=limit, offset=offset
        )
    return [message_out(r) for r in found]


@router.get(PATH + "/{message_id}")
def get_message_by_id(
    ctx: ContextDep,
    account: AccountDep,
    message_id: Annotated[str, Path(min_length=1, max_length=36)],
) -> Message:
    with ctx.store.read() as conn:
        found = reports.message_record(conn, account_id=account.id, uuid=message_id)
    if found is None:
        raise NotFound(f"no message {message_id}")
    return message_out(found)
