"""``POST /api/v1/subaccount/email/``: send one email to one or more recipients.

Body (JSON): ``from`` (``"a@b.c"``, ``"Name <a@b.c>"`` or ``{"email", "name"}``), ``to`` (list
of addresses in the same forms), optional ``cc``/``bcc`` (same), optional ``replyTo`` (one
address), ``subject``, ``htmlBody`` and/or ``textBody``, optional ``headers`` (object of strings;
platform headers are refused), ``ippool`` (required: the name of one of the account's IP pools),
optional ``trackOpens``/``trackClicks``.

Answers 200 with one entry per recipient: ``{to, messageId, submittedAt, errorCode, message}``
(``errorCode`` 0: queued; otherwise the message was dropped at once, see ``sending.py``). A
malformed request is refused whole with 400 and ``errors: [{field, message}]`` naming every bad
field; 401 without a valid ``X-SubAccount-ApiKey``; 403 naming the ``domain`` when the account
has not proven that it controls the sender domain (``sending.DomainNotProven``). CR, LF, NUL
or another ASCII control character (tab excepted) in any field that reaches a header or the
SMTP envelope (addresses, display names, ``subject``, header names and values) is refused whole
with 422 (``code: header_injection``), the same ``errors`` list naming each field.

``Idempotency-Key`` (optional header, 1–255 printable ASCII characters): the same request sent
again with the same key within 24 hours gets the first answer back (``Idempotent-Replayed:
true``) and sends nothing; the key with a different body is 422; while the first is still being
processed, 409 (``store/idempotency.py``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Annotated, Any, ClassVar

import sqlalchemy as sa
from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Connection

from sendpost_platform.api.auth import SubAccountDep
from sendpost_platform.api.deps import ContextDep
from sendpost_platform.domain.addresses import (
    MAX_HEADER_NAME,
    MAX_NAME,
    MAX_TEXT,
    Mailbox,
    is_address,
    parse_mailbox,
    unsafe_characters,
)
from sendpost_platform.domain.routing import EmptyPoolError
from sendpost_platform.errors import BadRequest, Conflict, Forbidden, Unprocessable
from sendpost_platform.sending import DomainNotProven, SendRequest, submit
from sendpost_platform.smtp.prepare import is_reserved_header
from sendpost_platform.store import idempotency, pools
from sendpost_platform.store.accounts import SubAccount

PATH = "/api/v1/subaccount/email/"
MAX_RECIPIENTS = 1000

router = APIRouter(tags=["sending"])

_HEADER_NAME = re.compile(rf"^[!-9;-~]{{1,{MAX_HEADER_NAME}}}$")


class HeaderInjection(Unprocessable):
    """A field that reaches a header or the envelope carries CR, LF, NUL or another control."""

    code: ClassVar[str] = "header_injection"


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []
        self.unsafe = False

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})

    def unsafe_in(self, field: str, value: str) -> bool:
        """Record (and say) whether ``value`` carries a character no header may hold."""
        found = unsafe_characters(value)
        if found:
            self.unsafe = True
            self.add(field, f"contains {' and '.join(found)}, which may not appear in a header")
        return bool(found)


def _text(body: dict[str, Any], key: str, errors: _Errors, *, required: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            errors.add(key, "is required")
        return None
    if not isinstance(value, str):
        errors.add(key, "must be a string")
        return None
    return value


def _name(value: Any, field: str, errors: _Errors) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add(field, "must be a string")
    elif not errors.unsafe_in(field, value):
        if len(value) > MAX_NAME:
            errors.add(field, f"must be at most {MAX_NAME} characters")
        else:
            return value.strip()
    return None


def _address(value: Any, field: str, errors: _Errors) -> Mailbox | None:
    """A mailbox from ``{"email", "name"}`` or a string (``a@b.c`` or ``Name <a@b.c>``, read by
    ``email.headerregistry``). A string that is not one valid mailbox is kept as it is, so the
    recipient is dropped with its reason (the caller checks the sender itself)."""
    if isinstance(value, dict):
        name_field = f"{field}.name"
        name = _name(value.get("name"), name_field, errors)
        if any(e["field"] == name_field for e in errors.items):
            return None
        value = value.get("email")
        field = f"{field}.email"
    else:
        name = None
    if not isinstance(value, str) or not value.strip():
        errors.add(field, "must be an email address")
        return None
    if errors.unsafe_in(field, value):
        return None
    if name is None:
        parsed = parse_mailbox(value.strip())
        if parsed is not None and len(parsed.name or "") > MAX_NAME:
            errors.add(field, f"the display name must be at most {MAX_NAME} characters")
            return None
        if parsed is not None:
            return parsed
    return Mailbox(value.strip(), name or None)


def _recipients(
    body: dict[str, Any], key: str, errors: _Errors, *, required: bool
) -> list[Mailbox]:
    value = body.get(key)
    if value is None:
        if required:
            errors.add(key, "is required: a non-empty list of recipients")
        return []
    if not isinstance(value, list) or (required and not value):
        errors.add(key, "must be a non-empty list of recipients" if required else "must be a list")
        return []
    found = []
    for i, item in enumerate(value):
        parsed = _address(item, f"{key}[{i}]", errors)
        if parsed is not None:
            found.append(parsed)
    return found


def _single(body: dict[str, Any], key: str, errors: _Errors) -> Mailbox | None:
    """``from`` or ``replyTo``: one valid mailbox."""
    mailbox = _address(body[key], key, errors)
    if mailbox is not None and not is_address(mailbox.email):
        errors.add(key, f"{mailbox.email!r} is not a valid email address")
        return None
    return mailbox


def _headers(body: dict[str, Any], errors: _Errors) -> dict[str, str]:
    value = body.get("headers")
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.add("headers", "must be an object of header names to string values")
        return {}
    headers = {}
    for name, text in value.items():
        field = f"headers.{name}"
        if errors.unsafe_in(field, name):
            continue
        if not _HEADER_NAME.match(name):
            errors.add(
                field,
                f"is not a valid header name (printable ASCII without ':',"
                f" at most {MAX_HEADER_NAME} characters)",
            )
        elif is_reserved_header(name):
            errors.add(field, "is set by the platform and may not be supplied")
        elif not isinstance(text, str):
            errors.add(field, "must be a string")
        elif not errors.unsafe_in(field, text):
            if len(text) > MAX_TEXT:
                errors.add(field, f"must be at most {MAX_TEXT} characters")
            else:
                headers[name] = text
    return headers


def _flag(body: dict[str, Any], key: str, errors: _Errors) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        errors.add(key, "must be true or false")
        return False
    return value


def parse_send_request(body: Any) -> SendRequest:
    """Validate the JSON body; raises :class:`BadRequest` naming every bad field."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    errors = _Errors()
    sender = None
    if body.get("from") is None:
        errors.add("from", "is required")
    else:
        sender = _single(body, "from", errors)
    reply_to = None if body.get("replyTo") is None else _single(body, "replyTo", errors)
    to = _recipients(body, "to", errors, required=True)
    cc = _recipients(body, "cc", errors, required=False)
    bcc = _recipients(body, "bcc", errors, required=False)
    if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
        errors.add("to", f"at most {MAX_RECIPIENTS} recipients (to, cc and bcc together)")
    subject = _text(body, "subject", errors, required=True)
    if subject is not None and errors.unsafe_in("subject", subject):
        subject = None
    elif subject is not None and len(subject) > MAX_TEXT:
        errors.add("subject", f"must be at most {MAX_TEXT} characters")
    html = _text(body, "htmlBody", errors, required=False)
    text = _text(body, "textBody", errors, required=False)
    for key, value in (("htmlBody", html), ("textBody", text)):
        if value is not None and "\x00" in value:
            errors.add(key, "contains a NUL character, which no message may carry")
    if html is None and text is None and "htmlBody" not in body and "textBody" not in body:
        errors.add("htmlBody", "htmlBody or textBody is required")
    headers = _headers(body, errors)
    ippool = _text(body, "ippool", errors, required=True)
    if ippool is not None and not ippool.strip():
        errors.add("ippool", "is required")
    track_opens = _flag(body, "trackOpens", errors)
    track_clicks = _flag(body, "trackClicks", errors)
    if errors.unsafe:
        raise HeaderInjection(
            "CR, LF, NUL and other control characters may not appear in addresses, names,"
            " the subject or headers",
            errors=errors.items,
        )
    if errors.items or sender is None or subject is None or ippool is None:
        raise BadRequest("invalid send request", errors=errors.items)
    return SendRequest(
        from_email=sender.email,
        from_name=sender.name,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        subject=subject,
        text_body=text,
        html_body=html,
        headers=headers,
        ippool=ippool.strip(),
        track_opens=track_opens,
        track_clicks=track_clicks,
    )


IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= 255 or not set(value) <= _KEY_CHARS:
        raise BadRequest(
            "invalid Idempotency-Key",
            errors=[
                {
                    "field": f"header.{IDEMPOTENCY_HEADER}",
                    "message": "1 to 255 printable ASCII characters without spaces",
                }
            ],
        )
    return value


@router.post(
    PATH,
    responses={
        403: {"description": "The account has not proven control of the sender domain"},
        409: {"description": "A request with this Idempotency-Key is being processed; retry"},
        422: {
            "description": "A header or envelope field carries CR, LF, NUL or a control; or "
            "the Idempotency-Key was used with another request"
        },
    },
)
def send_email(
    ctx: ContextDep,
    sub: SubAccountDep,
    body: Annotated[Any, Body()],
    idempotency_key: Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)] = None,
) -> Any:
    """Send one email. With an ``Idempotency-Key`` header (any client-chosen string, unique per
    request), sending the same request again within 24 hours answers what the first one did
    (with ``Idempotent-Replayed: true``) and sends nothing more."""
    key = _idempotency_key(idempotency_key)
    send = parse_send_request(body)
    digest = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    ).hexdigest()
    now = ctx.clock.now()
    try:
        with ctx.store.write() as conn:
            if key is not None:
                earlier = idempotency.find(conn, sub.id, key, now)
                if earlier is not None:
                    if earlier.request_digest != digest:
                        raise Unprocessable(
                            "this Idempotency-Key was used with a different request",
                            errors=[
                                {
                                    "field": f"header.{IDEMPOTENCY_HEADER}",
                                    "message": "already used with another request body",
                                }
                            ],
                        )
                    return JSONResponse(earlier.response, headers={"Idempotent-Replayed": "true"})
            answer = _send(conn, sub, send, now)
            if key is not None:
                idempotency.remember(conn, sub.id, key, digest, answer, now)
    except sa.exc.IntegrityError:
        if key is None:
            raise
        raise Conflict(
            "a request with this Idempotency-Key is being processed; retry to get its answer"
        ) from None
    return answer


def _send(
    conn: Connection, sub: SubAccount, send: SendRequest, now: dt.datetime
) -> list[dict[str, Any]]:
    pool = pools.find_pool(conn, account_id=sub.account_id, name=send.ippool)
    if pool is None:
        raise BadRequest(
            "invalid send request",
            errors=[{"field": "ippool", "message": f"no IP pool named {send.ippool!r}"}],
        )
    try:
        results = submit(
            conn,
            account_id=sub.account_id,
            subaccount_id=sub.id,
            request=send,
            pool=pool,
            now=now,
        )
    except EmptyPoolError:
        raise BadRequest(
            "invalid send request",
            errors=[{"field": "ippool", "message": "the IP pool has no providers"}],
        ) from None
    except DomainNotProven as exc:
        raise Forbidden(
            f"the sender domain {exc.domain.domain!r} is not verified for this account",
            errors=[{"field": "from", "message": str(exc)}],
            extra={"domain": exc.domain.domain},
        ) from None
    return [
        {
            "to": r.to,
            "messageId": r.message_uuid,
            "submittedAt": int(r.submitted_at.timestamp()),
            "errorCode": int(r.error_code),
            "message": r.message,
        }
        for r in results
    ]
