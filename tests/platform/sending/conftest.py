"""Fixtures for the sending tests: a sender domain, an IP pool and a provider aimed at a sink.

Builds on the platform fixtures (``store``, ``clock``, ``seed``): ``sending`` gives a
:class:`SendingSetup` whose provider points at a running ``ScriptedSmtp`` server, with
a verified sender domain ``shop.example`` (DKIM key sealed like the API does) and a round-robin
pool ``main``. ``relay_job()`` builds relay jobs with the test clock and a short lease. The
settings turn on ``allow_private_networks``: the sinks listen on loopback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.crypto import SecretBox
from sendpost_platform.domain.routing import PoolMember
from sendpost_platform.egress import EgressPolicy
from sendpost_platform.relay_worker import RelayJob
from sendpost_platform.smtp import dkim
from sendpost_platform.smtp.relay import RelayClient
from sendpost_platform.store import Store, accounts, domains, pools, providers

from tests.platform.conftest import Seed, add_provider
from tests.platform.sending.smtp_servers import ScriptedSmtp

DOMAIN = "shop.example"
SELECTOR = "sp1"


@pytest.fixture(scope="session")
def domain_key() -> dkim.DkimKey:
    return dkim.generate_key()


@pytest.fixture
def sink() -> Iterator[ScriptedSmtp]:
    with ScriptedSmtp() as running:
        yield running


@dataclasses.dataclass
class SendingSetup:
    store: Store
    clock: ManualClock
    settings: Settings
    seed: Seed
    key: dkim.DkimKey
    domain: domains.SenderDomain
    pool: pools.StoredPool
    sink: ScriptedSmtp

    @property
    def provider_id(self) -> int:
        return self.seed.provider.id

    def relay_job(self, worker_id: str = "w1", **overrides: Any) -> RelayJob:
        settings = dataclasses.replace(self.settings, **overrides)
        client = RelayClient(
            max_connections=settings.relay_connections_per_provider,
            egress=EgressPolicy.from_settings(settings),
        )
        return RelayJob(self.store, settings, self.clock, client=client, worker_id=worker_id)

    def point_provider(self, **changes: Any) -> None:
        with self.store.write() as conn:
            providers.update_provider(
                conn,
                account_id=self.seed.account.account_id,
                provider_id=self.provider_id,
                changes=changes,
                now=self.clock.now(),
            )

    def app(self) -> FastAPI:
        return create_app(self.settings, clock=self.clock, store=self.store)

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app())
        return httpx.AsyncClient(transport=transport, base_url="http://platform.test")

    async def send(self, **body: Any) -> list[dict[str, Any]]:
        """Send through the API (SendPost's body shape); addresses given as plain strings in
        ``to``, ``cc``, ``bcc`` or ``from`` become ``{"email": ...}`` objects."""
        payload = {
            "from": {"email": f"news@{DOMAIN}", "name": "Shop"},
            "to": ["accept-1@example.org"],
            "subject": "Hello",
            "textBody": "Hello there",
            "htmlBody": '<p>Hello <a href="https://shop.example/x">there</a></p>',
            "ippool": "main",
            "trackOpens": False,
            "trackClicks": False,
            **body,
        }
        for key in ("to", "cc", "bcc"):
            if key in payload:
                payload[key] = [as_address(item) for item in payload[key]]
        payload["from"] = as_address(payload["from"])
        async with self.client() as client:
            response = await client.post(
                "/api/v1/subaccount/email/",
                json=payload,
                headers={"X-SubAccount-ApiKey": self.seed.account.subaccount_key},
            )
        assert response.status_code == 200, response.text
        result = response.json()
        assert isinstance(result, list)
        return result


def as_address(item: Any) -> Any:
    """``"a@b.c"`` as ``{"email": "a@b.c"}``; anything else as it is."""
    return {"email": item} if isinstance(item, str) else item


@pytest.fixture
def sending(
    store: Store, clock: ManualClock, seed: Seed, sink: ScriptedSmtp, domain_key: dkim.DkimKey
) -> SendingSetup:
    return build_setup(store, clock, seed, sink, domain_key)


@pytest.fixture
def pg_sending(
    pg_store: Store, clock: ManualClock, sink: ScriptedSmtp, domain_key: dkim.DkimKey
) -> SendingSetup:
    """The same setup on PostgreSQL only."""
    with pg_store.write() as conn:
        account = accounts.create_account(conn, name="Acme", now=clock.now())
        provider, key = add_provider(conn, account.account_id, clock)
    seed = Seed(pg_store, clock, account, provider, key)
    return build_setup(pg_store, clock, seed, sink, domain_key)


def build_setup(
    store: Store, clock: ManualClock, seed: Seed, sink: ScriptedSmtp, domain_key: dkim.DkimKey
) -> SendingSetup:
    settings = Settings(
        database_url=store.engine.url.render_as_string(hide_password=False),
        secret_key="test-secret-key",
        public_base_url="https://sp.example.net",
        relay_lease=60.0,
        allow_private_networks=True,  # the sinks listen on loopback
    )
    box = SecretBox(settings.secret_key, purpose=domains.KEY_PURPOSE)
    with store.write() as conn:
        providers.update_provider(
            conn,
            account_id=seed.account.account_id,
            provider_id=seed.provider.id,
            changes={"host": sink.host, "port": sink.port, "max_rate_per_hour": 10_000},
            now=clock.now(),
        )
        domain = domains.create_domain(
            conn,
            account_id=seed.account.account_id,
            domain=DOMAIN,
            selector=SELECTOR,
            algorithm=domain_key.algorithm.value,
            private_key=box.seal(domain_key.private_key.decode()),
            public_key=domain_key.public_key,
            now=clock.now(),
        )
        assert domain is not None
        domains.record_check(
            conn,
            domain.id,
            dkim_verified=True,
            return_path_verified=True,
            check={},
            now=clock.now(),
        )
        pool = pools.create_pool(
            conn,
            account_id=seed.account.account_id,
            name="main",
            strategy="round_robin",
            members=[PoolMember(str(seed.provider.id))],
            now=clock.now(),
        )
        assert pool is not None
    return SendingSetup(store, clock, settings, seed, domain_key, domain, pool, sink)
