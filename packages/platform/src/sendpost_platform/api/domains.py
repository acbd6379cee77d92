"""Sender domains at SendPost's paths (``X-SubAccount-ApiKey``): DKIM keys, the DNS records
to publish, verification.

SendPost's ``DomainApi``:

- ``POST /api/v1/subaccount/domain`` ``{"name"}`` (``CreateDomainRequest``) → 201 ``Domain``: a
  DKIM key is generated (RSA-2048, selector ``SENDPOST_DKIM_SELECTOR``; this platform also takes
  ``selector`` and ``dkimAlgorithm``: ``rsa`` | ``ed25519``); ``dkim`` and ``returnPath`` are
  the records to publish (``{host, type, textValue}``).
- ``GET /api/v1/subaccount/domain`` (``limit``, ``offset``, ``search``),
  ``GET /api/v1/subaccount/domain/{domain_id}``, ``DELETE`` (→ 200 ``{id, message}``; 409 while
  messages of the domain wait for relay).
- ``POST /api/v1/subaccount/domain/{domain_id}/verify`` (this platform's; SendPost's SDK has no
  verify call): queries DNS (``SENDPOST_DNS_NAMESERVER``/``_PORT``) for both records, stores
  the outcome and answers the ``Domain`` with ``dkimFailureReason`` /
  ``returnPathFailureReason`` saying what was found instead.

Differences from SendPost: a domain belongs to the sub-account's *account* (every sub-account
of the account sees and sends from it; its DKIM key is the account's proof of control);
``verified`` needs both records (sending needs both); there are no ``track``/``dmarc`` records.

Each account that adds a domain gets its own key, so a domain another account already verified
(same name) is ``verified`` for this account only once this account's own DKIM record is
published: the shared return-path CNAME alone never lets it send.

The DKIM private key is sealed at rest with the platform secret (``crypto.SecretBox`` under its
own purpose label) and never leaves the platform. The dashboard adds and checks domains through
:func:`add_domain` and :func:`check_domain`, so validation, keys and the DNS check are these.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field, StrictStr
from starlette.concurrency import run_in_threadpool

from sendpost_platform.api.auth import SubAccountDep
from sendpost_platform.api.deps import AppContext, ContextDep, IdPath, PageLimit, PageOffset
from sendpost_platform.api.sendpost import (
    UNPROCESSABLE,
    DeleteResponse,
    RequestModel,
    ResponseModel,
    SendPostRoute,
    nanos,
)
from sendpost_platform.crypto import SecretBox
from sendpost_platform.dns_verify import (
    RecordPurpose,
    ResolverSettings,
    check_records,
    expected_records,
)
from sendpost_platform.errors import BadRequest, Conflict, NotFound, Unprocessable
from sendpost_platform.smtp import dkim
from sendpost_platform.store import domains

PATH = "/api/v1/subaccount/domain"
_BOX = "domains.key_box"

router = APIRouter(tags=["domains"], route_class=SendPostRoute)

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DOMAIN_NAME = re.compile(rf"^(?:{_LABEL}\.)+[a-z]{{2,63}}$")
"""A domain name as this platform takes one (lower case, without the final dot)."""
_SELECTOR = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


def key_box(ctx: AppContext) -> SecretBox:
    box = ctx.extras.get(_BOX)
    if not isinstance(box, SecretBox):
        box = ctx.extras[_BOX] = SecretBox(ctx.settings.secret_key, purpose=domains.KEY_PURPOSE)
    return box


def _records(ctx: AppContext, domain: domains.SenderDomain) -> list[dict[str, str]]:
    key = dkim.DkimKey(dkim.DkimAlgorithm(domain.dkim_algorithm), b"", domain.dkim_public_key)
    return [
        {"purpose": r.purpose.value, "type": r.type, "name": r.name, "value": r.value}
        for r in expected_records(
            domain.domain, domain.selector, dkim.txt_record(key), ctx.settings.bounce_cname_target
        )
    ]


def summary(ctx: AppContext, domain: domains.SenderDomain) -> dict[str, Any]:
    """The dashboard's view of a domain (records as a list, with their purpose)."""
    return {
        "id": domain.id,
        "name": domain.domain,
        "selector": domain.selector,
        "dkimAlgorithm": domain.dkim_algorithm,
        "dkimVerified": domain.dkim_verified,
        "returnPathVerified": domain.return_path_verified,
        "verified": domain.dkim_verified and domain.return_path_verified,
        "lastCheckedAt": None
        if domain.last_checked_at is None
        else domain.last_checked_at.isoformat(),
        "dnsRecords": _records(ctx, domain),
    }


def add_domain(ctx: AppContext, account_id: int, body: Any) -> domains.SenderDomain:
    """Validate ``{"name", "selector"?, "dkimAlgorithm"?}``, generate the key, store the domain
    (400 naming each bad field; 409 when the account has it)."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    errors = []
    name = body.get("name")
    if not isinstance(name, str) or not DOMAIN_NAME.match(name.strip().lower().rstrip(".")):
        errors.append({"field": "name", "message": "must be a domain name such as example.com"})
    selector = body.get("selector", ctx.settings.dkim_selector)
    if not isinstance(selector, str) or not _SELECTOR.match(selector.lower()):
        errors.append({"field": "selector", "message": "must be a DNS label such as s1"})
    algorithm = body.get("dkimAlgorithm", "rsa")
    if algorithm not in ("rsa", "ed25519"):
        errors.append({"field": "dkimAlgorithm", "message": "must be rsa or ed25519"})
    if errors:
        raise BadRequest("invalid request", errors=errors)
    assert isinstance(name, str)
    assert isinstance(selector, str)
    key = dkim.generate_key(dkim.DkimAlgorithm(algorithm))
    with ctx.store.write() as conn:
        created = domains.create_domain(
            conn,
            account_id=account_id,
            domain=name.strip().lower().rstrip("."),
            selector=selector.lower(),
            algorithm=algorithm,
            private_key=key_box(ctx).seal(key.private_key.decode("ascii")),
            public_key=key.public_key,
            now=ctx.clock.now(),
        )
    if created is None:
        raise Conflict(f"the domain {name!r} already exists")
    return created


def list_for(ctx: AppContext, account_id: int) -> list[domains.SenderDomain]:
    with ctx.store.read() as conn:
        return domains.list_domains(conn, account_id=account_id)


def _get(ctx: AppContext, account_id: int, domain_id: int) -> domains.SenderDomain:
    with ctx.store.read() as conn:
        found = domains.get_domain(conn, account_id=account_id, domain_id=domain_id)
    if found is None:
        raise NotFound(f"no domain {domain_id}")
    return found


async def check_domain(
    ctx: AppContext, account_id: int, domain_id: int
) -> tuple[domains.SenderDomain, list[dict[str, Any]]]:
    """Query DNS for the domain's records now and store the outcome; returns the updated domain
    and one report per record."""
    domain = await run_in_threadpool(_get, ctx, account_id, domain_id)
    settings = ctx.settings
    resolver = ResolverSettings(settings.dns_nameserver, settings.dns_port, settings.dns_timeout)
    key = dkim.DkimKey(dkim.DkimAlgorithm(domain.dkim_algorithm), b"", domain.dkim_public_key)
    records = expected_records(
        domain.domain, domain.selector, dkim.txt_record(key), settings.bounce_cname_target
    )
    checks = await check_records(resolver, records)
    verified = {c.record.purpose: c.verified for c in checks}
    report = [
        {
            "purpose": c.record.purpose.value,
            "type": c.record.type,
            "name": c.record.name,
            "expected": c.record.value,
            "found": list(c.found),
            "verified": c.verified,
            "error": c.error,
        }
        for c in checks
    ]

    def save() -> domains.SenderDomain | None:
        with ctx.store.write() as conn:
            domains.record_check(
                conn,
                domain.id,
                dkim_verified=verified[RecordPurpose.dkim],
                return_path_verified=verified[RecordPurpose.return_path],
                check={"checks": report},
                now=ctx.clock.now(),
            )
            return domains.get_domain(conn, account_id=account_id, domain_id=domain.id)

    updated = await run_in_threadpool(save)
    assert updated is not None
    return updated, report


# --- SendPost's DomainApi --------------------------------------------------------------------


class CreateDomainRequest(RequestModel):
    """SendPost's ``CreateDomainRequest``, plus this platform's ``selector`` and
    ``dkimAlgorithm`` (``rsa`` by default, or ``ed25519``)."""

    name: StrictStr = Field(max_length=253)
    selector: StrictStr | None = Field(default=None, max_length=63)
    dkim_algorithm: Literal["rsa", "ed25519"] = "rsa"


class DnsRecord(ResponseModel):
    """SendPost's ``DnsRecord``: publish ``textValue`` as a ``type`` record at ``host``."""

    host: str
    type: str
    text_value: str


class Domain(ResponseModel):
    """SendPost's ``Domain`` (no ``track``/``dmarc`` records here)."""

    id: int
    name: str
    dkim: DnsRecord
    return_path: DnsRecord
    dkim_verified: bool
    return_path_verified: bool
    verified: bool = Field(description="Both records verified: sending needs both here")
    created: int = Field(description="UNIX epoch nanoseconds")
    dkim_failure_reason: str = ""
    return_path_failure_reason: str = ""


def _failure(domain: domains.SenderDomain, purpose: RecordPurpose, verified: bool) -> str:
    if verified or not domain.last_check:
        return ""
    for check in domain.last_check.get("checks", []):
        if check.get("purpose") == purpose.value:
            found = ", ".join(str(f) for f in check.get("found", [])) or "nothing"
            why = check.get("error") or f"found {found}"
            return f"{check.get('type')} {check.get('name')}: {why}"
    return ""


def domain_out(ctx: AppContext, domain: domains.SenderDomain) -> Domain:
    records = {
        r["purpose"]: DnsRecord(host=r["name"], type=r["type"], text_value=r["value"])
        for r in _records(ctx, domain)
    }
    return Domain(
        id=domain.id,
        name=domain.domain,
        dkim=records[RecordPurpose.dkim.value],
        return_path=records[RecordPurpose.return_path.value],
        dkim_verified=domain.dkim_verified,
        return_path_verified=domain.return_path_verified,
        verified=domain.dkim_verified and domain.return_path_verified,
        created=nanos(domain.created_at),
        dkim_failure_reason=_failure(domain, RecordPurpose.dkim, domain.dkim_verified),
        return_path_failure_reason=_failure(
            domain, RecordPurpose.return_path, domain.return_path_verified
        ),
    )


@router.post(
    PATH,
    status_code=201,
    responses={409: {"description": "The account already has this domain"}, **UNPROCESSABLE},
)
def create_sub_account_domain(
    ctx: ContextDep, sub: SubAccountDep, body: CreateDomainRequest
) -> Domain:
    """Add a sender domain (201, as SendPost answers) with a new DKIM key."""
    try:
        created = add_domain(ctx, sub.account_id, body.model_dump(by_alias=True, exclude_none=True))
    except BadRequest as exc:
        raise Unprocessable(exc.message, errors=exc.errors) from None
    return domain_out(ctx, created)


@router.get(PATH)
def get_all_domains(
    ctx: ContextDep,
    sub: SubAccountDep,
    limit: PageLimit = None,
    offset: PageOffset = 0,
    search: Annotated[str | None, Query(max_length=253)] = None,
) -> list[Domain]:
    """The account's domains by name; ``search``: name contains."""
    found = list_for(ctx, sub.account_id)
    if search:
        found = [d for d in found if search.lower() in d.domain]
    found = found[offset:]
    return [domain_out(ctx, d) for d in (found if limit is None else found[:limit])]


@router.get(PATH + "/{domain_id}")
def get_sub_account_domain(ctx: ContextDep, sub: SubAccountDep, domain_id: IdPath) -> Domain:
    return domain_out(ctx, _get(ctx, sub.account_id, domain_id))


@router.post(PATH + "/{domain_id}/verify")
async def verify_sub_account_domain(
    ctx: ContextDep, sub: SubAccountDep, domain_id: IdPath
) -> Domain:
    """Check both records in DNS now (this platform's call; SendPost's SDK has none)."""
    updated, _ = await check_domain(ctx, sub.account_id, domain_id)
    return domain_out(ctx, updated)


@router.delete(
    PATH + "/{domain_id}",
    responses={409: {"description": "Messages of this domain are waiting for relay"}},
)
def delete_sub_account_domain(
    ctx: ContextDep, sub: SubAccountDep, domain_id: IdPath
) -> DeleteResponse:
    with ctx.store.write() as conn:
        found = domains.get_domain(conn, account_id=sub.account_id, domain_id=domain_id)
        deleted = domains.delete_domain(conn, account_id=sub.account_id, domain_id=domain_id)
    if found is None or deleted is False:
        raise NotFound(f"no domain {domain_id}")
    if deleted is None:
        raise Conflict("messages of this domain are waiting for relay")
    return DeleteResponse(id=domain_id, message=f"domain {found.domain!r} deleted")
