"""Suppressions at SendPost's paths (``X-SubAccount-ApiKey``): recipients a sub-account never
mails again.

SendPost's ``SuppressionApi``:

- ``POST /api/v1/subaccount/suppression`` (``CreateSuppressionRequest``: lists ``manual``,
  ``unsubscribe``, ``hardBounce``, ``spamComplaint`` of ``{"email"}``) → 200 ``[Suppression]``,
  one per address, as stored: an address already suppressed keeps its first reason and date.
- ``GET /api/v1/subaccount/suppression?from=YYYY-MM-DD&to=YYYY-MM-DD`` (both days inclusive, at
  most 60 days; ``limit`` default 20, at most 100; ``offset``; ``search``: address contains;
  ``type``: ``manual`` | ``unsubscribe`` | ``hardBounce`` | ``spamComplaint``) → ``[Suppression]``
  added in that range, oldest first.
- ``DELETE /api/v1/subaccount/suppression`` (``DeleteSuppressionRequest``) → 200 ``{message}``.

``reason`` is SendPost's code: 0 manual, 1 unsubscribe, 2 hard bounce, 3 spam complaint. The
platform adds entries itself when a recipient unsubscribes (``api/tracking.py``) and when a hard
bounce becomes the event of record (``store/bounces.py``, with the server's reply as
``smtpError``). Sending drops suppressed recipients at once (``sending.py``) and the relay checks
again just before it sends (``relay_worker.py``). Rules: ``domain/suppression.py``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field, StrictStr

from sendpost_platform.api.auth import SubAccountDep
from sendpost_platform.api.deps import ContextDep, PageOffset
from sendpost_platform.api.sendpost import (
    UNPROCESSABLE,
    RequestModel,
    ResponseModel,
    SendPostRoute,
    nanos,
    refuse,
)
from sendpost_platform.domain.addresses import is_address
from sendpost_platform.domain.suppression import SuppressionReason, normalize_address
from sendpost_platform.errors import BadRequest
from sendpost_platform.store import suppressions

PATH = "/api/v1/subaccount/suppression"
MAX_ADDRESSES = 1000
MAX_DAYS = 60

router = APIRouter(tags=["suppressions"], route_class=SendPostRoute)

REASON_CODES: dict[str, int] = {
    SuppressionReason.manual: 0,
    SuppressionReason.unsubscribe: 1,
    SuppressionReason.hard_bounce: 2,
    SuppressionReason.spam_report: 3,
}
"""Stored reason → SendPost's ``reason`` code."""
REASON_TEXT = {0: "manual", 1: "unsubscribe", 2: "hardBounce", 3: "spamComplaint"}
"""``reasonText``: SendPost's type names (its SDK accepts only these)."""
TYPES: dict[str, SuppressionReason] = {
    "manual": SuppressionReason.manual,
    "unsubscribe": SuppressionReason.unsubscribe,
    "hardBounce": SuppressionReason.hard_bounce,
    "spamComplaint": SuppressionReason.spam_report,
}
"""SendPost's type names (request lists and the ``type`` filter) → stored reasons."""
_ATTRS = {
    "manual": "manual",
    "unsubscribe": "unsubscribe",
    "hardBounce": "hard_bounce",
    "spamComplaint": "spam_complaint",
}
"""SendPost's type names → :class:`CreateSuppressionRequest` attributes."""


class SuppressionEmail(RequestModel):
    email: StrictStr = Field(max_length=320)


class CreateSuppressionRequest(RequestModel):
    """SendPost's ``CreateSuppressionRequest``: addresses by type."""

    hard_bounce: list[SuppressionEmail] | None = None
    manual: list[SuppressionEmail] | None = None
    unsubscribe: list[SuppressionEmail] | None = None
    spam_complaint: list[SuppressionEmail] | None = None


class DeleteSuppressionRequest(RequestModel):
    """SendPost's ``DeleteSuppressionRequest``: the addresses to lift, whatever their type."""

    suppressions: list[SuppressionEmail] = Field(max_length=MAX_ADDRESSES)


class Suppression(ResponseModel):
    """SendPost's ``Suppression``."""

    id: int
    email: str
    reason: int = Field(description="0 manual, 1 unsubscribe, 2 hard bounce, 3 spam complaint")
    reason_text: str
    smtp_error: str = ""
    message_uuid: str = Field("", alias="messageUUID")
    created: int = Field(description="UNIX epoch nanoseconds")


class DeleteSuppressionResponse(ResponseModel):
    message: str


def suppression_out(row: dict[str, Any]) -> Suppression:
    code = REASON_CODES.get(row["reason"], 0)
    return Suppression.model_validate(
        {
            "id": row["id"],
            "email": row["recipient_key"],
            "reason": code,
            "reason_text": REASON_TEXT[code],
            "smtp_error": row.get("smtp_error") or "",
            "message_uuid": row.get("message_uuid") or "",
            "created": nanos(row["created_at"]),
        }
    )


@router.post(PATH, responses=UNPROCESSABLE)
def create_suppression(
    ctx: ContextDep, sub: SubAccountDep, body: CreateSuppressionRequest
) -> list[Suppression]:
    """Suppress the addresses (200 with each as stored)."""
    wanted: list[tuple[str, SuppressionReason]] = []
    problems: list[tuple[str, str]] = []
    for name, reason in TYPES.items():
        for i, item in enumerate(getattr(body, _ATTRS[name]) or []):
            if not is_address(item.email.strip()):
                problems.append((f"{name}[{i}].email", "must be an email address"))
            else:
                wanted.append((normalize_address(item.email), reason))
    if len(wanted) > MAX_ADDRESSES:
        problems.append(("body", f"at most {MAX_ADDRESSES} addresses per request"))
    if problems:
        raise refuse(problems)
    now = ctx.clock.now()
    with ctx.store.write() as conn:
        for email, reason in wanted:
            suppressions.add_suppression(
                conn,
                account_id=sub.account_id,
                subaccount_id=sub.id,
                recipient=email,
                reason=reason.value,
                now=now,
            )
        stored = suppressions.suppressions_of(conn, sub.id, (e for e, _ in wanted))
    return [suppression_out(stored[e]) for e in dict.fromkeys(e for e, _ in wanted)]


@router.get(PATH)
def get_suppression_list(
    ctx: ContextDep,
    sub: SubAccountDep,
    from_: Annotated[dt.date, Query(alias="from")],
    to: Annotated[dt.date, Query()],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: PageOffset = 0,
    search: Annotated[str | None, Query(max_length=320)] = None,
    type: Annotated[str | None, Query(max_length=32)] = None,
) -> list[Suppression]:
    """Suppressions added from ``from`` to ``to`` (whole UTC days), oldest first."""
    if to < from_ or (to - from_).days > MAX_DAYS:
        raise BadRequest(
            "invalid date range",
            errors=[{"field": "query.to", "message": f"must be from `from` to {MAX_DAYS} days on"}],
        )
    reasons = None
    if type is not None:
        if type not in TYPES:
            raise BadRequest(
                "invalid type",
                errors=[{"field": "query.type", "message": f"must be one of {', '.join(TYPES)}"}],
            )
        reasons = [TYPES[type].value]
    since = dt.datetime.combine(from_, dt.time(), dt.UTC)
    until = dt.datetime.combine(to + dt.timedelta(days=1), dt.time(), dt.UTC)
    with ctx.store.read() as conn:
        rows = suppressions.find_suppressions(
            conn,
            subaccount_id=sub.id,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
            search=search,
            reasons=reasons,
        )
    return [suppression_out(r) for r in rows]


@router.delete(PATH, responses=UNPROCESSABLE)
def delete_suppression(
    ctx: ContextDep, sub: SubAccountDep, body: DeleteSuppressionRequest
) -> DeleteSuppressionResponse:
    """Lift the suppressions of these addresses (those not suppressed are counted apart)."""
    problems = [
        (f"suppressions[{i}].email", "must be an email address")
        for i, item in enumerate(body.suppressions)
        if not is_address(item.email.strip())
    ]
    if problems:
        raise refuse(problems)
    with ctx.store.write() as conn:
        removed = sum(
            suppressions.remove_suppression(conn, subaccount_id=sub.id, recipient=item.email)
            for item in body.suppressions
        )
    missing = len(body.suppressions) - removed
    return DeleteSuppressionResponse(
        message=f"{removed} suppression(s) deleted"
        + (f"; {missing} address(es) were not suppressed" if missing else "")
    )
