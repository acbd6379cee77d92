"""/openapi.json describes every operation of SendPost's SDK that this platform serves: the
path and method the SDK calls (read from the SDK's generated code), a named request body
schema where the SDK sends one, and a JSON schema for the success answer (for the operations
Custom SMTP refuses, the documented error answer instead)."""

from __future__ import annotations

import inspect
import re

import sendpost_python_sdk as sp
from sendpost_platform.app import create_app
from sendpost_platform.config import Settings
from sendpost_platform.store import Store

from tests.platform.sendpost_api.test_no_silent_loss import APIS

_CALL = re.compile(r"method='(\w+)',\s*resource_path='([^']+)'")
_BODY = re.compile(r"_body_params = (\w+)")
REFUSED = {
    ("GET", "/api/v1/account/ip/"): "404",
    ("GET", "/api/v1/account/ip/{ip_id}"): "404",
    ("PUT", "/api/v1/account/ip/{ip_id}"): "404",
    ("DELETE", "/api/v1/account/ip/{ip_id}"): "404",
    ("PUT", "/api/v1/account/ip/allocate"): "404",
    ("GET", "/api/v1/account/subaccount/stat/{subaccount_id}/group"): "422",
    ("GET", "/api/v1/account/stat/group"): "422",
    ("GET", "/api/v1/account/stat/aggregate/group"): "422",
}


def sdk_operations() -> dict[tuple[str, str], bool]:
    """(method, path) of every operation of the APIs → whether the SDK sends a body."""
    found = {}
    for api in APIS:
        for name, function in inspect.getmembers(api, inspect.isfunction):
            if not name.endswith("_serialize"):
                continue
            source = inspect.getsource(function)
            call = _CALL.search(source)
            assert call is not None, name
            found[(call[1], "/api/v1" + call[2])] = _BODY.search(source) is not None
    return found


def test_every_sdk_operation_is_documented(sqlite_store: Store) -> None:
    """Each SDK operation of IPPoolsApi, DomainApi, SuppressionApi, MessageApi, StatsApi,
    StatsAApi, SubAccountApi and IPApi is in the document with its body and answer schemas."""
    settings = Settings(database_url=str(sqlite_store.engine.url), secret_key="k")
    document = create_app(settings, store=sqlite_store).openapi()
    operations = sdk_operations()
    # 5 pools, 4 domains, 3 suppressions, 2 messages, 3 + 4 statistics, 5 sub-accounts, 5 IPs
    assert len(operations) == 31
    problems = []
    for (method, path), has_body in sorted(operations.items()):
        operation = document["paths"].get(path, {}).get(method.lower())
        if operation is None:
            problems.append(f"{method} {path}: missing")
            continue
        if has_body and path not in {p for _, p in REFUSED}:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            if "$ref" not in schema:
                problems.append(f"{method} {path}: request body has no named schema")
        status = REFUSED.get((method, path)) or next(
            s for s in operation["responses"] if s[0] == "2"
        )
        answer = operation["responses"][status].get("content", {}).get("application/json", {})
        if not answer.get("schema"):
            problems.append(f"{method} {path}: {status} has no JSON schema")
    assert problems == []
    assert sp.IPPool.__name__ in document["components"]["schemas"]
