"""Domains API (DKIM key, DNS records, verification over real DNS) and IP pools API."""

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
    return {"X-Account-ApiKey": seed.account.account_key}


async def test_domain_records_and_verification(
    api: httpx.AsyncClient, seed: Seed, dns_server: DnsServer
) -> None:
    """Creating a domain lists its DKIM TXT and sp-bounce CNAME; publishing them verifies it."""
    async with api:
        created = await api.post(
            "/api/v1/domains", json={"name": "Shop.Example", "selector": "s1"}, headers=key(seed)
        )
        assert created.status_code == 201, created.text
        domain = created.json()
        records = {r["purpose"]: r for r in domain["dnsRecords"]}
        assert (records["dkim"]["type"], records["dkim"]["name"]) == (
            "TXT",
            "s1._domainkey.shop.example",
        )
        assert records["dkim"]["value"].startswith("v=DKIM1; k=rsa; p=")
        assert records["return_path"] == {
            "purpose": "return_path",
            "type": "CNAME",
            "name": "sp-bounce.shop.example",
            "value": "bounce.sendpost.example",
        }
        path = f"/api/v1/domains/{domain['id']}/verify"
        before = (await api.post(path, headers=key(seed))).json()
        assert (before["dkimVerified"], before["returnPathVerified"]) == (False, False)
        for record in records.values():
            dns_server.add(record["name"], record["type"], record["value"])
        after = (await api.post(path, headers=key(seed))).json()
        assert (after["dkimVerified"], after["returnPathVerified"], after["verified"]) == (
            True,
            True,
            True,
        )
        duplicate = await api.post(
            "/api/v1/domains", json={"name": "shop.example"}, headers=key(seed)
        )
        assert duplicate.status_code == 409
        listed = (await api.get("/api/v1/domains", headers=key(seed))).json()
        assert [d["name"] for d in listed] == ["shop.example"]


async def test_ed25519_domain_and_bad_fields(api: httpx.AsyncClient, seed: Seed) -> None:
    """Ed25519 is available on request; bad names, selectors and algorithms are each named."""
    async with api:
        ed = await api.post(
            "/api/v1/domains",
            json={"name": "ed.example", "dkimAlgorithm": "ed25519"},
            headers=key(seed),
        )
        assert ed.status_code == 201
        assert ed.json()["dnsRecords"][0]["value"].startswith("v=DKIM1; k=ed25519; p=")
        bad = await api.post(
            "/api/v1/domains",
            json={"name": "no spaces", "selector": "-x", "dkimAlgorithm": "dsa"},
            headers=key(seed),
        )
        assert bad.status_code == 400
        assert [e["field"] for e in bad.json()["errors"]] == ["name", "selector", "dkimAlgorithm"]


async def test_pool_crud(api: httpx.AsyncClient, seed: Seed) -> None:
    """Pools are created, read, updated and deleted; members keep weights and rules."""
    other, _ = seed.other_provider("second")
    body = {
        "name": "main",
        "strategy": "weighted",
        "providers": [{"id": seed.provider.id, "weight": 2}, {"id": other.id, "weight": 3}],
    }
    async with api:
        created = await api.post("/api/v1/ippools", json=body, headers=key(seed))
        assert created.status_code == 201, created.text
        pool = created.json()
        assert [(p["id"], p["weight"]) for p in pool["providers"]] == [
            (seed.provider.id, 2),
            (other.id, 3),
        ]
        update = {
            "name": "main",
            "strategy": "mailbox_provider",
            "providers": [
                {"id": seed.provider.id, "mailboxProviders": ["gmail"]},
                {"id": other.id, "mailboxProviders": ["others"]},
            ],
        }
        url = f"/api/v1/ippools/{pool['id']}"
        updated = await api.put(url, json=update, headers=key(seed))
        assert updated.status_code == 200
        assert updated.json()["strategy"] == "mailbox_provider"
        fetched = (await api.get(url, headers=key(seed))).json()
        assert [p["mailboxProviders"] for p in fetched["providers"]] == [["gmail"], ["others"]]
        assert (await api.post("/api/v1/ippools", json=body, headers=key(seed))).status_code == 409
        assert (await api.delete(url, headers=key(seed))).status_code == 204
        assert (await api.get(url, headers=key(seed))).status_code == 404


async def test_pool_refuses_foreign_or_unknown_providers(
    api: httpx.AsyncClient, seed: Seed, store: Store, clock: ManualClock
) -> None:
    """A pool may only hold providers of its own account; each bad member is named."""
    from sendpost_platform.store import accounts

    from tests.platform.conftest import add_provider

    with store.write() as conn:
        stranger = accounts.create_account(conn, name="Other", now=clock.now())
        foreign, _ = add_provider(conn, stranger.account_id, clock)
    body = {
        "name": "p",
        "strategy": "round_robin",
        "providers": [{"id": foreign.id}, {"id": 99999}, {"id": seed.provider.id, "weight": 0}],
    }
    async with api:
        response = await api.post("/api/v1/ippools", json=body, headers=key(seed))
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [
        "providers[0].id",
        "providers[1].id",
        "providers[2].weight",
    ]
