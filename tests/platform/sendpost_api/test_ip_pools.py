"""SendPost's ``IPPoolsApi`` through the official SDK: every operation, SendPost's encoding of
the four strategies (``TPSP_<id>`` entities), overflow, and the refusals."""

from __future__ import annotations

import json

import pytest
import sendpost_python_sdk as sp
from sendpost_python_sdk.exceptions import NotFoundException, UnauthorizedException

from tests.platform.sendpost_api.conftest import Sdk


def _api(sdk: Sdk) -> sp.IPPoolsApi:
    return sp.IPPoolsApi(sdk.client)


def _auth(sdk: Sdk) -> dict[str, str]:
    # The SDK's update_ip_pool sends no auth header at all (its generated code lists no auth
    # setting for that operation), so callers must add X-Account-ApiKey themselves.
    return {"X-Account-ApiKey": sdk.account_key}


def test_every_operation_round_trips(sdk: Sdk) -> None:
    """Create (200 + IPPool), list, get, update and delete (200 + {id, message}) work from the
    SDK; the pool's members and rules come back in SendPost's encoding."""
    api = _api(sdk)
    first = sdk.seed.provider.id
    second, _ = sdk.seed.other_provider("second")
    created = api.create_ip_pool(
        sp.IPPoolCreateRequest(name="main", tpsps=[first, second.id], routing_strategy=0)
    )
    assert (created.name, created.routing_strategy, created.routing_meta_data) == (
        "main",
        0,
        "{}",
    )
    assert created.id is not None
    assert created.created
    assert created.created > 10**18
    assert [p.name for p in api.get_all_ip_pools()] == ["main"]
    assert api.get_ip_pool_by_id(created.id).to_dict() == created.to_dict()
    rules = {"0": json.dumps([f"TPSP_{first}"]), "others": json.dumps([f"TPSP_{second.id}"])}
    updated = api.update_ip_pool(
        created.id,
        sp.IPPoolUpdateRequest(routing_strategy=1, routing_meta_data=json.dumps(rules)),
        _headers=_auth(sdk),
    )
    assert updated.routing_strategy == 1
    assert json.loads(updated.routing_meta_data or "") == rules
    assert updated.name == "main"
    gone = api.delete_ip_pool(created.id)
    assert gone.id == created.id
    assert "deleted" in (gone.message or "")
    with pytest.raises(NotFoundException):
        api.get_ip_pool_by_id(created.id)


def test_update_without_key_is_refused(sdk: Sdk) -> None:
    """As the SDK sends it (no header), update_ip_pool is 401: the key is required."""
    api = _api(sdk)
    created = api.create_ip_pool(sp.IPPoolCreateRequest(name="p", tpsps=[sdk.seed.provider.id]))
    with pytest.raises(UnauthorizedException):
        api.update_ip_pool(created.id, sp.IPPoolUpdateRequest(name="q"))


@pytest.mark.parametrize(
    ("strategy", "rules", "stored"),
    [
        (2, {"TPSP_A": 20, "TPSP_B": 80}, {"TPSP_A": 20, "TPSP_B": 80}),
        (2, {"TPSP_A": "30", "TPSP_B": 70}, {"TPSP_A": 30, "TPSP_B": 70}),
        (
            3,
            {"shop.example": '["TPSP_A"]', "others": ["TPSP_B"]},
            {"shop.example": '["TPSP_A"]', "others": '["TPSP_B"]'},
        ),
        (
            1,
            {"3": ["TPSP_A", "TPSP_B"], "11": '["TPSP_B"]'},
            {"3": '["TPSP_A", "TPSP_B"]', "others": '["TPSP_B"]'},
        ),
    ],
)
def test_strategies_in_sendpost_encoding(
    sdk: Sdk, strategy: int, rules: dict[str, object], stored: dict[str, object]
) -> None:
    """Volume percentage, sending domain and email provider rules are read in SendPost's forms
    (values as JSON-array strings or arrays; shares as numbers or numeric strings) and answered
    in one canonical form; without ``tpsps`` the entities are the members."""
    a = sdk.seed.provider.id
    b, _ = sdk.seed.other_provider("b")

    def named(value: object) -> object:
        text = json.dumps(value).replace("TPSP_A", f"TPSP_{a}").replace("TPSP_B", f"TPSP_{b.id}")
        return json.loads(text)

    body = named(rules)
    created = _api(sdk).create_ip_pool(
        sp.IPPoolCreateRequest(
            name="rules", routing_strategy=strategy, routing_meta_data=json.dumps(body)
        )
    )
    assert created.routing_strategy == strategy
    assert json.loads(created.routing_meta_data or "") == named(stored)


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"name": "x", "tpsps": [1], "ips": [{"publicIP": "192.0.2.1"}]}, "ips[0].publicIP"),
        ({"name": "x", "routingStrategy": 7, "tpsps": [1]}, "routingStrategy"),
        (
            {"name": "x", "routingStrategy": 1, "routingMetaData": '{"0": ["IP_5"]}'},
            "routingMetaData.0",
        ),
        ({"name": "x", "routingStrategy": 2, "routingMetaData": "{not json"}, "routingMetaData"),
        ({"name": "x", "tpsps": [999999]}, "tpsps"),
        ({"name": "x", "tpsps": [1], "shouldOverflow": True}, "overflowPoolName"),
        ({"name": "x", "tpsps": [1], "overflowPoolName": "nope"}, "overflowPoolName"),
        ({"name": "x", "tpsps": [1], "warmupInterval": 3}, "warmupInterval"),
        ({"name": "x", "tpsps": ["1"]}, "tpsps[0]"),
    ],
)
def test_refusals_name_the_field(sdk: Sdk, request_body: dict[str, object], field: str) -> None:
    """Dedicated IPs, unknown strategies, IP entities, bad JSON, foreign providers, overflow
    without a pool, unknown fields and wrong types are refused with 422 naming the field."""
    body = json.loads(json.dumps(request_body).replace("[1]", f"[{sdk.seed.provider.id}]"))
    response = sdk.client.call_api(
        *sdk.client.param_serialize(
            "POST",
            "/account/ippool",
            header_params={"Content-Type": "application/json", **_auth(sdk)},
            body=body,
        )
    )
    response.read()
    assert response.status == 422, response.data
    assert field in [e["field"] for e in json.loads(response.data)["errors"]]


def test_overflow_is_stored_and_guarded(sdk: Sdk) -> None:
    """shouldOverflow/overflowPoolName are stored and answered; the overflow pool cannot be
    deleted or renamed while another pool overflows to it."""
    api = _api(sdk)
    pid = sdk.seed.provider.id
    backup = api.create_ip_pool(sp.IPPoolCreateRequest(name="backup", tpsps=[pid]))
    main = api.create_ip_pool(
        sp.IPPoolCreateRequest(
            name="main", tpsps=[pid], should_overflow=True, overflow_pool_name="backup"
        )
    )
    assert (main.should_overflow, main.overflow_pool_name) == (True, "backup")
    assert backup.id is not None
    with pytest.raises(sp.ApiException) as refused:
        api.delete_ip_pool(backup.id)
    assert refused.value.status == 409
    with pytest.raises(sp.ApiException) as renamed:
        api.update_ip_pool(backup.id, sp.IPPoolUpdateRequest(name="b2"), _headers=_auth(sdk))
    assert renamed.value.status == 409
