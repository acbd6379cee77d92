"""IP pools (``X-Account-ApiKey``) at SendPost's paths: which Custom SMTP providers carry a
sub-account's mail, and how a message picks one.

SendPost's ``IPPoolsApi``:

- ``POST /api/v1/account/ippool`` (``IPPoolCreateRequest``) → 200 ``IPPool``;
  ``GET /api/v1/account/ippool`` (``limit``, ``offset``, ``search``) → ``[IPPool]``;
  ``GET|PUT|DELETE /api/v1/account/ippool/{ippool_id}`` → ``IPPool`` / 200 ``{id, message}``.
  ``PUT`` changes only the fields it carries; the result is validated as a whole.
- ``tpsps``: the pool's members, IDs of the account's Custom SMTP providers (TPSP type 3).
- ``routingStrategy`` (SendPost's encoding) and ``routingMetaData`` (a JSON *string*), entities
  written ``TPSP_<provider id>``:

  - ``0`` round robin: ``"{}"`` or ``""``; every member in turn.
  - ``1`` email provider: ``{"<type>": "[\"TPSP_1\"]", ..., "others": "[...]"}``, types as
    SendPost numbers them (0 Gmail, 1 Yahoo, 2 AOL, 3 Microsoft, 4 Comcast, 5 Yandex, 6 GMX,
    7 Mail.ru, 8 iCloud, 9 Zoho, 10 QQ, 11 default = ``others``); the value may also be a
    plain JSON array.
  - ``2`` volume percentage: ``{"TPSP_1": 20, "TPSP_2": 80}`` (integers 1–1000, shares of the
    total; a smooth weighted round robin makes them exact over each cycle).
  - ``3`` sending domain: ``{"shop.example": "[\"TPSP_1\"]", "others": "[\"TPSP_2\"]"}``.

  For 1–3 every member must appear in the rules and every entity must be a member (``tpsps``
  may be left out: the entities are the members). Answers carry the rules in this canonical form.
- ``shouldOverflow`` / ``overflowPoolName``: stored; when no provider of the pool is live (all
  deleted) a send through it routes through the named pool instead (``sending.py``). Custom
  SMTP has no "at capacity": a provider over its ``maxRatePerHour`` queues, it never refuses,
  so that half of SendPost's overflow does not apply. The overflow pool must exist, differ from
  the pool, and a pool named as another's overflow cannot be deleted.
- ``ips`` (dedicated IPs) and ``IP_<id>`` entities: Custom SMTP has none; anything but an empty
  list is refused (422 naming the field), as is every field the SDK does not define.

The dashboard creates pools through :func:`parse_pool` (the platform's own shape: strategy names,
``providers`` with weights and rules) and lists them with :func:`summary`. Routing rules:
``domain/routing.py``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field, StrictInt, StrictStr
from sqlalchemy.engine import Connection

from sendpost_platform.api.auth import AccountDep
from sendpost_platform.api.deps import AppContext, ContextDep, IdPath, PageLimit, PageOffset
from sendpost_platform.api.domains import DOMAIN_NAME
from sendpost_platform.api.sendpost import (
    UNPROCESSABLE,
    DeleteResponse,
    RequestModel,
    ResponseModel,
    SendPostRoute,
    nanos,
    refuse,
)
from sendpost_platform.domain.routing import KNOWN_MAILBOX_PROVIDERS, OTHERS, PoolMember, Strategy
from sendpost_platform.errors import BadRequest, Conflict, NotFound
from sendpost_platform.store import pools, providers
from sendpost_platform.store.accounts import Account

PATH = "/api/v1/account/ippool"

router = APIRouter(tags=["IP pools"], route_class=SendPostRoute)


def summary(pool: pools.StoredPool) -> dict[str, Any]:
    """The dashboard's view of a pool (strategy names, members with their rules)."""
    return {
        "id": pool.id,
        "name": pool.name,
        "strategy": pool.strategy,
        "routingStrategy": STRATEGY_CODES.index(Strategy(pool.strategy)),
        "overflowTo": pool.overflow.pool_name if pool.overflow.should else None,
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


def dashboard_pools(ctx: AppContext, account: Account) -> list[dict[str, Any]]:
    """The account's pools in :func:`summary` form (the dashboard's list)."""
    with ctx.store.read() as conn:
        return [summary(p) for p in pools.list_pools(conn, account_id=account.id)]


def dashboard_create(ctx: AppContext, account: Account, body: Any) -> dict[str, Any]:
    """Create a pool from the dashboard's form body (:func:`parse_pool`; 400/409 as errors)."""
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
    return summary(created)


def _live(ctx: AppContext, account_id: int) -> set[int]:
    with ctx.store.read() as conn:
        return {p.id for p in providers.list_providers(conn, account_id=account_id)}


# --- SendPost's encoding ---------------------------------------------------------------------

STRATEGY_CODES: tuple[Strategy, ...] = (
    Strategy.round_robin,
    Strategy.mailbox_provider,
    Strategy.weighted,
    Strategy.sending_domain,
)
"""``routingStrategy`` 0–3 as SendPost numbers them."""

EMAIL_TYPES: dict[str, str] = {
    "0": "gmail",
    "1": "yahoo",
    "2": "aol",
    "3": "microsoft",
    "4": "comcast",
    "5": "yandex",
    "6": "gmx",
    "7": "mailru",
    "8": "apple",
    "9": "zoho",
    "10": "qq",
    "11": OTHERS,
    "others": OTHERS,
}
"""SendPost's email provider types (strategy 1 keys) → ``domain/routing.py`` names."""
_TYPE_KEYS = {name: key for key, name in EMAIL_TYPES.items() if key != "11"}

_ENTITY = re.compile(r"TPSP_([1-9][0-9]{0,17})")
_NO_IPS = "Custom SMTP has no dedicated IPs; pools route through tpsps (TPSP_<provider id>)"


def _entity(text: str, field: str, problems: list[tuple[str, str]]) -> int | None:
    found = _ENTITY.fullmatch(text)
    if found is None:
        why = _NO_IPS if text.startswith("IP_") else "must be an entity TPSP_<provider id>"
        problems.append((field, f"{text[:40]!r}: {why}"))
        return None
    return int(found.group(1))


def _entities(value: Any, field: str, problems: list[tuple[str, str]]) -> list[int]:
    """A rule's value: a JSON array of entities, or (SendPost's form) that array as a string."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        problems.append((field, 'must be a non-empty array of entities such as ["TPSP_1"]'))
        return []
    found = [_entity(v, field, problems) for v in value]
    return [pid for pid in found if pid is not None]


def _rule_key(strategy: Strategy, key: str, field: str, problems: list[tuple[str, str]]) -> str:
    text = key.strip().lower().rstrip(".")
    if strategy is Strategy.mailbox_provider:
        name = EMAIL_TYPES.get(text)
        if name is None:
            problems.append((field, "keys are SendPost email types 0–11 or others"))
            return ""
        return name
    if text in ("others", "*"):
        return "*"
    if not DOMAIN_NAME.match(text):
        problems.append((field, "keys are sender domains (shop.example) or others"))
        return ""
    return text


def members_from_sendpost(
    code: int, metadata: str | None, tpsps: list[int] | None, live: set[int]
) -> tuple[Strategy, list[PoolMember]]:
    """``routingStrategy`` + ``routingMetaData`` + ``tpsps`` → the pool's routing; raises the
    422 naming every problem (module docstring for the forms)."""
    problems: list[tuple[str, str]] = []
    if not 0 <= code < len(STRATEGY_CODES):
        raise refuse(
            [
                (
                    "routingStrategy",
                    "must be 0 (round robin), 1 (email provider), 2 (volume percentage)"
                    " or 3 (sending domain)",
                )
            ]
        )
    strategy = STRATEGY_CODES[code]
    rules: Any = {}
    if metadata is not None and metadata.strip():
        try:
            rules = json.loads(metadata)
        except ValueError:
            rules = None
    if not isinstance(rules, dict):
        raise refuse([("routingMetaData", "must be a JSON object, as a string")])
    weights: dict[int, int] = {}
    keys: dict[int, list[str]] = {}
    if strategy is Strategy.round_robin and rules:
        problems.append(("routingMetaData", 'must be "{}" or "" for round robin (0)'))
    elif strategy is Strategy.weighted:
        for key, value in rules.items():
            field = f"routingMetaData.{key[:40]}"
            pid = _entity(key.strip(), field, problems)
            if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 6:
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000:
                problems.append((field, "must be a volume share, an integer 1–1000"))
            elif pid is not None:
                weights[pid] = value
    elif strategy is not Strategy.round_robin:
        for key, value in rules.items():
            field = f"routingMetaData.{key[:40]}"
            name = _rule_key(strategy, key, field, problems)
            for pid in _entities(value, field, problems):
                if name and name not in keys.setdefault(pid, []):
                    keys[pid].append(name)
    mentioned = list(dict.fromkeys([*weights, *keys]))
    if tpsps is None:
        member_ids = mentioned
    else:
        member_ids = list(tpsps)
        if len(set(tpsps)) != len(tpsps):
            problems.append(("tpsps", "lists a provider more than once"))
        problems += [
            ("routingMetaData", f"TPSP_{pid} is not one of tpsps")
            for pid in mentioned
            if pid not in tpsps
        ]
        if strategy is not Strategy.round_robin:
            problems += [
                ("tpsps", f"provider {pid} is in no rule of routingMetaData")
                for pid in dict.fromkeys(tpsps)
                if pid not in mentioned
            ]
    if not member_ids:
        problems.append(("tpsps", "must list at least one Custom SMTP provider"))
    problems += [
        ("tpsps", f"no Custom SMTP provider {pid} in this account")
        for pid in dict.fromkeys(member_ids)
        if pid not in live
    ]
    if problems:
        raise refuse(problems)
    by_domain = strategy is Strategy.sending_domain
    members = [
        PoolMember(
            str(pid),
            weights.get(pid, 1),
            () if by_domain else tuple(keys.get(pid, ())),
            tuple(keys.get(pid, ())) if by_domain else (),
        )
        for pid in dict.fromkeys(member_ids)
    ]
    return strategy, members


def routing_meta_data(pool: pools.StoredPool) -> str:
    """The pool's rules as SendPost's ``routingMetaData`` string (canonical form)."""
    strategy = Strategy(pool.strategy)
    if strategy is Strategy.round_robin:
        return "{}"
    if strategy is Strategy.weighted:
        return json.dumps({f"TPSP_{m.provider_id}": m.weight for m in pool.members})
    rules: dict[str, list[str]] = {}
    for m in pool.members:
        if strategy is Strategy.mailbox_provider:
            names = [_TYPE_KEYS.get(k, k) for k in m.mailbox_providers]
        else:
            names = ["others" if d == "*" else d for d in m.sending_domains or ("*",)]
        for name in names:
            rules.setdefault(name, []).append(f"TPSP_{m.provider_id}")
    return json.dumps({k: json.dumps(v) for k, v in rules.items()})


class EIP(RequestModel):
    """SendPost's ``EIP``: a dedicated IP (refused here: Custom SMTP has none)."""

    public_ip: StrictStr = Field(alias="publicIP")


class IPPoolCreateRequest(RequestModel):
    """SendPost's ``IPPoolCreateRequest``."""

    name: StrictStr = Field(min_length=1, max_length=100)
    ips: list[EIP] | None = None
    tpsps: list[StrictInt] | None = Field(default=None, max_length=1000)
    routing_strategy: StrictInt = 0
    routing_meta_data: StrictStr | None = Field(default=None, max_length=65536)
    should_overflow: bool = False
    overflow_pool_name: StrictStr | None = Field(default=None, max_length=100)


class IPPoolUpdateRequest(RequestModel):
    """SendPost's ``IPPoolUpdateRequest``: only the fields present change."""

    name: StrictStr | None = Field(default=None, min_length=1, max_length=100)
    ips: list[EIP] | None = None
    tpsps: list[StrictInt] | None = Field(default=None, max_length=1000)
    routing_strategy: StrictInt | None = None
    routing_meta_data: StrictStr | None = Field(default=None, max_length=65536)
    should_overflow: bool | None = None
    overflow_pool_name: StrictStr | None = Field(default=None, max_length=100)


class IPPool(ResponseModel):
    """SendPost's ``IPPool`` (plus ``tpsps``, the members; ``ips`` is always empty here)."""

    id: int
    name: str
    routing_strategy: int
    routing_meta_data: str
    should_overflow: bool
    overflow_pool_name: str | None = None
    tpsps: list[int]
    ips: list[dict[str, Any]] = Field(default_factory=list)
    created: int = Field(description="UNIX epoch nanoseconds")


def pool_out(pool: pools.StoredPool) -> IPPool:
    return IPPool(
        id=pool.id,
        name=pool.name,
        routing_strategy=STRATEGY_CODES.index(Strategy(pool.strategy)),
        routing_meta_data=routing_meta_data(pool),
        should_overflow=pool.overflow.should,
        overflow_pool_name=pool.overflow.pool_name,
        tpsps=[int(m.provider_id) for m in pool.members],
        created=nanos(pool.created_at),
    )


def _overflow(
    conn: Connection, account_id: int, name: str, should: bool, target: str | None
) -> pools.Overflow:
    problems: list[tuple[str, str]] = []
    target = target.strip() if target is not None and target.strip() else None
    if should and target is None:
        problems.append(("overflowPoolName", "is required when shouldOverflow is true"))
    if target is not None:
        if target == name:
            problems.append(("overflowPoolName", "must name another pool"))
        elif pools.find_pool(conn, account_id=account_id, name=target) is None:
            problems.append(("overflowPoolName", f"no IP pool named {target!r}"))
    if problems:
        raise refuse(problems)
    return pools.Overflow(should, target)


def _overflowing_to(conn: Connection, account_id: int, name: str) -> list[str]:
    return [
        p.name
        for p in pools.list_pools(conn, account_id=account_id)
        if p.overflow.pool_name == name
    ]


def _no_ips(ips: list[EIP] | None) -> None:
    if ips:
        raise refuse([(f"ips[{i}].publicIP", _NO_IPS) for i in range(len(ips))])


@router.post(PATH, responses={409: {"description": "A pool of that name exists"}, **UNPROCESSABLE})
def create_ip_pool(ctx: ContextDep, account: AccountDep, body: IPPoolCreateRequest) -> IPPool:
    """Create an IP pool of Custom SMTP providers (200, as SendPost answers)."""
    _no_ips(body.ips)
    name = body.name.strip()
    strategy, members = members_from_sendpost(
        body.routing_strategy, body.routing_meta_data, body.tpsps, _live(ctx, account.id)
    )
    with ctx.store.write() as conn:
        overflow = _overflow(conn, account.id, name, body.should_overflow, body.overflow_pool_name)
        created = pools.create_pool(
            conn,
            account_id=account.id,
            name=name,
            strategy=strategy.value,
            members=members,
            now=ctx.clock.now(),
            overflow=overflow,
        )
    if created is None:
        raise Conflict(f"an IP pool named {name!r} already exists")
    return pool_out(created)


@router.get(PATH)
def get_all_ip_pools(
    ctx: ContextDep,
    account: AccountDep,
    limit: PageLimit = None,
    offset: PageOffset = 0,
    search: Annotated[str | None, Query(max_length=100)] = None,
) -> list[IPPool]:
    """The account's pools by ID; ``search``: name contains (case-insensitive)."""
    with ctx.store.read() as conn:
        found = pools.list_pools(conn, account_id=account.id)
    if search:
        found = [p for p in found if search.lower() in p.name.lower()]
    found = found[offset:]
    return [pool_out(p) for p in (found if limit is None else found[:limit])]


def _pool(conn: Connection, account_id: int, pool_id: int) -> pools.StoredPool:
    found = pools.get_pool(conn, account_id=account_id, pool_id=pool_id)
    if found is None:
        raise NotFound(f"no IP pool {pool_id}")
    return found


@router.get(PATH + "/{ippool_id}")
def get_ip_pool_by_id(ctx: ContextDep, account: AccountDep, ippool_id: IdPath) -> IPPool:
    with ctx.store.read() as conn:
        return pool_out(_pool(conn, account.id, ippool_id))


@router.put(
    PATH + "/{ippool_id}",
    responses={409: {"description": "Another pool has that name"}, **UNPROCESSABLE},
)
def update_ip_pool(
    ctx: ContextDep, account: AccountDep, ippool_id: IdPath, body: IPPoolUpdateRequest
) -> IPPool:
    """Change the fields the body carries; the pool that results is validated whole."""
    _no_ips(body.ips)
    given = body.model_fields_set
    live = _live(ctx, account.id)
    with ctx.store.write() as conn:
        current = pool_out(_pool(conn, account.id, ippool_id))
        name = body.name.strip() if body.name is not None else current.name
        strategy_changed = "routing_strategy" in given and body.routing_strategy is not None
        code = body.routing_strategy if strategy_changed else current.routing_strategy
        assert code is not None
        metadata = (
            body.routing_meta_data
            if "routing_meta_data" in given
            else None
            if strategy_changed and code != current.routing_strategy
            else current.routing_meta_data
        )
        tpsps = body.tpsps if "tpsps" in given else current.tpsps
        if "routing_meta_data" in given and "tpsps" not in given and code != 0:
            tpsps = None  # new rules name the members
        strategy, members = members_from_sendpost(code, metadata, tpsps, live)
        should = (
            body.should_overflow if body.should_overflow is not None else current.should_overflow
        )
        target = (
            body.overflow_pool_name if "overflow_pool_name" in given else current.overflow_pool_name
        )
        overflow = _overflow(conn, account.id, name, should, target)
        clash = pools.find_pool(conn, account_id=account.id, name=name)
        if clash is not None and clash.id != ippool_id:
            raise Conflict(f"an IP pool named {name!r} already exists")
        if name != current.name and _overflowing_to(conn, account.id, current.name):
            raise Conflict(
                f"pools {', '.join(_overflowing_to(conn, account.id, current.name))} overflow to"
                f" {current.name!r}; change them before renaming it"
            )
        updated = pools.update_pool(
            conn,
            account_id=account.id,
            pool_id=ippool_id,
            name=name,
            strategy=strategy.value,
            members=members,
            now=ctx.clock.now(),
            overflow=overflow,
        )
    assert updated is not None
    return pool_out(updated)


@router.delete(
    PATH + "/{ippool_id}", responses={409: {"description": "Another pool overflows to it"}}
)
def delete_ip_pool(ctx: ContextDep, account: AccountDep, ippool_id: IdPath) -> DeleteResponse:
    with ctx.store.write() as conn:
        pool = _pool(conn, account.id, ippool_id)
        users = _overflowing_to(conn, account.id, pool.name)
        if users:
            raise Conflict(f"pools {', '.join(users)} overflow to {pool.name!r}")
        pools.delete_pool(conn, account_id=account.id, pool_id=ippool_id)
    return DeleteResponse(id=ippool_id, message=f"IP pool {pool.name!r} deleted")
