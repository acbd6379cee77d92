"""Domain takeover across accounts: a domain proven by one account is unusable by another until
that account publishes its own DKIM record (a key generated for its own domain row).

Two accounts on one platform, DNS answered by a loopback authoritative server
(``devtools.dns.DnsServer``) through the real protocol; requests go through the API over
``httpx.ASGITransport``; the accepted message is relayed to a loopback SMTP server and its
signature checked against the record the account published.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import dkim as dkimpy
import httpx
import pytest
import sqlalchemy as sa
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.domain.routing import PoolMember
from sendpost_platform.egress import EgressPolicy
from sendpost_platform.relay_worker import RelayJob
from sendpost_platform.sending import NO_RETURN_PATH
from sendpost_platform.smtp.relay import RelayClient
from sendpost_platform.store import Store, accounts, pools, providers
from sendpost_platform.store.schema import messages

from devtools.dns import DnsServer
from tests.platform.conftest import add_provider
from tests.platform.sending.dns_support import txt_lookup
from tests.platform.sending.smtp_servers import ScriptedSmtp

DOMAIN = "bob.test"


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@dataclasses.dataclass
class Tenant:
    account: accounts.NewAccount

    @property
    def sends(self) -> dict[str, str]:
        return {"X-SubAccount-ApiKey": self.account.subaccount_key}


@dataclasses.dataclass
class Platform:
    store: Store
    clock: ManualClock
    settings: Settings
    dns: DnsServer
    sink: ScriptedSmtp

    def client(self) -> httpx.AsyncClient:
        app = create_app(self.settings, clock=self.clock, store=self.store)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://platform.test"
        )

    def tenant(self, name: str) -> Tenant:
        """An account whose provider points at the sink, in a pool named ``main``."""
        with self.store.write() as conn:
            account = accounts.create_account(conn, name=name, now=self.clock.now())
            provider, _ = add_provider(conn, account.account_id, self.clock)
            providers.update_provider(
                conn,
                account_id=account.account_id,
                provider_id=provider.id,
                changes={"host": self.sink.host, "port": self.sink.port},
                now=self.clock.now(),
            )
            pools.create_pool(
                conn,
                account_id=account.account_id,
                name="main",
                strategy="round_robin",
                members=[PoolMember(str(provider.id))],
                now=self.clock.now(),
            )
        return Tenant(account)

    def publish(self, domain: dict[str, Any], *purposes: str) -> None:
        for purpose in purposes:
            record = domain[purpose]
            self.dns.add(record["host"], record["type"], record["textValue"])

    def messages_of(self, tenant: Tenant) -> int:
        query = sa.select(sa.func.count()).where(messages.c.account_id == tenant.account.account_id)
        with self.store.read() as conn:
            return int(conn.execute(query).scalar_one())


@pytest.fixture
def platform(
    settings: Settings, store: Store, clock: ManualClock, dns_server: DnsServer
) -> Iterator[Platform]:
    settings = dataclasses.replace(
        settings,
        dns_nameserver="127.0.0.1",
        dns_port=dns_server.port,
        dns_timeout=2.0,
        bounce_cname_target="bounce.sendpost.example",
        public_base_url="https://sp.example.net",
    )
    with ScriptedSmtp() as sink:
        yield Platform(store, clock, settings, dns_server, sink)


def email_from(sender: str) -> dict[str, Any]:
    return {
        "from": {"email": sender, "name": "CEO"},
        "to": [{"email": "accept-1@example.org"}],
        "subject": "Wire transfer",
        "textBody": "Please pay the attached invoice today.",
        "ippool": "main",
    }


async def add_and_verify(
    client: httpx.AsyncClient, tenant: Tenant, selector: str
) -> tuple[dict[str, Any], str]:
    created = await client.post(
        "/api/v1/subaccount/domain",
        json={"name": DOMAIN, "selector": selector},
        headers=tenant.sends,
    )
    assert 201 == created.status_code, created.text
    domain = created.json()
    return domain, f"/api/v1/subaccount/domain/{domain['id']}/verify"


def verified(answer: httpx.Response) -> tuple[bool, bool, bool]:
    body = answer.json()
    return body["dkimVerified"], body["returnPathVerified"], body["verified"]


async def test_domain_proven_by_another_account_needs_its_own_proof(platform: Platform) -> None:
    """B owns bob.test and verified it. A adds bob.test too: its return path verifies at once
    (the CNAME target is shared) but its own DKIM record is missing, so A is not verified and
    A's send ``From: ceo@bob.test`` is refused whole with 403 naming the domain (no message is
    created), while B still sends. Once A publishes its own DKIM record, A verifies, sends, and
    the relayed message carries A's signature for d=bob.test, valid against A's record."""
    owner, intruder = platform.tenant("Bob"), platform.tenant("Mallory")
    async with platform.client() as client:
        bob_domain, bob_verify = await add_and_verify(client, owner, "b1")
        platform.publish(bob_domain, "dkim", "returnPath")
        assert (True, True, True) == verified(await client.post(bob_verify, headers=owner.sends))

        a_domain, a_verify = await add_and_verify(client, intruder, "a1")
        answer = await client.post(a_verify, headers=intruder.sends)
        assert (False, True, False) == verified(answer)

        refused = await client.post(
            "/api/v1/subaccount/email/", json=email_from("ceo@bob.test"), headers=intruder.sends
        )
        assert 403 == refused.status_code
        body = refused.json()
        assert ("forbidden", DOMAIN) == (body["code"], body["domain"])
        assert f"the sender domain '{DOMAIN}' is not verified for this account" == body["error"]
        assert ["from"] == [e["field"] for e in body["errors"]]
        assert "a1._domainkey.bob.test" in body["errors"][0]["message"]
        assert 0 == platform.messages_of(intruder)

        sent = await client.post(
            "/api/v1/subaccount/email/", json=email_from("ceo@bob.test"), headers=owner.sends
        )
        assert [0] == [r["errorCode"] for r in sent.json()]

        platform.publish(a_domain, "dkim")
        assert (True, True, True) == verified(await client.post(a_verify, headers=intruder.sends))
        accepted = await client.post(
            "/api/v1/subaccount/email/", json=email_from("ceo@bob.test"), headers=intruder.sends
        )
        assert 200 == accepted.status_code, accepted.text
        [result] = accepted.json()
        assert 0 == result["errorCode"]

    job = RelayJob(
        platform.store,
        platform.settings,
        platform.clock,
        client=RelayClient(max_connections=1, egress=EgressPolicy.from_settings(platform.settings)),
        worker_id="w1",
    )
    assert 2 == await job.run_once()
    await job.close()
    [relayed] = [r for r in platform.sink.received() if result["messageId"].encode() in r.data]
    a_dkim = a_domain["dkim"]
    lookup = txt_lookup({a_dkim["host"]: a_dkim["textValue"]})
    assert b"s=a1" in relayed.data
    assert dkimpy.verify(relayed.data, dnsfunc=lookup) is True


async def test_nothing_verified_still_drops_with_the_contract_reason(
    platform: Platform,
) -> None:
    """A domain with neither record verified is not a refusal: as the contract says, each
    recipient is dropped with ``No verified return path domain configured for sender domain``."""
    tenant = platform.tenant("New")
    async with platform.client() as client:
        await add_and_verify(client, tenant, "s1")
        sent = await client.post(
            "/api/v1/subaccount/email/", json=email_from("ceo@bob.test"), headers=tenant.sends
        )
    assert [(3, NO_RETURN_PATH)] == [(r["errorCode"], r["message"]) for r in sent.json()]
