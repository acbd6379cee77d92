"""IP pools (``X-Account-ApiKey``): which Custom SMTP providers carry a sub-account's mail.

- ``POST /api/v1/ippools`` → 201, ``GET /api/v1/ippools``, ``GET|PUT|DELETE /api/v1/ippools/{id}``.
- Body: ``{"name", "strategy": "round_robin" | "weighted" | "mailbox_provider" |
  "sending_domain", "providers": [{"id", "weight"?, "mailboxProviders"?, "sendingDomains"?}]}``.

Every provider must be a (not deleted) Custom SMTP provider of the same account. For
``mailbox_provider`` each member lists the providers it carries (``gmail``, ``yahoo``,
``microsoft``, ``apple``, ``aol``, ``others``); for ``sending_domain`` the sender domains (a
member without a list takes the rest). Routing rules: ``domain/routing.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from sendpost_platform.api.auth import AccountDep
from sendpost_platform.api.deps import ContextDep
from sendpost_platform.domain.routing import KNOWN_MAILBOX_PROVIDERS, PoolMember, Strategy
from sendpost_platform.errors import BadRequest, Conflict, NotFound
from sendpost_platform.store import pools, providers

PATH = "/api/v1/ippools"

router = APIRouter(tags=["IP pools"])


def _json(pool: pools.StoredPool) -> dict[str, Any]:
    return {
        "id": pool.id,
        "name": pool.name,
        "strategy": pool.strategy,
        "providers": [
            {
                "id": int(m.provider_id),
                "weight": m.weight,
                "mailboxProviders": list(m.mailbox_providers),
                "sendingDomains": list(m.sending_domains),
            }
            for m in pool.members
        ],
        "createdAt": pool.created_at.isoformat(),
        "updatedAt": pool.updated_at.isoformat(),
    }


def _strings(value: Any, field: str, errors: list[dict[str, str]]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        errors.append({"field": field, "message": "must be a list of strings"})
        return ()
    return tuple(v.strip().lower() for v in value)


def parse_pool(body: Any, live_providers: set[int]) -> tuple[str, Strategy, list[PoolMember]]:
    """Validate a pool body; raises :class:`BadRequest` naming every bad field."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    errors: list[dict[str, str]] = []
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors.append({"field": "name", "message": "must be a non-empty string (≤ 200 chars)"})
    strategy = body.get("strategy", Strategy.round_robin.value)
    if strategy not in {s.value for s in Strategy}:
        allowed = ", ".join(s.value for s in Strategy)
        errors.append({"field": "strategy", "message": f"must be one of {allowed}"})
    items = body.get("providers")
    members: list[PoolMember] = []
    if not isinstance(items, list) or not items:
        errors.append({"field": "providers", "message": "must be a non-empty list"})
        items = []
    for i, item in enumerate(items):
        field = f"providers[{i}]"
        if not isinstance(item, dict):
            errors.append({"field": field, "message": 'must be an object {"id": ...}'})
            continue
        provider_id = item.get("id")
        if not isinstance(provider_id, int) or isinstance(provider_id, bool):
            errors.append({"field": f"{field}.id", "message": "must be a provider ID"})
            continue
        if provider_id not in live_providers:
            errors.append(
                {"field": f"{field}.id", "message": f"no Custom SMTP provider {provider_id}"}
            )
            continue
        weight = item.get("weight", 1)
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 1000:
            errors.append({"field": f"{field}.weight", "message": "must be an integer 1–1000"})
            continue
        mailbox = _strings(item.get("mailboxProviders"), f"{field}.mailboxProviders", errors)
        unknown = sorted(set(mailbox) - KNOWN_MAILBOX_PROVIDERS)
        if unknown:
            allowed = ", ".join(sorted(KNOWN_MAILBOX_PROVIDERS))
            errors.append(
                {
                    "field": f"{field}.mailboxProviders",
                    "message": f"unknown {', '.join(unknown)}; known: {allowed}",
                }
            )
        domains = _strings(item.get("sendingDomains"), f"{field}.sendingDomains", errors)
        members.append(PoolMember(str(provider_id), weight, mailbox, domains))
    if errors:
        raise BadRequest("invalid request", errors=errors)
    assert isinstance(name, str)
    return name.strip(), Strategy(strategy), members


def _live(ctx: ContextDep, account_id: int) -> set[int]:
    with ctx.store.read() as conn:
        return {p.id for p in providers.list_providers(conn, account_id=account_id)}


@router.post(PATH, status_code=201)
def create_pool(
    ctx: ContextDep, account: AccountDep, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    name, strategy, members = parse_pool(body, _live(ctx, account.id))
    with ctx.store.write() as conn:
        created = pools.create_pool(
            conn,
            account_id=account.id,
            name=name,
            strategy=strategy.value,
            members=members,
            now=ctx.clock.now(),
        )
    if created is None:
        raise Conflict(f"an IP pool named {name!r} already exists")
    return _json(created)


@router.get(PATH)
def list_pools(ctx: ContextDep, account: AccountDep) -> list[dict[str, Any]]:
    with ctx.store.read() as conn:
        return [_json(p) for p in pools.list_pools(conn, account_id=account.id)]


@router.get(PATH + "/{pool_id}")
def get_pool(ctx: ContextDep, account: AccountDep, pool_id: int) -> dict[str, Any]:
    with ctx.store.read() as conn:
        found = pools.get_pool(conn, account_id=account.id, pool_id=pool_id)
    if found is None:
        raise NotFound(f"no IP pool {pool_id}")
    return _json(found)


@router.put(PATH + "/{pool_id}")
def update_pool(
    ctx: ContextDep, account: AccountDep, pool_id: int, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    name, strategy, members = parse_pool(body, _live(ctx, account.id))
    with ctx.store.write() as conn:
        clash = pools.find_pool(conn, account_id=account.id, name=name)
        if clash is not None and clash.id != pool_id:
            raise Conflict(f"an IP pool named {name!r} already exists")
        updated = pools.update_pool(
            conn,
            account_id=account.id,
            pool_id=pool_id,
            name=name,
            strategy=strategy.value,
            members=members,
            now=ctx.clock.now(),
        )
    if updated is None:
        raise NotFound(f"no IP pool {pool_id}")
    return _json(updated)


@router.delete(PATH + "/{pool_id}", status_code=204)
def delete_pool(ctx: ContextDep, account: AccountDep, pool_id: int) -> Response:
    with ctx.store.write() as conn:
        deleted = pools.delete_pool(conn, account_id=account.id, pool_id=pool_id)
    if not deleted:
        raise NotFound(f"no IP pool {pool_id}")
    return Response(status_code=204)
