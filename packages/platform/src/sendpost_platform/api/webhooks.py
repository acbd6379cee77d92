"""Webhooks (``X-Account-ApiKey``), at SendPost's paths (the SDK's ``WebhookApi``).

- ``POST /api/v1/account/webhook`` → 201 ``Webhook`` plus ``secret`` (shown only this once);
- ``GET /api/v1/account/webhook?limit&offset&search`` → ``[AccountWebhookWithStats]``;
- ``GET|PUT|DELETE /api/v1/account/webhook/{id}``: PUT replaces the settings (the SDK sends
  every field); ``enabled: true`` on a ``disabled`` webhook re-enables it and replays its failed
  deliveries;
- ``POST /api/v1/account/webhook/{id}/replay`` (Custom SMTP addition): send the failed
  deliveries again → ``{"id", "replayed"}``.

Body: ``url`` (required; https, or http with the development setting) and the switches of
``domain/webhooks.SWITCHES`` plus ``enabled``, all booleans. Read-only fields (``id``,
``status``, ...) and unknown fields are refused with 422 naming them. The URL's host must not
resolve to loopback, private, link-local or metadata addresses unless
``SENDPOST_ALLOW_PRIVATE_NETWORKS`` is on (422 naming ``url``, with ``addressClass``).
Timestamps are nanoseconds since the epoch, as across SendPost's API.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.concurrency import run_in_threadpool

from sendpost_platform.api.auth import AccountDep
from sendpost_platform.api.deps import AppContext, ContextDep, IdPath, PageOffset
from sendpost_platform.crypto import SecretBox
from sendpost_platform.domain import webhooks as rules
from sendpost_platform.egress import EgressPolicy, EgressRefused
from sendpost_platform.errors import NotFound, Unprocessable
from sendpost_platform.store import webhooks as store

PATH = "/api/v1/account/webhook"
MAX_URL = 2048
READ_ONLY = ("id", "status", "disabledAt", "disabledReason", "created", "successRate", "secret")

router = APIRouter(tags=["Webhooks"])

_REFUSED: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "A field is missing, invalid, read-only or unknown (``errors`` names each), "
        "or the URL's host is a refused address class (``addressClass``)"
    }
}


def _ns(when: dt.datetime | None) -> int:
    return 0 if when is None else int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def webhook_json(hook: store.StoredWebhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "enabled": hook.enabled,
        "url": hook.url,
        **{name: bool(hook.switches.get(name, False)) for name in rules.SWITCHES},
        "status": hook.status,
        "disabledAt": _ns(hook.disabled_at),
        "disabledReason": hook.disabled_reason or "",
        "created": _ns(hook.created_at),
    }


def _with_stats(hook: store.StoredWebhook) -> dict[str, Any]:
    total = hook.delivered_count + hook.failed_count
    rate = 100.0 if total == 0 else round(100.0 * hook.delivered_count / total, 2)
    return {**webhook_json(hook), "successRate": rate}


def parse_body(body: Any, *, allow_http: bool) -> tuple[str, bool, dict[str, bool]]:
    """(url, enabled, switches) from a create or update body; raises 422 naming every bad or
    refused field."""
    if not isinstance(body, dict):
        raise Unprocessable(
            "the body must be a JSON object",
            errors=[{"field": "body", "message": "must be an object"}],
        )
    errors: list[dict[str, str]] = []
    for key in body:
        if key in READ_ONLY:
            errors.append({"field": key, "message": "is read-only"})
        elif key not in rules.SWITCHES and key not in ("url", "enabled"):
            errors.append({"field": key, "message": "is not a webhook field"})
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        errors.append({"field": "url", "message": "is required: the endpoint's URL"})
    else:
        problem = _url_problem(url.strip(), allow_http=allow_http)
        if problem:
            errors.append({"field": "url", "message": problem})
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.append({"field": "enabled", "message": "must be true or false"})
    switches: dict[str, bool] = {}
    for name, default in rules.SWITCHES.items():
        value = body.get(name, default)
        if not isinstance(value, bool):
            errors.append({"field": name, "message": "must be true or false"})
        else:
            switches[name] = value
    if errors:
        raise Unprocessable("invalid webhook", errors=errors)
    assert isinstance(url, str)
    assert isinstance(enabled, bool)
    return url.strip(), enabled, switches


def _url_problem(url: str, *, allow_http: bool) -> str | None:
    if len(url) > MAX_URL:
        return f"must be at most {MAX_URL} characters"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        return "must be an https:// URL" + (" (or http://)" if allow_http else "")
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if parts.fragment:
        return "must not have a fragment"
    if port == 0:
        return "must not use port 0"
    return None


async def check_destination(egress: EgressPolicy, url: str) -> None:
    """422 naming ``url`` when its host is, or resolves to, a refused address or no address."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        await egress.resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except EgressRefused as exc:
        raise Unprocessable(
            str(exc), errors=[{"field": "url", "message": str(exc)}], extra=exc.to_json()
        ) from None
    except OSError as exc:
        raise Unprocessable(f"url: {exc}", errors=[{"field": "url", "message": str(exc)}]) from None


def _egress(ctx: AppContext) -> EgressPolicy:
    return EgressPolicy.from_settings(ctx.settings)


@router.post(PATH, status_code=201, responses=_REFUSED)
async def create_webhook(
    ctx: ContextDep, account: AccountDep, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    url, enabled, switches = parse_body(body, allow_http=ctx.settings.allow_private_networks)
    await check_destination(_egress(ctx), url)
    secret = rules.new_secret()
    sealed = SecretBox(ctx.settings.secret_key, purpose=rules.SECRET_PURPOSE).seal(secret)

    def write() -> store.StoredWebhook:
        with ctx.store.write() as conn:
            return store.create_webhook(
                conn,
                account_id=account.id,
                url=url,
                enabled=enabled,
                switches=switches,
                secret_encrypted=sealed,
                now=ctx.clock.now(),
            )

    created = await run_in_threadpool(write)
    return {**webhook_json(created), "secret": secret}


@router.get(PATH)
def list_webhooks(
    ctx: ContextDep,
    account: AccountDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    offset: PageOffset = 0,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:
    with ctx.store.read() as conn:
        found = store.list_webhooks(
            conn, account_id=account.id, limit=limit, offset=offset, search=search
        )
    return [_with_stats(h) for h in found]


@router.get(PATH + "/{webhook_id}")
def get_webhook(ctx: ContextDep, account: AccountDep, webhook_id: IdPath) -> dict[str, Any]:
    with ctx.store.read() as conn:
        found = store.get_webhook(conn, account_id=account.id, webhook_id=webhook_id)
    if found is None:
        raise NotFound(f"no webhook {webhook_id}")
    return webhook_json(found)


@router.put(PATH + "/{webhook_id}", responses=_REFUSED)
async def update_webhook(
    ctx: ContextDep, account: AccountDep, webhook_id: IdPath, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    url, enabled, switches = parse_body(body, allow_http=ctx.settings.allow_private_networks)
    await check_destination(_egress(ctx), url)

    def write() -> store.StoredWebhook | None:
        with ctx.store.write() as conn:
            return store.update_webhook(
                conn,
                account_id=account.id,
                webhook_id=webhook_id,
                url=url,
                enabled=enabled,
                switches=switches,
                now=ctx.clock.now(),
            )

    updated = await run_in_threadpool(write)
    if updated is None:
        raise NotFound(f"no webhook {webhook_id}")
    return webhook_json(updated)


@router.delete(PATH + "/{webhook_id}")
def delete_webhook(ctx: ContextDep, account: AccountDep, webhook_id: IdPath) -> dict[str, Any]:
    with ctx.store.write() as conn:
        deleted = store.delete_webhook(conn, account_id=account.id, webhook_id=webhook_id)
    if not deleted:
        raise NotFound(f"no webhook {webhook_id}")
    return {"id": webhook_id, "message": "Webhook deleted"}


@router.post(PATH + "/{webhook_id}/replay")
def replay_webhook(ctx: ContextDep, account: AccountDep, webhook_id: IdPath) -> dict[str, Any]:
    with ctx.store.write() as conn:
        found = store.get_webhook(conn, account_id=account.id, webhook_id=webhook_id)
        if found is None:
            raise NotFound(f"no webhook {webhook_id}")
        replayed = store.replay(conn, webhook_id=webhook_id, now=ctx.clock.now())
    return {"id": webhook_id, "replayed": replayed}
