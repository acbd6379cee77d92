"""Sender domains (``X-Account-ApiKey``): DKIM keys, the DNS records to publish, verification.

- ``POST /api/v1/domains`` ``{"name", "selector"?, "dkimAlgorithm"?: "rsa" | "ed25519"}`` → 201:
  a DKIM key is generated (RSA-2048 by default); the answer lists ``dnsRecords`` to publish.
- ``GET /api/v1/domains``, ``GET /api/v1/domains/{id}``, ``DELETE /api/v1/domains/{id}``.
- ``POST /api/v1/domains/{id}/verify``: queries DNS (``SENDPOST_DNS_NAMESERVER``/``_PORT``) for
  both records and stores the outcome; the answer is the domain with ``checks``.

Each account that adds a domain gets its own key, so a domain another account already verified
(same name) is ``verified`` for this account only once this account's own DKIM record is
published: the shared return-path CNAME alone never lets it send.

The DKIM private key is sealed at rest with the platform secret (``crypto.SecretBox`` under its
own purpose label) and never leaves the platform.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from starlette.concurrency import run_in_threadpool

from sendpost_platform.api.auth import AccountDep
from sendpost_platform.api.deps import AppContext, ContextDep
from sendpost_platform.crypto import SecretBox
from sendpost_platform.dns_verify import (
    RecordPurpose,
    ResolverSettings,
    check_records,
    expected_records,
)
from sendpost_platform.errors import BadRequest, Conflict, NotFound
from sendpost_platform.smtp import dkim
from sendpost_platform.store import domains

PATH = "/api/v1/domains"
_BOX = "domains.key_box"

router = APIRouter(tags=["domains"])

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+[a-z]{{2,63}}$")
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


def _json(ctx: AppContext, domain: domains.SenderDomain) -> dict[str, Any]:
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


@router.post(PATH, status_code=201)
def create_domain(
    ctx: ContextDep, account: AccountDep, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    errors = []
    name = body.get("name")
    if not isinstance(name, str) or not _DOMAIN.match(name.strip().lower().rstrip(".")):
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
            account_id=account.id,
            domain=name.strip().lower().rstrip("."),
            selector=selector.lower(),
            algorithm=algorithm,
            private_key=key_box(ctx).seal(key.private_key.decode("ascii")),
            public_key=key.public_key,
            now=ctx.clock.now(),
        )
    if created is None:
        raise Conflict(f"the domain {name!r} already exists")
    return _json(ctx, created)


@router.get(PATH)
def list_domains(ctx: ContextDep, account: AccountDep) -> list[dict[str, Any]]:
    with ctx.store.read() as conn:
        found = domains.list_domains(conn, account_id=account.id)
    return [_json(ctx, d) for d in found]


def _get(ctx: AppContext, account_id: int, domain_id: int) -> domains.SenderDomain:
    with ctx.store.read() as conn:
        found = domains.get_domain(conn, account_id=account_id, domain_id=domain_id)
    if found is None:
        raise NotFound(f"no domain {domain_id}")
    return found


@router.get(PATH + "/{domain_id}")
def get_domain(ctx: ContextDep, account: AccountDep, domain_id: int) -> dict[str, Any]:
    return _json(ctx, _get(ctx, account.id, domain_id))


@router.post(PATH + "/{domain_id}/verify")
async def verify_domain(ctx: ContextDep, account: AccountDep, domain_id: int) -> dict[str, Any]:
    domain = await run_in_threadpool(_get, ctx, account.id, domain_id)
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
            return domains.get_domain(conn, account_id=account.id, domain_id=domain.id)

    updated = await run_in_threadpool(save)
    assert updated is not None
    return {**_json(ctx, updated), "checks": report}


@router.delete(PATH + "/{domain_id}", status_code=204)
def delete_domain(ctx: ContextDep, account: AccountDep, domain_id: int) -> Response:
    with ctx.store.write() as conn:
        deleted = domains.delete_domain(conn, account_id=account.id, domain_id=domain_id)
    if deleted is False:
        raise NotFound(f"no domain {domain_id}")
    if deleted is None:
        raise Conflict("messages of this domain are waiting for relay")
    return Response(status_code=204)
