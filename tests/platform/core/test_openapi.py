"""The OpenAPI document, and a bounded schemathesis run that must find no 500."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.store import Store, accounts, messages

from devtools.smtp_servers import TestServer
from tests.platform.conftest import add_provider

# Operations that open outbound SMTP connections to the host in the request: every generated body
# that names a host is pointed at a loopback SMTP server (the development setting allows it), so
# fuzzing them never dials anything else.
OUTBOUND = re.compile(r"^/api/v1/tpsp/(test/)?custom-smtp(/\{[^}]+\})?$")


@pytest.fixture
def fuzz_env(sqlite_store: Store) -> tuple[FastAPI, dict[str, str]]:
    clock = ManualClock()
    with sqlite_store.write() as conn:
        created = accounts.create_account(conn, name="Fuzz", now=clock.now())
        provider, key = add_provider(conn, created.account_id, clock)
        messages.insert_message(
            conn,
            account_id=created.account_id,
            subaccount_id=created.subaccount_id,
            recipient="r@example.com",
            sender="s@example.com",
            now=clock.now(),
            provider_id=provider.id,
            state="sent",
        )
    settings = Settings(
        database_url=str(sqlite_store.engine.url),
        secret_key="fuzz",
        allow_private_networks=True,  # the provider operations reach a loopback SMTP server only
        smtp_test_timeout=2.0,
    )
    app = create_app(settings, clock=clock, store=sqlite_store)
    headers = {
        "X-Account-ApiKey": created.account_key,
        "X-SubAccount-ApiKey": created.subaccount_key,
        "X-SP-Event-ApiKey": key,
    }
    return app, headers


@pytest.fixture
def smtp_server() -> Iterator[TestServer]:
    with TestServer() as server:
        yield server


@pytest.mark.slow
def test_no_operation_answers_500(
    fuzz_env: tuple[FastAPI, dict[str, str]], smtp_server: TestServer
) -> None:
    """Whatever the generated request (with valid keys), no answer is a server error
    (a bounded number of examples per operation), and every status answered is one the
    document lists for that operation."""
    app, headers = fuzz_env
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    document = app.openapi()
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            database=None,
        )
        def no_500(case: Any) -> None:
            if OUTBOUND.match(case.operation.path) and isinstance(case.body, dict):
                if "host" in case.body:
                    case.body["host"] = "127.0.0.1"
                if "port" in case.body or "host" in case.body:
                    case.body["port"] = smtp_server.port
            response = case.call(headers=headers)
            assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:500]}"
            documented = document["paths"][case.operation.path][case.method.lower()]["responses"]
            assert str(response.status_code) in documented, (
                f"{case.method} {case.path} answered {response.status_code}, not documented"
            )

        no_500()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert {
        "POST /api/v1/tpsp/custom-smtp/events",
        "GET /api/v1/events",
        "POST /api/v1/tpsp/custom-smtp",
        "POST /api/v1/tpsp/test/custom-smtp",
        "PATCH /api/v1/tpsp/custom-smtp/{provider_id}",
        "PUT /api/v1/tpsp/custom-smtp/{provider_id}",
        "POST /api/v1/subaccount/email/",
        "POST /api/v1/subaccount/email/template",
        "POST /api/v1/subaccount/template/",
        "PUT /api/v1/subaccount/template/{template_id}",
        "POST /api/v1/account/ippool",
        "PUT /api/v1/account/ippool/{ippool_id}",
        "POST /api/v1/subaccount/domain",
        "POST /api/v1/subaccount/suppression",
        "DELETE /api/v1/subaccount/suppression",
        "POST /api/v1/account/subaccount/",
        "PUT /api/v1/account/subaccount/{subaccount_id}",
        "GET /api/v1/account/message",
        "GET /api/v1/account/subaccount/stat/{subaccount_id}",
        "GET /api/v1/account/stat/aggregate",
        "PUT /api/v1/account/ip/allocate",
    } <= set(checked)


def test_openapi_lists_the_core_operations_and_key_headers(
    fuzz_env: tuple[FastAPI, dict[str, str]],
) -> None:
    """/openapi.json documents ingestion and events with their API-key headers."""
    app, _ = fuzz_env
    doc = app.openapi()
    assert {"post"} <= set(doc["paths"]["/api/v1/tpsp/custom-smtp/events"])
    assert {"get"} <= set(doc["paths"]["/api/v1/events"])
    schemes = {v["name"] for v in doc["components"]["securitySchemes"].values()}
    assert {"X-Account-ApiKey", "X-SP-Event-ApiKey"} <= schemes


def test_every_operation_documents_its_error_answers(
    fuzz_env: tuple[FastAPI, dict[str, str]],
) -> None:
    """Each operation lists 400 and 503; those taking a key also 401 and 429, those with path
    parameters 404, those with a body 413, each with the shared Error schema; FastAPI's 422
    validation answer (never given: validation errors are 400) is not listed."""
    app, _ = fuzz_env
    doc = app.openapi()
    assert {"error", "code"} == set(doc["components"]["schemas"]["Error"]["required"])
    missing = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            wanted = {"400", "503"}
            if operation.get("security"):
                wanted |= {"401", "429"}
            if "{" in path:
                wanted.add("404")
            if "requestBody" in operation:
                wanted.add("413")
            missing += [f"{method.upper()} {path} {s}" for s in sorted(wanted - set(responses))]
            validation = responses.get("422", {}).get("content", {}).get("application/json", {})
            assert "HTTPValidationError" not in str(validation), f"{method} {path}"
    assert [] == missing
    ingest = doc["paths"]["/api/v1/tpsp/custom-smtp/events"]["post"]["responses"]["401"]
    assert "Error" in ingest["content"]["application/json"]["schema"]["$ref"]
