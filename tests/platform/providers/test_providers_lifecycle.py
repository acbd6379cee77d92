"""Providers after creation: agent status, update with re-test, delete, key rotation."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from sendpost_platform.clock import ManualClock
from sendpost_platform.store import Store, accounts

from devtools.smtp_servers import TestServer, refusing_port

BASE = "/api/v1/tpsp/custom-smtp"
INGEST = "/api/v1/tpsp/custom-smtp/events"


@pytest.fixture
def headers(store: Store, clock: ManualClock) -> dict[str, str]:
    with store.write() as conn:
        key = accounts.create_account(conn, name="Acme", now=clock.now()).account_key
    return {"X-Account-ApiKey": key}


@pytest.fixture
def server() -> Any:
    with TestServer(users={"relay": "Relay-Pa55word"}) as smtp:
        yield smtp


async def _created(client: httpx.AsyncClient, headers: dict[str, str], port: int) -> dict[str, Any]:
    body = {
        "name": "mta",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": "relay",
        "password": "Relay-Pa55word",
        "testFrom": "probe@sender.example",
        "testTo": "check@receiver.example",
    }
    response = await client.post(BASE, json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _ingest(client: httpx.AsyncClient, key: str) -> int:
    event = {"message_id": str(uuid.uuid4()), "event_type": "delivered"}
    response = await client.post(
        INGEST, json={"events": [event]}, headers={"X-SP-Event-ApiKey": key}
    )
    return response.status_code


async def test_agent_status_goes_never_ok_stale(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer, clock: ManualClock
) -> None:
    """never before the first batch; ok right after one; stale 15 minutes and a second later."""
    created = await _created(client, headers, server.port)
    url = f"{BASE}/{created['id']}"
    seen_at = clock.advance(60)
    assert await _ingest(client, created["eventIngestionApiKey"]) == 200
    fresh = (await client.get(url, headers=headers)).json()
    clock.advance(minutes=15)
    still = (await client.get(url, headers=headers)).json()
    clock.advance(1)
    stale = (await client.get(BASE, headers=headers)).json()[0]
    assert (
        created["agentStatus"],
        fresh["agentStatus"],
        still["agentStatus"],
        stale["agentStatus"],
    ) == ("never", "ok", "ok", "stale")
    assert seen_at.strftime("%Y-%m-%dT%H:%M:%SZ") == fresh["agentLastSeenAt"]


async def test_non_connection_change_is_not_retested(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """Changing name, rate or test addresses needs no SMTP test: it works with the server gone."""
    with TestServer(users={"relay": "Relay-Pa55word"}) as smtp:
        created = await _created(client, headers, smtp.port)
    response = await client.patch(
        f"{BASE}/{created['id']}",
        json={"name": "renamed", "maxRatePerHour": 500, "testTo": "other@receiver.example"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert ("renamed", 500, "other@receiver.example", created["port"]) == (
        response.json()["name"],
        response.json()["maxRatePerHour"],
        response.json()["testTo"],
        response.json()["port"],
    )


async def test_connection_change_is_retested_and_refused_on_failure(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer
) -> None:
    """A new port that refuses connections: 422 at connect and the provider is unchanged."""
    created = await _created(client, headers, server.port)
    url = f"{BASE}/{created['id']}"
    with refusing_port() as port:
        response = await client.patch(
            url, json={"port": port, "password": "Relay-Pa55word"}, headers=headers
        )
    assert (response.status_code, response.json()["stage"]) == (422, "connect")
    assert server.port == (await client.get(url, headers=headers)).json()["port"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"host": "localhost"}, "host"),
        ({"port": "second"}, "port"),
        ({"security": "starttls"}, "security"),
        ({"username": "other-user"}, "username"),
    ],
)
async def test_moving_to_another_server_needs_the_password_again(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    server: TestServer,
    change: dict[str, str],
    field: str,
) -> None:
    """A PATCH that changes host, port, security or username without ``password`` answers 422
    naming ``body.password`` and the changed field; no server receives the stored password
    (no AUTH attempt at all) and the provider is unchanged."""
    created = await _created(client, headers, server.port)
    url = f"{BASE}/{created['id']}"
    seen_before = list(server.credentials)
    with TestServer(users={"relay": "Relay-Pa55word"}) as second:
        body = {k: (second.port if v == "second" else v) for k, v in change.items()}
        response = await client.patch(url, json=body, headers=headers)
        reached = (second.credentials, len(second.messages))
    assert 422 == response.status_code, response.text
    [error] = response.json()["errors"]
    assert "body.password" == error["field"]
    assert field in error["message"]
    assert ([], 0) == reached
    assert seen_before == server.credentials
    after = (await client.get(url, headers=headers)).json()
    assert (created["host"], created["port"], created["security"], created["username"]) == (
        after["host"],
        after["port"],
        after["security"],
        after["username"],
    )


async def test_moving_to_another_server_with_the_password_is_retested_there(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer
) -> None:
    """With the password given again, moving to another server re-runs the test there (one
    test message delivered to it) and the provider then points at it."""
    created = await _created(client, headers, server.port)
    with TestServer(users={"relay": "Relay-Pa55word"}) as second:
        response = await client.patch(
            f"{BASE}/{created['id']}",
            json={"port": second.port, "password": "Relay-Pa55word"},
            headers=headers,
        )
        delivered = len(second.messages)
    assert (200, second.port, 1) == (response.status_code, response.json()["port"], delivered)


async def test_put_to_another_server_needs_the_password_again(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer
) -> None:
    """PUT with another port and no password answers 422 naming ``body.password``; the same PUT
    with the password is accepted."""
    created = await _created(client, headers, server.port)
    url = f"{BASE}/{created['id']}"
    with TestServer(users={"relay": "Relay-Pa55word"}) as second:
        body = {
            "name": "mta",
            "host": "127.0.0.1",
            "port": second.port,
            "security": "none",
            "username": "relay",
            "testFrom": "probe@sender.example",
            "testTo": "check@receiver.example",
        }
        refused = await client.put(url, json=body, headers=headers)
        untouched = len(second.credentials)
        accepted = await client.put(
            url, json={**body, "password": "Relay-Pa55word"}, headers=headers
        )
    assert (422, "body.password", 0) == (
        refused.status_code,
        refused.json()["errors"][0]["field"],
        untouched,
    )
    assert (200, second.port) == (accepted.status_code, accepted.json()["port"])


async def test_moving_without_auth_needs_no_password(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer
) -> None:
    """Dropping AUTH (``username: null``) while changing the port needs no password: the stored
    one is cleared, not sent."""
    created = await _created(client, headers, server.port)
    with TestServer() as second:
        response = await client.patch(
            f"{BASE}/{created['id']}", json={"port": second.port, "username": None}, headers=headers
        )
    assert (200, second.port, False) == (
        response.status_code,
        response.json()["port"],
        response.json()["hasPassword"],
    )


async def test_new_password_is_retested_and_stored(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer
) -> None:
    """A wrong new password fails the re-test (422 auth); the old one keeps working after."""
    created = await _created(client, headers, server.port)
    url = f"{BASE}/{created['id']}"
    wrong = await client.patch(url, json={"password": "Not-It-123"}, headers=headers)
    same = await client.patch(url, json={"port": server.port}, headers=headers)
    assert (wrong.status_code, wrong.json()["stage"]) == (422, "auth")
    assert same.status_code == 200


async def test_removing_auth_with_username_null(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer
) -> None:
    """username null removes the credentials (re-tested without AUTH)."""
    created = await _created(client, headers, server.port)
    response = await client.patch(
        f"{BASE}/{created['id']}", json={"username": None}, headers=headers
    )
    assert (
        response.status_code,
        response.json()["username"],
        response.json()["hasPassword"],
    ) == (200, None, False)


async def test_patch_null_for_required_field_is_a_field_error(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer
) -> None:
    """PATCH {"host": null} answers 400 naming body.host."""
    created = await _created(client, headers, server.port)
    response = await client.patch(f"{BASE}/{created['id']}", json={"host": None}, headers=headers)
    assert (
        response.status_code,
        [e["field"] for e in response.json()["errors"]],
    ) == (400, ["body.host"])


async def test_put_replaces_fields_and_keeps_the_stored_password(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer
) -> None:
    """PUT without password keeps the stored one; omitted maxRatePerHour returns to 100."""
    created = await _created(client, headers, server.port)
    url = f"{BASE}/{created['id']}"
    await client.patch(url, json={"maxRatePerHour": 7}, headers=headers)
    body = {
        "name": "replaced",
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "username": "relay",
        "testFrom": "probe@sender.example",
        "testTo": "check@receiver.example",
        "verifyCertificate": False,
    }
    response = await client.put(url, json=body, headers=headers)
    assert (
        response.status_code,
        response.json()["name"],
        response.json()["maxRatePerHour"],
        response.json()["hasPassword"],
        response.json()["verifyCertificate"],
    ) == (200, "replaced", 100, True, False)


async def test_delete_hides_the_provider_and_revokes_its_key(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer
) -> None:
    """DELETE answers 204; the provider is gone (404, not listed); its key gets 401."""
    created = await _created(client, headers, server.port)
    url = f"{BASE}/{created['id']}"
    key = created["eventIngestionApiKey"]
    assert await _ingest(client, key) == 200
    assert (await client.delete(url, headers=headers)).status_code == 204
    assert (await client.get(url, headers=headers)).status_code == 404
    assert (await client.get(BASE, headers=headers)).json() == []
    assert await _ingest(client, key) == 401
    assert (await client.delete(url, headers=headers)).status_code == 404


async def test_rotation_keeps_the_old_key_for_the_grace_period(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer, clock: ManualClock
) -> None:
    """rotate-key returns a new key once; the old works until the grace (1 h here) ends."""
    created = await _created(client, headers, server.port)
    old = created["eventIngestionApiKey"]
    response = await client.post(f"{BASE}/{created['id']}/rotate-key", headers=headers)
    assert response.status_code == 200
    new = response.json()["eventIngestionApiKey"]
    assert old != new
    expected_expiry = (clock.now() + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert expected_expiry == response.json()["previousKeysExpireAt"]
    assert (await _ingest(client, old), await _ingest(client, new)) == (200, 200)
    clock.advance(3599)
    assert await _ingest(client, old) == 200
    clock.advance(1)
    assert (await _ingest(client, old), await _ingest(client, new)) == (401, 200)


async def test_rotation_after_a_leak_ends_the_old_keys_now(
    client: httpx.AsyncClient, headers: dict[str, str], server: TestServer
) -> None:
    """previousKeyGraceSeconds 0 ends the replaced key at once; a second rotation ends a key
    still in its grace from the first; a grace over the setting is a 400 naming the field."""
    created = await _created(client, headers, server.port)
    url = f"{BASE}/{created['id']}/rotate-key"
    first = created["eventIngestionApiKey"]
    second = (await client.post(url, headers=headers)).json()["eventIngestionApiKey"]
    assert await _ingest(client, first) == 200
    third = (await client.post(url, headers=headers)).json()["eventIngestionApiKey"]
    assert [401, 200, 200] == [await _ingest(client, k) for k in (first, second, third)]
    answer = await client.post(url, headers=headers, json={"previousKeyGraceSeconds": 0})
    fourth = answer.json()["eventIngestionApiKey"]
    assert [401, 401, 200] == [await _ingest(client, k) for k in (second, third, fourth)]
    too_long = await client.post(url, headers=headers, json={"previousKeyGraceSeconds": 10**9})
    assert too_long.status_code == 400
    assert "previousKeyGraceSeconds" in too_long.json()["errors"][0]["field"]
    assert await _ingest(client, fourth) == 200
