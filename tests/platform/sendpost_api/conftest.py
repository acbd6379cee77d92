"""SendPost's official Python SDK (``sendpost-python-sdk``) pointed at the platform, as a
customer would: the app served by uvicorn on loopback (``tests.support.live_platform``), the
SDK's ``Configuration(host=...)`` changed and nothing else. Every test runs on SQLite and
PostgreSQL (the ``seed`` fixture's store). DNS goes to a loopback server (``devtools.dns``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import sendpost_python_sdk as sp
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.relay_worker import RelayJob
from sendpost_platform.smtp import dkim
from sendpost_platform.store import Store

from devtools.dns import DnsServer
from tests.platform.conftest import Seed
from tests.platform.sending.conftest import SendingSetup, build_setup
from tests.platform.sending.smtp_servers import ScriptedSmtp
from tests.support.live_platform import LivePlatform


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@dataclasses.dataclass
class Sdk:
    """The SDK's API objects for the seed's account and sub-account keys."""

    live: LivePlatform
    seed: Seed
    client: sp.ApiClient

    @property
    def account_key(self) -> str:
        return self.seed.account.account_key

    def for_subaccount(self, key: str) -> sp.ApiClient:
        """A client whose sub-account key is ``key`` (account key unchanged)."""
        config = sp.Configuration(
            host=f"{self.live.base}/api/v1",
            api_key={"accountAuth": self.account_key, "subAccountAuth": key},
        )
        return sp.ApiClient(config)


@pytest.fixture
def sdk(settings: Settings, seed: Seed, dns_server: DnsServer) -> Iterator[Sdk]:
    settings = dataclasses.replace(
        settings,
        dns_nameserver="127.0.0.1",
        dns_port=dns_server.port,
        dns_timeout=2.0,
        bounce_cname_target="bounce.sendpost.example",
    )
    with LivePlatform(settings, seed) as live:
        config = sp.Configuration(
            host=f"{live.base}/api/v1",
            api_key={
                "accountAuth": seed.account.account_key,
                "subAccountAuth": seed.account.subaccount_key,
            },
        )
        with sp.ApiClient(config) as client:
            yield Sdk(live, seed, client)


@dataclasses.dataclass
class MailSdk:
    """A sending set-up (verified ``shop.example``, pool ``main``, provider aimed at a loopback
    SMTP sink) with the platform served over loopback HTTP and the SDK aimed at it."""

    setup: SendingSetup
    live: LivePlatform
    client: sp.ApiClient

    def relay_job(self) -> RelayJob:
        return self.setup.relay_job()


@pytest.fixture(scope="session")
def domain_key() -> dkim.DkimKey:
    return dkim.generate_key()


@pytest.fixture
def mail_sdk(
    store: Store, clock: ManualClock, seed: Seed, domain_key: dkim.DkimKey
) -> Iterator[MailSdk]:
    with ScriptedSmtp() as sink:
        setup = build_setup(store, clock, seed, sink, domain_key)
        with LivePlatform(setup.settings, seed) as live:
            config = sp.Configuration(
                host=f"{live.base}/api/v1",
                api_key={
                    "accountAuth": seed.account.account_key,
                    "subAccountAuth": seed.account.subaccount_key,
                },
            )
            with sp.ApiClient(config) as client:
                yield MailSdk(setup, live, client)
