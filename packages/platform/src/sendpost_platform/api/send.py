"""The send API: ``POST /api/v1/subaccount/email/`` and ``/api/v1/subaccount/email/template``.

The body is SendPost's ``EmailMessageObject`` (``EmailMessageWithTemplate`` for the template
send), as ``api/send_models.py`` defines it and ``api/send_body.py`` checks it; see
``docs/api.md`` (Sending) for what each field does here. Answers 200 with one entry per
recipient: ``{to, messageId, submittedAt (ns), errorCode, message}`` (``errorCode`` 0: submitted;
1, 2, 3: dropped at once, see ``sending.py``). A body the platform cannot process is refused whole
with 422 and ``errors: [{field, message}]`` naming every bad field (``code: header_injection``
for control characters in what reaches a header); 401 without a valid ``X-SubAccount-ApiKey``;
403 naming the ``domain`` when the account has not proven that it controls the sender domain
(``sending.DomainNotProven``).

``Idempotency-Key`` (optional header, 1–255 printable ASCII characters): the same request sent
again with the same key within 24 hours gets the first answer back (``Idempotent-Replayed:
true``) and sends nothing; the key with a different body is 422; while the first is still being
processed, 409 (``store/idempotency.py``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Annotated, Any

import anyio.from_thread
import sqlalchemy as sa
from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Connection

from sendpost_platform.api import send_models
from sendpost_platform.api.auth import SubAccountDep
from sendpost_platform.api.deps import AppContext, ContextDep
from sendpost_platform.api.send_body import HeaderInjection, InvalidSend, build_request, validate
from sendpost_platform.domain.routing import EmptyPoolError
from sendpost_platform.egress import EgressPolicy
from sendpost_platform.errors import BadRequest, Conflict, Forbidden, Unprocessable
from sendpost_platform.sending import DomainNotProven, SendRequest, submit
from sendpost_platform.store import idempotency, pools, templates
from sendpost_platform.store.accounts import SubAccount

PATH = "/api/v1/subaccount/email/"
TEMPLATE_PATH = "/api/v1/subaccount/email/template"
SEND_PATHS = (PATH, TEMPLATE_PATH)
SCHEMAS = send_models.REQUEST_MODELS

router = APIRouter(tags=["sending"])

__all__ = ["HeaderInjection", "InvalidSend", "router"]


def nanoseconds(moment: dt.datetime) -> int:
    """UNIX epoch time in nanoseconds (SendPost's unit for every timestamp)."""
    return (moment - _EPOCH) // dt.timedelta(microseconds=1) * 1000


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _template_of(
    conn: Connection, sub: SubAccount, message: send_models.EmailMessageObject
) -> templates.StoredTemplate | None:
    """The stored template the request names (``templateId`` or ``template``), or a 422."""
    if message.templateId is not None:
        found = None
        if message.templateId.isdigit() and int(message.templateId) < 2**62:
            found = templates.get_template(conn, sub.id, int(message.templateId))
        if found is None:
            raise InvalidSend(
                "no such template",
                errors=[{"field": "templateId", "message": "no template with this ID"}],
            )
        return found
    if message.template is not None:
        found = templates.find_template(conn, sub.id, name=message.template)
        if found is None:
            raise InvalidSend(
                "no such template",
                errors=[{"field": "template", "message": "no template with this name"}],
            )
        return found
    return None


def parse_send_request(
    ctx: AppContext, sub: SubAccount, body: Any, *, needs_template: bool = False
) -> SendRequest:
    """Validate a send body (``api/send_body.py``), with its template from the store."""
    model: type[send_models.EmailMessageObject] = (
        send_models.EmailMessageWithTemplate if needs_template else send_models.EmailMessageObject
    )
    message = validate(model, body)
    if needs_template and message.template is None and message.templateId is None:
        raise InvalidSend(
            "no template named",
            errors=[{"field": "template", "message": "template or templateId is required"}],
        )
    with ctx.store.read() as conn:
        template = _template_of(conn, sub, message)
    policy = EgressPolicy.from_settings(ctx.settings)

    def resolve(host: str, port: int) -> object:
        return anyio.from_thread.run(policy.resolve, host, port)

    return build_request(message, template, resolve=resolve)


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


_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "The account has not proven control of the sender domain"},
    409: {"description": "A request with this Idempotency-Key is being processed; retry"},
    422: {
        "description": "The body cannot be processed (`errors` names each field: an unknown "
        "or unsupported field, a bad value, a header injection), or the Idempotency-Key was "
        "used with another request"
    },
}


def _body_schema(model: type[send_models.EmailMessageObject]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


@router.post(
    PATH,
    responses=_RESPONSES,
    response_model=list[send_models.EmailResponse],
    openapi_extra=_body_schema(send_models.EmailMessageObject),
    summary="Send Email",
)
def send_email(
    ctx: ContextDep,
    sub: SubAccountDep,
    body: Annotated[Any, Body()],
    idempotency_key: Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)] = None,
) -> Any:
    """Send one email to each recipient (SendPost's ``EmailMessageObject``). With an
    ``Idempotency-Key`` header (any client-chosen string, unique per request), sending the same
    request again within 24 hours answers what the first one did (with
    ``Idempotent-Replayed: true``) and sends nothing more."""
    return _handle(ctx, sub, body, idempotency_key, needs_template=False)


@router.post(
    TEMPLATE_PATH,
    responses=_RESPONSES,
    response_model=list[send_models.EmailResponse],
    openapi_extra=_body_schema(send_models.EmailMessageWithTemplate),
    summary="Send Email With Template",
)
def send_email_with_template(
    ctx: ContextDep,
    sub: SubAccountDep,
    body: Annotated[Any, Body()],
    idempotency_key: Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)] = None,
) -> Any:
    """Send with a stored template (``template`` by name or ``templateId``; see
    ``/api/v1/subaccount/template/``): the request's own subject and bodies override it."""
    return _handle(ctx, sub, body, idempotency_key, needs_template=True)


def _handle(
    ctx: AppContext,
    sub: SubAccount,
    body: Any,
    idempotency_key: str | None,
    *,
    needs_template: bool,
) -> Any:
    key = _idempotency_key(idempotency_key)
    send = parse_send_request(ctx, sub, body, needs_template=needs_template)
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
        raise InvalidSend(
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
        raise InvalidSend(
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
            "submittedAt": nanoseconds(r.submitted_at),
            "errorCode": int(r.error_code),
            "message": r.message,
        }
        for r in results
    ]
