"""The OpenAPI document, and a bounded schemathesis run that must find no 500."""

from __future__ import annotations

import re
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.store import Store, accounts, messages

from tests.platform.conftest import add_provider

# Operations that open outbound SMTP connections to the host in the request are left out: fuzzing
# them would dial random hosts. Their own tests drive them against local SMTP servers.
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
    settings = Settings(database_url=str(sqlite_store.engine.url), secret_key="fuzz")
    app = create_app(settings, clock=clock, store=sqlite_store)
    headers = {
        "X-Account-ApiKey": created.account_key,
        "X-SubAccount-ApiKey": created.subaccount_key,
        "X-SP-Event-ApiKey": key,
    }
    return app, headers


def test_no_operation_answers_500(fuzz_env: tuple[FastAPI, dict[str, str]]) -> None:
    """Whatever the generated request (with valid keys), no answer is a server error
    (a bounded number of examples per operation)."""
    app, headers = fuzz_env
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if OUTBOUND.match(operation.path) and operation.method.upper() != "GET":
            continue

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            database=None,
        )
        def no_500(case: Any) -> None:
            response = case.call(headers=headers)
            assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:500]}"

        no_500()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert {"POST /api/v1/tpsp/custom-smtp/events", "GET /api/v1/events"} <= set(checked)


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
