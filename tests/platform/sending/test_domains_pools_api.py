"""Domains API at SendPost's path (DKIM key, DNS records, verification over real DNS) and
the IP pools API's provider check."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.store import Store

from devtools.dns import DnsServer
from tests.platform.conftest import Seed


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture
async def api(
    settings: Settings, store: Store, clock: ManualClock, dns_server: DnsServer
) -> httpx.AsyncClient:
    settings = dataclasses.replace(
        settings,
        dns_nameserver="127.0.0.1",
        dns_port=dns_server.port,
        dns_timeout=2.0,
        bounce_cname_target="bounce.sendpost.example",
    )
    transport = httpx.ASGITransport(app=create_app(settings, clock=clock, store=store))
    return httpx.AsyncClient(transport=transport, base_url="http://platform.test")


def key(seed: Seed) -> dict[str, str]:
    return {"X-SubAccount-ApiKey": seed.account.subaccount_key}


def account_key(seed: Seed) -> dict[str, str]:
    return {"X-Account-ApiKey": seed.account.account_key}


async def test_domain_records_and_verification(
    api: httpx.AsyncClient, seed: Seed, dns_server: DnsServer
) -> None:
    """Creating a domain lists its DKIM TXT and sp-bounce CNAME; publishing them verifies it."""
    async with api:
        created = await api.post(
            "/api/v1/subaccount/domain",
            json={"name": "Shop.Example", "selector": "s1"},
            headers=key(seed),
        )
        assert created.status_code == 201, created.text
        domain = created.json()
        assert (domain["dkim"]["type"], domain["dkim"]["host"]) == (
            "TXT",
            "s1._domainkey.shop.example",
        )
        assert domain["dkim"]["textValue"].startswith("v=DKIM1; k=rsa; p=")
        assert domain["returnPath"] == {
            "type": "CNAME",
            "host": "sp-bounce.shop.example",
            "textValue": "bounce.sendpost.example",
        }
        path = f"/api/v1/subaccount/domain/{domain['id']}/verify"
        before = (await api.post(path, headers=key(seed))).json()
        assert (before["dkimVerified"], before["returnPathVerified"]) == (False, False)
        assert before["dkimFailureReason"].startswith("TXT s1._domainkey.shop.example: ")
        for record in (domain["dkim"], domain["returnPath"]):
            dns_server.add(record["host"], record["type"], record["textValue"])
        after = (await api.post(path, headers=key(seed))).json()
        assert (after["dkimVerified"], after["returnPathVerified"], after["verified"]) == (
            True,
            True,
            True,
        )
        assert after["dkimFailureReason"] == ""
        duplicate = await api.post(
            "/api/v1/subaccount/domain", json={"name": "shop.example"}, headers=key(seed)
        )
        assert duplicate.status_code == 409
        listed = (await api.get("/api/v1/subaccount/domain", headers=key(seed))).json()
        assert [d["name"] for d in listed] == ["shop.example"]
        old = await api.get("/api/v1/domains", headers=account_key(seed))
        assert old.status_code == 404


async def test_ed25519_domain_and_bad_fields(api: httpx.AsyncClient, seed: Seed) -> None:
    """Ed25519 is available on request; bad names, selectors and algorithms are each named
    (422, SendPost's status for a body it cannot process)."""
    async with api:
        ed = await api.post(
            "/api/v1/subaccount/domain",
            json={"name": "ed.example", "dkimAlgorithm": "ed25519"},
            headers=key(seed),
        )
        assert ed.status_code == 201
        assert ed.json()["dkim"]["textValue"].startswith("v=DKIM1; k=ed25519; p=")
        bad = await api.post(
            "/api/v1/subaccount/domain",
            json={"name": "no spaces", "selector": "-x"},
            headers=key(seed),
        )
        assert bad.status_code == 422
        assert [e["field"] for e in bad.json()["errors"]] == ["name", "selector"]
        algorithm = await api.post(
            "/api/v1/subaccount/domain",
            json={"name": "ok.example", "dkimAlgorithm": "dsa"},
            headers=key(seed),
        )
        assert algorithm.status_code == 422
        assert [e["field"] for e in algorithm.json()["errors"]] == ["dkimAlgorithm"]


async def test_pool_refuses_foreign_or_unknown_providers(
    api: httpx.AsyncClient, seed: Seed, store: Store, clock: ManualClock
) -> None:
    """A pool may only hold providers of its own account; each bad member is named."""
    from sendpost_platform.store import accounts

    from tests.platform.conftest import add_provider

    with store.write() as conn:
        stranger = accounts.create_account(conn, name="Other", now=clock.now())
        foreign, _ = add_provider(conn, stranger.account_id, clock)
    body = {"name": "p", "routingStrategy": 0, "tpsps": [foreign.id, 99999, seed.provider.id]}
    async with api:
        response = await api.post("/api/v1/account/ippool", json=body, headers=account_key(seed))
    assert response.status_code == 422
    assert [e["message"] for e in response.json()["errors"]] == [
        f"no Custom SMTP provider {foreign.id} in this account",
        "no Custom SMTP provider 99999 in this account",
    ]
