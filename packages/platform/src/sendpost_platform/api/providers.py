"""Custom SMTP providers: create (after a live SMTP test), test, list, read, update, delete, rotate.

All routes take the account key (``X-Account-ApiKey``) and speak camelCase JSON::

    POST   /api/v1/tpsp/custom-smtp                    201 provider + eventIngestionApiKey (once)
                                                       422 the SMTP test failed: its result
    POST   /api/v1/tpsp/test/custom-smtp               200 the SMTP test result, ok true or false;
                                                       nothing is created
    GET    /api/v1/tpsp/custom-smtp                    200 [provider]
    GET    /api/v1/tpsp/custom-smtp/{id}               200 provider | 404
    PATCH  /api/v1/tpsp/custom-smtp/{id}               200 provider; fields given are changed
    PUT    /api/v1/tpsp/custom-smtp/{id}               200 provider; every field is set (omitted
                                                       optional ones to their defaults)
    DELETE /api/v1/tpsp/custom-smtp/{id}               204; its ingestion keys stop working
    POST   /api/v1/tpsp/custom-smtp/{id}/rotate-key    200 {id, eventIngestionApiKey,
                                                       previousKeysExpireAt}

Request fields: ``name``, ``host``, ``port``, ``security`` (``none`` | ``starttls`` | ``tls``),
``username`` and ``password`` (together or neither), ``testFrom``, ``testTo``,
``maxRatePerHour`` (default 100), ``verifyCertificate`` (default true). Unknown fields and bad
values answer 400 with ``errors: [{field, message}]``, one per bad field. A provider in an answer
never carries the password: ``hasPassword`` says whether one is stored (encrypted with the
platform secret, ``crypto.SecretBox``). ``agentStatus`` is ``ok``, ``never``, ``stale``,
``unhealthy`` or ``key_rejected`` (``domain/agent_health.py``), ``agentSummary`` says it in one
line, and ``agent`` holds the agent's last heartbeat (version, source, lag, WAL depth, last
error) with ``agentReportAt``.

An update that changes a connection setting (host, port, security, username, password,
verifyCertificate) runs the SMTP test again with the resulting settings and changes nothing when
it fails (422). ``password`` omitted keeps the stored one, except when host, port, security or
username changes while AUTH stays on: then ``password`` is required again (422 naming
``body.password``), so the stored password is never sent to a server it was not given for;
``username: null`` removes both.

Outbound connections go through ``egress.EgressPolicy``: a host that is, or resolves to, a
loopback, private, link-local, CGNAT, multicast, reserved or metadata address is refused before
any connection with 422 ``{"error", "errors": [{"field": "body.host", ...}], "host", "address",
"addressClass"}`` (create, test and update alike), unless ``SENDPOST_ALLOW_PRIVATE_NETWORKS``.
The rotated-out ingestion key keeps working for ``SENDPOST_INGEST_KEY_GRACE`` (or the shorter
``previousKeyGraceSeconds`` of the request, 0 after a leak); keys rotated out by an earlier
rotation stop at once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sendpost_wire.schema import format_timestamp
from starlette.concurrency import run_in_threadpool

from sendpost_platform.api.auth import AccountDep, ingest_key_cache
from sendpost_platform.api.deps import AppContext, ContextDep, IdPath
from sendpost_platform.crypto import SecretBox
from sendpost_platform.domain import agent_health as agent_health_rules
from sendpost_platform.egress import EgressPolicy, EgressRefused
from sendpost_platform.errors import BadRequest, NotFound, Unprocessable
from sendpost_platform.smtp.connectivity import SmtpTestResult, SmtpTestSettings, run_smtp_test
from sendpost_platform.store import providers as provider_store

router = APIRouter(tags=["custom-smtp"])

CONNECTION_FIELDS = frozenset(
    {"host", "port", "security", "username", "password", "verify_certificate"}
)
DESTINATION_FIELDS = ("host", "port", "security", "username")
"""Changing any of these needs the password again: the stored one never follows them."""
_BOX = "providers.password_box"

_HOST = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?|[0-9A-Fa-f:]+)$"
_ADDRESS = r"^[^@\s<>]+@[^@\s<>]+$"

Name = Annotated[str, Field(min_length=1, max_length=200)]
Host = Annotated[str, Field(min_length=1, max_length=255, pattern=_HOST)]
Port = Annotated[int, Field(ge=1, le=65535)]
Security = Literal["none", "starttls", "tls"]
Username = Annotated[str, Field(min_length=1, max_length=255)]
Password = Annotated[str, Field(min_length=1, max_length=1024)]
Address = Annotated[str, Field(min_length=3, max_length=320, pattern=_ADDRESS)]
Rate = Annotated[int, Field(ge=1, le=10_000_000)]


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ProviderIn(_Body):
    """A whole provider (create, test, PUT)."""

    name: Name
    host: Host
    port: Port
    security: Security
    username: Username | None = None
    password: Password | None = None
    test_from: Address
    test_to: Address
    max_rate_per_hour: Rate = 100
    verify_certificate: bool = True


class ProviderPatch(_Body):
    """Some fields of a provider; only the fields present are changed."""

    name: Name | None = None
    host: Host | None = None
    port: Port | None = None
    security: Security | None = None
    username: Username | None = None
    password: Password | None = None
    test_from: Address | None = None
    test_to: Address | None = None
    max_rate_per_hour: Rate | None = None
    verify_certificate: bool | None = None


def _box(ctx: AppContext) -> SecretBox:
    """The password box, built on first use (``CryptoError`` without a platform secret)."""
    box = ctx.extras.get(_BOX)
    if not isinstance(box, SecretBox):
        box = ctx.extras[_BOX] = SecretBox(ctx.settings.secret_key)
    return box


def _field_error(field: str, message: str) -> BadRequest:
    return BadRequest("invalid request", errors=[{"field": f"body.{field}", "message": message}])


def _stamp(value: dt.datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def agent_health(
    provider: provider_store.Provider, now: dt.datetime
) -> agent_health_rules.AgentHealth:
    return agent_health_rules.assess(
        last_seen=provider.agent_last_seen_at,
        report=provider.agent_report,
        report_at=provider.agent_report_at,
        key_rejected_at=provider.agent_key_rejected_at,
        now=now,
    )


def provider_json(provider: provider_store.Provider, now: dt.datetime) -> dict[str, Any]:
    health = agent_health(provider, now)
    return {
        "id": provider.id,
        "name": provider.name,
        "host": provider.host,
        "port": provider.port,
        "security": provider.security,
        "username": provider.username,
        "hasPassword": provider.password_encrypted is not None,
        "testFrom": provider.test_from,
        "testTo": provider.test_to,
        "maxRatePerHour": provider.max_rate_per_hour,
        "verifyCertificate": provider.verify_certificate,
        "createdAt": _stamp(provider.created_at),
        "updatedAt": _stamp(provider.updated_at),
        "agentLastSeenAt": _stamp(provider.agent_last_seen_at),
        "agentStatus": health.status,
        "agentSummary": health.summary,
        "agentReportAt": _stamp(provider.agent_report_at),
        "agent": provider.agent_report,
    }


def _test_settings(values: dict[str, Any]) -> SmtpTestSettings:
    return SmtpTestSettings(
        host=values["host"],
        port=values["port"],
        security=values["security"],
        test_from=values["test_from"],
        test_to=values["test_to"],
        username=values.get("username"),
        password=values.get("password"),
        verify_certificate=values["verify_certificate"],
    )


async def _smtp_test(ctx: AppContext, values: dict[str, Any]) -> SmtpTestResult:
    """Run the SMTP test under the platform's egress policy; a refused host answers 422."""
    try:
        return await run_smtp_test(
            _test_settings(values),
            timeout=ctx.settings.smtp_test_timeout,
            egress=EgressPolicy.from_settings(ctx.settings),
        )
    except EgressRefused as refused:
        raise Unprocessable(
            str(refused),
            errors=[{"field": "body.host", "message": str(refused)}],
            extra=refused.to_json(),
        ) from None


async def _require_passing_test(ctx: AppContext, values: dict[str, Any]) -> None:
    result = await _smtp_test(ctx, values)
    if not result.ok:
        raise Unprocessable(
            f"SMTP connectivity test failed at stage {result.stage}", extra=result.to_json()
        )


def _check_credentials(username: str | None, password: str | None) -> None:
    if username is not None and password is None:
        raise _field_error("password", "required when username is given")
    if password is not None and username is None:
        raise _field_error("username", "required when password is given")


def _load(ctx: AppContext, account_id: int, provider_id: int) -> provider_store.Provider:
    with ctx.store.read() as conn:
        provider = provider_store.get_provider(conn, account_id=account_id, provider_id=provider_id)
    if provider is None:
        raise NotFound(f"no Custom SMTP provider {provider_id}")
    return provider


ProviderId = IdPath


_REFUSED = {
    422: {
        "description": "The SMTP test failed (its result is in the body), the host is a refused "
        "address class, or the password is needed again for a new server"
    }
}


@router.post(
    "/api/v1/tpsp/test/custom-smtp",
    summary="Run the SMTP test, create nothing",
    responses=_REFUSED,  # type: ignore[arg-type]
)
async def test_provider(body: ProviderIn, account: AccountDep, ctx: ContextDep) -> dict[str, Any]:
    _check_credentials(body.username, body.password)
    result = await _smtp_test(ctx, body.model_dump())
    return result.to_json()


@router.post(
    "/api/v1/tpsp/custom-smtp",
    status_code=201,
    summary="Create a provider",
    responses=_REFUSED,  # type: ignore[arg-type]
)
async def create_provider(body: ProviderIn, account: AccountDep, ctx: ContextDep) -> dict[str, Any]:
    _check_credentials(body.username, body.password)
    values = body.model_dump()
    await _require_passing_test(ctx, values)
    sealed = _box(ctx).seal(body.password) if body.password is not None else None

    def write() -> tuple[provider_store.Provider, str]:
        with ctx.store.write() as conn:
            return provider_store.create_provider(
                conn,
                account_id=account.id,
                name=body.name,
                host=body.host,
                port=body.port,
                security=body.security,
                username=body.username,
                password_encrypted=sealed,
                test_from=body.test_from,
                test_to=body.test_to,
                max_rate_per_hour=body.max_rate_per_hour,
                verify_certificate=body.verify_certificate,
                now=ctx.clock.now(),
            )

    provider, key = await run_in_threadpool(write)
    return {**provider_json(provider, ctx.clock.now()), "eventIngestionApiKey": key}


@router.get("/api/v1/tpsp/custom-smtp", summary="List the account's providers")
def list_providers(account: AccountDep, ctx: ContextDep) -> list[dict[str, Any]]:
    with ctx.store.read() as conn:
        found = provider_store.list_providers(conn, account_id=account.id)
    now = ctx.clock.now()
    return [provider_json(p, now) for p in found]


@router.get("/api/v1/tpsp/custom-smtp/{provider_id}", summary="Read a provider")
def read_provider(provider_id: ProviderId, account: AccountDep, ctx: ContextDep) -> dict[str, Any]:
    return provider_json(_load(ctx, account.id, provider_id), ctx.clock.now())


async def _update(
    ctx: AppContext, account_id: int, provider_id: int, given: dict[str, Any]
) -> dict[str, Any]:
    current = await run_in_threadpool(_load, ctx, account_id, provider_id)
    box = _box(ctx)
    stored_password = (
        box.open(current.password_encrypted) if current.password_encrypted is not None else None
    )
    merged: dict[str, Any] = {
        "host": current.host,
        "port": current.port,
        "security": current.security,
        "username": current.username,
        "password": stored_password,
        "test_from": current.test_from,
        "test_to": current.test_to,
        "verify_certificate": current.verify_certificate,
    }
    merged.update({k: v for k, v in given.items() if k in merged})
    if "username" in given and given["username"] is None:
        merged["password"] = None
    if "password" in given and given["password"] is None:
        raise _field_error("password", "cannot be null; set username to null to remove AUTH")
    _check_credentials(merged["username"], merged["password"])
    moved = sorted(name for name in DESTINATION_FIELDS if merged[name] != getattr(current, name))
    if moved and merged["username"] is not None and "password" not in given:
        # The stored password is only ever sent to the server it was given for.
        message = (
            f"required again when {', '.join(to_camel(m) for m in moved)} changes: the stored "
            "password is not sent to a different server (or set username to null)"
        )
        raise Unprocessable(
            "password required", errors=[{"field": "body.password", "message": message}]
        )
    before = {name: getattr(current, name) for name in CONNECTION_FIELDS - {"password"}}
    before["password"] = stored_password
    retest = any(merged[name] != before[name] for name in CONNECTION_FIELDS)
    if retest:
        await _require_passing_test(ctx, merged)
    changes = {k: v for k, v in given.items() if k != "password"}
    if merged["password"] != stored_password:
        changes["password_encrypted"] = (
            box.seal(merged["password"]) if merged["password"] is not None else None
        )

    def write() -> provider_store.Provider | None:
        with ctx.store.write() as conn:
            return provider_store.update_provider(
                conn,
                account_id=account_id,
                provider_id=provider_id,
                changes=changes,
                now=ctx.clock.now(),
            )

    updated = await run_in_threadpool(write)
    if updated is None:
        raise NotFound(f"no Custom SMTP provider {provider_id}")
    return provider_json(updated, ctx.clock.now())


@router.patch(
    "/api/v1/tpsp/custom-smtp/{provider_id}",
    summary="Change some fields",
    responses=_REFUSED,  # type: ignore[arg-type]
)
async def patch_provider(
    provider_id: ProviderId, body: ProviderPatch, account: AccountDep, ctx: ContextDep
) -> dict[str, Any]:
    given = {name: getattr(body, name) for name in body.model_fields_set}
    nullable = {"username", "password"}
    for name, value in given.items():
        if value is None and name not in nullable:
            raise _field_error(to_camel(name), "cannot be null")
    return await _update(ctx, account.id, provider_id, given)


@router.put(
    "/api/v1/tpsp/custom-smtp/{provider_id}",
    summary="Replace all fields",
    responses=_REFUSED,  # type: ignore[arg-type]
)
async def put_provider(
    provider_id: ProviderId, body: ProviderIn, account: AccountDep, ctx: ContextDep
) -> dict[str, Any]:
    given = body.model_dump()
    if "password" not in body.model_fields_set:
        del given["password"]  # keep the stored one
    return await _update(ctx, account.id, provider_id, given)


@router.delete("/api/v1/tpsp/custom-smtp/{provider_id}", status_code=204, summary="Delete")
def delete_provider(provider_id: ProviderId, account: AccountDep, ctx: ContextDep) -> Response:
    with ctx.store.write() as conn:
        deleted = provider_store.delete_provider(
            conn, account_id=account.id, provider_id=provider_id, now=ctx.clock.now()
        )
    ingest_key_cache(ctx).invalidate()
    if not deleted:
        raise NotFound(f"no Custom SMTP provider {provider_id}")
    return Response(status_code=204)


class RotateRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    previous_key_grace_seconds: int | None = Field(
        default=None,
        ge=0,
        description="How long the replaced key keeps working (0: stops now, after a leak). "
        "Default and maximum: SENDPOST_INGEST_KEY_GRACE.",
    )


@router.post(
    "/api/v1/tpsp/custom-smtp/{provider_id}/rotate-key", summary="Rotate the ingestion key"
)
def rotate_key(
    provider_id: ProviderId,
    account: AccountDep,
    ctx: ContextDep,
    body: RotateRequest | None = None,
) -> dict[str, Any]:
    now = ctx.clock.now()
    longest = ctx.settings.ingest_key_grace
    asked = body.previous_key_grace_seconds if body is not None else None
    if asked is not None and asked > longest:
        raise _field_error(
            "previousKeyGraceSeconds", f"at most {int(longest)} (SENDPOST_INGEST_KEY_GRACE)"
        )
    grace = dt.timedelta(seconds=longest if asked is None else asked)
    with ctx.store.write() as conn:
        provider = provider_store.get_provider(conn, account_id=account.id, provider_id=provider_id)
        if provider is None:
            raise NotFound(f"no Custom SMTP provider {provider_id}")
        key = provider_store.rotate_ingest_key(conn, provider_id=provider_id, now=now, grace=grace)
    ingest_key_cache(ctx).invalidate()
    return {
        "id": provider_id,
        "eventIngestionApiKey": key,
        "previousKeysExpireAt": format_timestamp(now + grace),
    }
