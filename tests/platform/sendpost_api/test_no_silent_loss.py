"""No silent loss: every field of every request model of SendPost's SDK for these APIs is
either honoured (visible in the object the platform answers or stores) or refused (422 naming
it; for the dedicated-IP operations, the whole operation is refused with 404
``no_dedicated_ips``). The models are enumerated from the SDK's API classes, so a field the
SDK adds fails :func:`test_every_request_field_is_classified` until it is handled here."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

import pytest
import sendpost_python_sdk as sp
from pydantic import BaseModel
from sendpost_platform.store.schema import ip_pool_members, ip_pools, suppressions

from tests.platform.sendpost_api.conftest import Sdk

APIS = (
    sp.IPPoolsApi,
    sp.DomainApi,
    sp.SuppressionApi,
    sp.MessageApi,
    sp.StatsApi,
    sp.StatsAApi,
    sp.SubAccountApi,
    sp.IPApi,
)


def _models_in(annotation: Any) -> set[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return {annotation}
    found: set[type[BaseModel]] = set()
    for arg in typing.get_args(annotation):
        found |= _models_in(arg)
    return found


def request_models() -> set[type[BaseModel]]:
    """The body models the APIs' operations take, and the models nested in them."""
    found: set[type[BaseModel]] = set()
    for api in APIS:
        for name, method in inspect.getmembers(api, inspect.isfunction):
            if name.startswith("_") or name.endswith(
                ("_with_http_info", "_without_preload_content")
            ):
                continue
            for param, hint in typing.get_type_hints(method, include_extras=True).items():
                if param != "return":
                    found |= _models_in(hint)
    pending = list(found)
    while pending:
        model = pending.pop()
        for field in model.model_fields.values():
            for nested in _models_in(field.annotation) - found:
                found.add(nested)
                pending.append(nested)
    return found


def request_fields() -> set[tuple[str, str]]:
    return {
        (model.__name__, field.alias or name)
        for model in request_models()
        for name, field in model.model_fields.items()
    }


# --- how each field is honoured or refused -----------------------------------------------------


def call(
    sdk: Sdk, method: str, path: str, body: Any = None, *, sub: bool = False
) -> tuple[int, Any]:
    """One request through the SDK's own client and serialiser (models become their JSON)."""
    key = (
        {"X-SubAccount-ApiKey": sdk.seed.account.subaccount_key}
        if sub
        else {"X-Account-ApiKey": sdk.account_key}
    )
    headers = {**key, **({"Content-Type": "application/json"} if body is not None else {})}
    response = sdk.client.call_api(
        *sdk.client.param_serialize(method, path, header_params=headers, body=body)
    )
    response.read()
    return response.status, json.loads(response.data) if response.data else None


def refused(answer: tuple[int, Any], field: str) -> None:
    status, body = answer
    assert status == 422, body
    assert field in [e["field"] for e in body["errors"]], body


def no_ips(answer: tuple[int, Any]) -> None:
    status, body = answer
    assert (status, body["code"]) == (404, "no_dedicated_ips"), body


def pool(sdk: Sdk, **fields: Any) -> tuple[int, Any]:
    body = sp.IPPoolCreateRequest(name=fields.pop("name", "p"), **fields)
    return call(sdk, "POST", "/account/ippool", body)


def existing_pool(sdk: Sdk) -> int:
    status, created = pool(sdk, name="base", tpsps=[sdk.seed.provider.id])
    assert status == 200, created
    return int(created["id"])


def update(sdk: Sdk, **fields: Any) -> tuple[int, Any]:
    return call(
        sdk, "PUT", f"/account/ippool/{existing_pool(sdk)}", sp.IPPoolUpdateRequest(**fields)
    )


def backup_pool(sdk: Sdk) -> None:
    assert pool(sdk, name="backup", tpsps=[sdk.seed.provider.id])[0] == 200


def _pool_field(key: str, value: Any, *, create: bool) -> Callable[[Sdk], None]:
    """Set ``key`` (with what it needs to be valid) and find it in the pool answered."""

    def check(sdk: Sdk) -> None:
        pid = sdk.seed.provider.id
        given = value(pid) if callable(value) else value
        fields: dict[str, Any] = {_attr[key]: given}
        if key in ("shouldOverflow", "overflowPoolName"):
            backup_pool(sdk)
            fields |= {"should_overflow": True, "overflow_pool_name": "backup"}
        if key == "routingMetaData":
            fields["routing_strategy"] = 2
        if create and "tpsps" not in fields and "routing_meta_data" not in fields:
            fields["tpsps"] = [pid]
        status, answer = pool(sdk, **fields) if create else update(sdk, **fields)
        assert status == 200, answer
        if key == "routingMetaData":
            assert json.loads(answer[key]) == json.loads(given)
        else:
            assert answer[key] == given

    return check


_attr = {
    "name": "name",
    "tpsps": "tpsps",
    "routingStrategy": "routing_strategy",
    "routingMetaData": "routing_meta_data",
    "shouldOverflow": "should_overflow",
    "overflowPoolName": "overflow_pool_name",
}


def _weights(pid: int) -> str:
    return json.dumps({f"TPSP_{pid}": 7})


def _pool_cases(model: str, *, create: bool) -> dict[tuple[str, str], Callable[[Sdk], None]]:
    cases: dict[tuple[str, str], Callable[[Sdk], None]] = {
        (model, "name"): _pool_field("name", "renamed", create=create),
        (model, "tpsps"): _pool_field("tpsps", lambda pid: [pid], create=create),
        (model, "routingMetaData"): _pool_field("routingMetaData", _weights, create=create),
        (model, "shouldOverflow"): _pool_field("shouldOverflow", True, create=create),
        (model, "overflowPoolName"): _pool_field("overflowPoolName", "backup", create=create),
    }

    def strategy(sdk: Sdk) -> None:
        pid = sdk.seed.provider.id
        fields = {"routing_strategy": 2, "routing_meta_data": _weights(pid)}
        status, answer = pool(sdk, tpsps=[pid], **fields) if create else update(sdk, **fields)
        assert (status, answer["routingStrategy"]) == (200, 2), answer

    def ips(sdk: Sdk) -> None:
        fields = {"ips": [sp.EIP(public_ip="192.0.2.1")]}
        answer = (
            pool(sdk, tpsps=[sdk.seed.provider.id], **fields) if create else update(sdk, **fields)
        )
        refused(answer, "ips[0].publicIP")

    cases[(model, "routingStrategy")] = strategy
    cases[(model, "ips")] = ips
    return cases


def _eip(sdk: Sdk) -> None:
    refused(
        pool(sdk, tpsps=[sdk.seed.provider.id], ips=[sp.EIP(public_ip="192.0.2.9")]),
        "ips[0].publicIP",
    )


def _domain_name(sdk: Sdk) -> None:
    status, answer = call(
        sdk, "POST", "/subaccount/domain", sp.CreateDomainRequest(name="walk.example"), sub=True
    )
    assert (status, answer["name"]) == (201, "walk.example"), answer


_SUPPRESSION_TYPES = {
    "manual": (sp.CreateSuppressionRequestManualInner, 0),
    "unsubscribe": (sp.CreateSuppressionRequestUnsubscribeInner, 1),
    "hardBounce": (sp.CreateSuppressionRequestHardBounceInner, 2),
    "spamComplaint": (sp.CreateSuppressionRequestSpamComplaintInner, 3),
}
_SUPPRESSION_ATTR = {
    "manual": "manual",
    "unsubscribe": "unsubscribe",
    "hardBounce": "hard_bounce",
    "spamComplaint": "spam_complaint",
}


def _suppress(kind: str) -> Callable[[Sdk], None]:
    def check(sdk: Sdk) -> None:
        inner, code = _SUPPRESSION_TYPES[kind]
        address = f"{kind.lower()}@example.org"
        body = sp.CreateSuppressionRequest(**{_SUPPRESSION_ATTR[kind]: [inner(email=address)]})
        status, answer = call(sdk, "POST", "/subaccount/suppression", body, sub=True)
        assert status == 200, answer
        assert [(s["email"], s["reason"]) for s in answer] == [(address, code)]

    return check


def _unsuppress(sdk: Sdk) -> None:
    _suppress("manual")(sdk)
    body = sp.DeleteSuppressionRequest(
        suppressions=[sp.DeleteSuppressionRequestSuppressionsInner(email="manual@example.org")]
    )
    status, answer = call(sdk, "DELETE", "/subaccount/suppression", body, sub=True)
    assert (status, answer["message"]) == (200, "1 suppression(s) deleted"), answer


def _new_sub(sdk: Sdk) -> None:
    status, answer = call(sdk, "POST", "/account/subaccount/", sp.NewSubAccount(name="Walk"))
    assert (status, answer["name"]) == (201, "Walk"), answer


def _rename_sub(sdk: Sdk) -> None:
    sub = sdk.seed.account.subaccount_id
    status, answer = call(
        sdk, "PUT", f"/account/subaccount/{sub}", sp.UpdateSubAccount(name="Renamed")
    )
    assert (status, answer["name"]) == (200, "Renamed"), answer


def _allocate(sdk: Sdk) -> None:
    body = sp.IPAllocationRequest(ips=["192.0.2.1"], auto_warmup_enabled=True)
    no_ips(call(sdk, "PUT", "/account/ip/allocate", body))


def _ip_update(sdk: Sdk) -> None:
    no_ips(call(sdk, "PUT", "/account/ip/1", sp.IPUpdateRequest(auto_warmup_enabled=True)))


CASES: dict[tuple[str, str], Callable[[Sdk], None]] = {
    **_pool_cases("IPPoolCreateRequest", create=True),
    **_pool_cases("IPPoolUpdateRequest", create=False),
    ("EIP", "publicIP"): _eip,
    ("CreateDomainRequest", "name"): _domain_name,
    **{("CreateSuppressionRequest", kind): _suppress(kind) for kind in _SUPPRESSION_TYPES},
    **{
        (inner.__name__, "email"): _suppress(kind)
        for kind, (inner, _) in _SUPPRESSION_TYPES.items()
    },
    ("DeleteSuppressionRequest", "suppressions"): _unsuppress,
    ("DeleteSuppressionRequestSuppressionsInner", "email"): _unsuppress,
    ("NewSubAccount", "name"): _new_sub,
    ("UpdateSubAccount", "name"): _rename_sub,
    ("IPAllocationRequest", "ips"): _allocate,
    ("IPAllocationRequest", "autoWarmupEnabled"): _allocate,
    ("IPUpdateRequest", "autoWarmupEnabled"): _ip_update,
}


def test_every_request_field_is_classified() -> None:
    """The request models of IPPoolsApi, DomainApi, SuppressionApi, MessageApi, StatsApi,
    StatsAApi, SubAccountApi and IPApi, enumerated from the SDK, have exactly the fields this
    module checks: none is left unexamined."""
    assert request_fields() == set(CASES)
    assert {m.__name__ for m in request_models()} >= {
        "IPPoolCreateRequest",
        "CreateSuppressionRequest",
        "NewSubAccount",
        "IPAllocationRequest",
    }


@pytest.mark.parametrize("model", sorted({model for model, _ in CASES}))
def test_each_field_is_honoured_or_refused(sdk: Sdk, model: str) -> None:
    """Each field of ``model``, set alone (with what it needs), is honoured in the answer or
    refused naming it; one platform per model, a fresh store each time."""
    for (owner, field), check in sorted(CASES.items()):
        if owner != model:
            continue
        with sdk.seed.store.write() as conn:
            conn.execute(ip_pool_members.delete())
            conn.execute(ip_pools.delete())
            conn.execute(suppressions.delete())
        try:
            check(sdk)
        except AssertionError as exc:
            raise AssertionError(f"{model}.{field}: {exc}") from exc
