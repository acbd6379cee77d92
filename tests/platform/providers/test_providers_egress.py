"""The provider API under the egress guard: without the development switch a host on loopback
is refused with 422 naming the address class, before any connection; with it, the same
request works."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.store import Store, accounts, providers

from devtools.smtp_servers import TestServer
from tests.platform.conftest import add_provider

BASE = "/api/v1/tpsp/custom-smtp"
TEST = "/api/v1/tpsp/test/custom-smtp"


@pytest.fixture
def strict(settings: Settings) -> Settings:
    """The provider settings with the development switch off: production behaviour."""
    return dataclasses.replace(settings, allow_private_networks=False)


@pytest.fixture
async def strict_client(
    strict: Settings, store: Store, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(strict, clock=clock, store=store))
    async with httpx.AsyncClient(transport=transport, base_url="http://platform.test") as c:
        yield c


@pytest.fixture
def account(store: Store, clock: ManualClock) -> accounts.NewAccount:
    with store.write() as conn:
        return accounts.create_account(conn, name="Acme", now=clock.now())


@pytest.fixture
def headers(account: accounts.NewAccount) -> dict[str, str]:
    return {"X-Account-ApiKey": account.account_key}


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback listener never accepted on: any connection made waits in its backlog."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def _connections(listener: socket.socket) -> int:
    count = 0
    for _ in range(100):
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1
    return count


def _body(host: str, port: int) -> dict[str, Any]:
    return {
        "name": "mta",
        "host": host,
        "port": port,
        "security": "none",
        "testFrom": "probe@sender.example",
        "testTo": "check@receiver.example",
    }


@pytest.mark.parametrize(
    ("host", "address", "address_class"),
    [
        ("127.0.0.1", "127.0.0.1", "loopback"),
        ("localhost", None, "loopback"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1", "loopback"),
        ("0.0.0.0", "0.0.0.0", "unspecified"),
    ],
)
async def test_create_refuses_a_loopback_host_with_422_naming_its_class(
    strict_client: httpx.AsyncClient,
    headers: dict[str, str],
    listener: socket.socket,
    host: str,
    address: str | None,
    address_class: str,
) -> None:
    """POST custom-smtp with a host on loopback: 422, ``errors`` names ``body.host`` and the
    class, ``addressClass``/``address`` say what was refused; nothing is created and the
    listening server never sees a connection."""
    port = listener.getsockname()[1]
    response = await strict_client.post(BASE, json=_body(host, port), headers=headers)
    assert 422 == response.status_code, response.text
    body = response.json()
    [error] = body["errors"]
    assert ("body.host", address_class, host) == (
        error["field"],
        body["addressClass"],
        body["host"],
    )
    if address is not None:
        assert address == body["address"]
        assert error["message"].startswith(f"{address} is ")
    assert f"{body['address']}" in body["error"]
    assert 0 == _connections(listener)
    assert [] == (await strict_client.get(BASE, headers=headers)).json()


async def test_create_message_names_the_class_for_127_0_0_1(
    strict_client: httpx.AsyncClient, headers: dict[str, str], listener: socket.socket
) -> None:
    """The exact wording a customer sees for 127.0.0.1."""
    port = listener.getsockname()[1]
    response = await strict_client.post(BASE, json=_body("127.0.0.1", port), headers=headers)
    assert response.json()["error"].startswith(
        "127.0.0.1 is a loopback address; connections to loopback, private, link-local, CGNAT, "
        "multicast, reserved and metadata addresses are refused"
    )


async def test_test_endpoint_refuses_too(
    strict_client: httpx.AsyncClient, headers: dict[str, str], listener: socket.socket
) -> None:
    """POST test/custom-smtp (which creates nothing) is no port-scan oracle either: 422 before
    any connection."""
    port = listener.getsockname()[1]
    response = await strict_client.post(TEST, json=_body("127.0.0.1", port), headers=headers)
    assert (422, "loopback", 0) == (
        response.status_code,
        response.json()["addressClass"],
        _connections(listener),
    )


async def test_update_to_a_loopback_host_is_refused_and_changes_nothing(
    strict_client: httpx.AsyncClient,
    headers: dict[str, str],
    listener: socket.socket,
    store: Store,
    clock: ManualClock,
    account: accounts.NewAccount,
) -> None:
    """PATCH moving a provider to 127.0.0.1: 422 naming the class, the provider keeps its host."""
    with store.write() as conn:
        provider, _ = add_provider(conn, account.account_id, clock)
        providers.update_provider(
            conn,
            account_id=account.account_id,
            provider_id=provider.id,
            changes={"host": "smtp.example.net"},
            now=clock.now(),
        )
    url = f"{BASE}/{provider.id}"
    port = listener.getsockname()[1]
    response = await strict_client.patch(
        url, json={"host": "127.0.0.1", "port": port}, headers=headers
    )
    assert (422, "loopback", 0) == (
        response.status_code,
        response.json()["addressClass"],
        _connections(listener),
    )
    assert "smtp.example.net" == (await strict_client.get(url, headers=headers)).json()["host"]


async def test_create_on_loopback_works_with_the_development_switch(
    client: httpx.AsyncClient, settings: Settings, headers: dict[str, str]
) -> None:
    """The same create against a real server on 127.0.0.1 succeeds when
    ``allow_private_networks`` is on (the setting the demo and these tests use)."""
    assert settings.allow_private_networks
    with TestServer() as server:
        response = await client.post(BASE, json=_body("127.0.0.1", server.port), headers=headers)
        delivered = len(server.messages)
    assert (201, 1) == (response.status_code, delivered)
