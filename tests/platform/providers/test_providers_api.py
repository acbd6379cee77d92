"""The Custom SMTP providers API: the real app on SQLite and PostgreSQL, real SMTP servers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.crypto import SecretBox
from sendpost_platform.store import Store, accounts
from sendpost_platform.store.schema import custom_smtp_providers, provider_ingest_keys

from devtools.smtp_servers import TestServer, TlsMaterial, refusing_port, stalling_port

BASE = "/api/v1/tpsp/custom-smtp"
INGEST = "/api/v1/tpsp/custom-smtp/events"


@pytest.fixture
def account_key(store: Store, clock: ManualClock) -> str:
    with store.write() as conn:
        return accounts.create_account(conn, name="Acme", now=clock.now()).account_key


@pytest.fixture
def server() -> Any:
    with TestServer(users={"relay": "Relay-Pa55word"}) as smtp:
        yield smtp


def _body(port: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Our Postfix",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": "relay",
        "password": "Relay-Pa55word",
        "testFrom": "probe@sender.example",
        "testTo": "check@receiver.example",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def _create(client: httpx.AsyncClient, key: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(BASE, json=body, headers={"X-Account-ApiKey": key})


async def _ingest_status(client: httpx.AsyncClient, ingest_key: str) -> int:
    event = {"message_id": str(uuid.uuid4()), "event_type": "delivered"}
    response = await client.post(
        INGEST, json={"events": [event]}, headers={"X-SP-Event-ApiKey": ingest_key}
    )
    return response.status_code


async def test_create_runs_the_test_and_returns_the_key_once(
    client: httpx.AsyncClient, account_key: str, server: TestServer
) -> None:
    """201 with the provider (no password) and its ingestion key; the test message arrived;
    the key works at ingestion; reading the provider later never shows the key again."""
    response = await _create(client, account_key, _body(server.port))
    assert response.status_code == 201, response.text
    created = response.json()
    assert len(server.messages) == 1
    assert {
        "name": "Our Postfix",
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "username": "relay",
        "hasPassword": True,
        "testFrom": "probe@sender.example",
        "testTo": "check@receiver.example",
        "maxRatePerHour": 100,
        "verifyCertificate": True,
        "agentLastSeenAt": None,
        "agentStatus": "never",
        "agentSummary": "agent never seen",
        "agentReportAt": None,
        "agent": None,
    }.items() <= created.items()
    assert "password" not in created
    assert created["eventIngestionApiKey"].startswith("spe_")
    assert await _ingest_status(client, created["eventIngestionApiKey"]) == 200
    read = await client.get(f"{BASE}/{created['id']}", headers={"X-Account-ApiKey": account_key})
    assert read.status_code == 200
    assert "eventIngestionApiKey" not in read.json()
    assert "Relay-Pa55word" not in read.text


async def test_password_is_encrypted_and_key_hashed_at_rest(
    client: httpx.AsyncClient, account_key: str, server: TestServer, store: Store
) -> None:
    """The stored row holds a sealed password (opens with the platform secret) and only a hash
    of the ingestion key."""
    created = (await _create(client, account_key, _body(server.port))).json()
    with store.read() as conn:
        sealed = conn.execute(sa.select(custom_smtp_providers.c.password_encrypted)).scalar_one()
        hashes = conn.execute(sa.select(provider_ingest_keys.c.key_hash)).scalars().all()
    assert "Relay-Pa55word" not in sealed
    assert SecretBox("test-secret-key").open(sealed) == "Relay-Pa55word"
    assert created["eventIngestionApiKey"] not in hashes
    assert len(hashes) == 1


@pytest.mark.parametrize(
    ("command", "reply", "stage"),
    [
        ("MAIL", "553 5.7.1 Sender address rejected", "mail"),
        ("RCPT", "550 5.1.1 User unknown", "rcpt"),
        ("DATA", "554 5.7.1 Rejected as spam", "data"),
    ],
)
async def test_failed_test_answers_422_with_the_result_and_creates_nothing(
    client: httpx.AsyncClient, account_key: str, command: str, reply: str, stage: str
) -> None:
    """A rejection answers 422 with the failing stage, code, reply, stages and transcript."""
    with TestServer(reject={command: reply}) as smtp:
        response = await _create(
            client, account_key, _body(smtp.port, username=None, password=None)
        )
    assert response.status_code == 422
    body = response.json()
    assert (False, stage, int(reply[:3]), reply[4:]) == (
        body["ok"],
        body["stage"],
        body["smtpCode"],
        body["reply"],
    )
    assert f"S: {reply}" == body["transcript"][-1]
    assert stage == body["stages"][-1]["stage"]
    listed = await client.get(BASE, headers={"X-Account-ApiKey": account_key})
    assert listed.json() == []


async def test_auth_rejected_answers_422_at_auth_without_leaking_the_password(
    client: httpx.AsyncClient, account_key: str, server: TestServer
) -> None:
    """Wrong SMTP password: 422 stage auth (535); the answer never contains the password."""
    response = await _create(client, account_key, _body(server.port, password="Wrong-Secret"))
    assert (
        response.status_code,
        response.json()["stage"],
        response.json()["smtpCode"],
    ) == (422, "auth", 535)
    assert "Wrong-Secret" not in response.text


async def test_connection_refused_answers_422_at_connect(
    client: httpx.AsyncClient, account_key: str
) -> None:
    """Nothing listening: 422 stage connect."""
    with refusing_port() as port:
        response = await _create(client, account_key, _body(port))
    assert (response.status_code, response.json()["stage"]) == (422, "connect")


async def test_certificate_is_verified_unless_the_provider_says_otherwise(
    client: httpx.AsyncClient,
    account_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """STARTTLS with an unknown CA: 422 at tls; with verifyCertificate false: 201; and with the
    CA in the trust store (SSL_CERT_FILE) and verification on: 201."""
    tls = TlsMaterial.create(tmp_path)
    with TestServer(starttls=tls) as smtp:
        plain = _body(smtp.port, security="starttls", username=None, password=None)
        refused = await _create(client, account_key, plain)
        unverified = await _create(client, account_key, {**plain, "verifyCertificate": False})
        monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
        trusted = await _create(client, account_key, plain)
    assert (refused.status_code, refused.json()["stage"]) == (422, "tls")
    assert (unverified.status_code, unverified.json()["verifyCertificate"]) == (201, False)
    assert trusted.status_code == 201


async def test_test_endpoint_answers_200_with_the_result_and_creates_nothing(
    client: httpx.AsyncClient, account_key: str, server: TestServer
) -> None:
    """POST /test/custom-smtp: 200 with ok true, or 200 with ok false and the stage."""
    headers = {"X-Account-ApiKey": account_key}
    passed = await client.post("/api/v1/tpsp/test/custom-smtp", json=_body(server.port))
    assert passed.status_code == 401
    passed = await client.post(
        "/api/v1/tpsp/test/custom-smtp", json=_body(server.port), headers=headers
    )
    failed = await client.post(
        "/api/v1/tpsp/test/custom-smtp",
        json=_body(server.port, password="nope-nope"),
        headers=headers,
    )
    assert (
        passed.status_code,
        passed.json()["ok"],
        passed.json()["stage"],
    ) == (200, True, None)
    assert (
        failed.status_code,
        failed.json()["ok"],
        failed.json()["stage"],
    ) == (200, False, "auth")
    assert (await client.get(BASE, headers=headers)).json() == []


async def test_validation_errors_name_each_bad_field(
    client: httpx.AsyncClient, account_key: str
) -> None:
    """400 with one entry per bad field (camelCase), before any SMTP test is attempted."""
    response = await _create(
        client,
        account_key,
        _body(70000, security="ssl", testFrom="not-an-address", maxRatePerHour=0, extra=1),
    )
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"body.port", "body.security", "body.testFrom", "body.maxRatePerHour", "body.extra"} == (
        fields
    )


async def test_username_without_password_is_a_field_error(
    client: httpx.AsyncClient, account_key: str
) -> None:
    """AUTH needs both: a username alone answers 400 naming body.password."""
    response = await _create(client, account_key, _body(25, password=None))
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["body.password"]


async def test_providers_are_private_to_their_account(
    client: httpx.AsyncClient,
    account_key: str,
    server: TestServer,
    store: Store,
    clock: ManualClock,
) -> None:
    """Another account can neither list, read, change nor delete the provider (404)."""
    created = (await _create(client, account_key, _body(server.port))).json()
    with store.write() as conn:
        other = accounts.create_account(conn, name="Other", now=clock.now()).account_key
    headers = {"X-Account-ApiKey": other}
    url = f"{BASE}/{created['id']}"
    assert (await client.get(BASE, headers=headers)).json() == []
    assert (await client.get(url, headers=headers)).status_code == 404
    assert (await client.patch(url, json={"name": "x"}, headers=headers)).status_code == 404
    assert (await client.delete(url, headers=headers)).status_code == 404
    assert (await client.post(f"{url}/rotate-key", headers=headers)).status_code == 404


async def test_stalling_server_answers_422_with_stage_timeout(
    store: Store, clock: ManualClock, account_key: str
) -> None:
    """A server that never greets: 422 with stage timeout within the configured limit."""
    settings = Settings(
        database_url=store.engine.url.render_as_string(hide_password=False),
        secret_key="test-secret-key",
        smtp_test_timeout=0.2,
        allow_private_networks=True,
    )
    app = create_app(settings, clock=clock, store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://platform.test") as client:
        with stalling_port() as port:
            response = await _create(client, account_key, _body(port, username=None, password=None))
    assert (response.status_code, response.json()["stage"]) == (422, "timeout")
    assert [(s["stage"], s["ok"]) for s in response.json()["stages"]] == [("connect", False)]
