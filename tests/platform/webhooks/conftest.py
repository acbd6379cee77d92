"""Webhook fixtures: a receiver on loopback, webhooks stored with known secrets, events recorded
through the event recorder (so they reach the outbox as in production), and an in-process
dispatcher on the test's store and clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Iterator

import pytest
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.crypto import SecretBox
from sendpost_platform.domain import webhooks as rules
from sendpost_platform.recorder import RECORDER
from sendpost_platform.store import Store
from sendpost_platform.store import events as event_store
from sendpost_platform.store import webhooks as store_webhooks
from sendpost_platform.webhook_dispatch import WebhookDispatcher
from sendpost_wire import EventType

from devtools.webhook_receiver import WebhookReceiver
from tests.platform.conftest import Seed


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(slow_seconds=1.5) as running:
        yield running


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    """Short schedules so retries happen within a test (the clock is stepped, not slept)."""
    return dataclasses.replace(
        settings,
        webhook_retry_schedule=(10.0, 20.0, 30.0),
        webhook_quick_retries=1,
        webhook_timeout=0.5,
        webhook_lease=8.0,
        webhook_degrade_after=2,
        webhook_disable_after=4,
    )


def add_webhook(
    seed: Seed,
    settings: Settings,
    url: str,
    *,
    switches: dict[str, bool] | None = None,
    enabled: bool = True,
) -> tuple[int, str]:
    """A webhook stored directly (the API has its own tests); returns (id, secret)."""
    secret = rules.new_secret()
    sealed = SecretBox(settings.secret_key, purpose=rules.SECRET_PURPOSE).seal(secret)
    wanted = {name: True for name in rules.SWITCHES} if switches is None else switches
    with seed.store.write() as conn:
        hook = store_webhooks.create_webhook(
            conn,
            account_id=seed.account.account_id,
            url=url,
            enabled=enabled,
            switches=wanted,
            secret_encrypted=sealed,
            now=seed.clock.now(),
        )
    return hook.id, secret


def record(
    seed: Seed, message_uuid: str, event_type: EventType, **fields: object
) -> event_store.Recorded:
    """Record one event the way producers do (and so put it in the outbox)."""
    now = seed.clock.now()
    event = event_store.NewEvent(
        message_uuid=message_uuid,
        account_id=seed.account.account_id,
        subaccount_id=seed.account.subaccount_id,
        provider_id=seed.provider.id,
        event_type=int(event_type),
        occurred_at=now,
        received_at=now,
        source="api",
        recipient="user@example.com",
        **fields,  # type: ignore[arg-type]
    )
    with seed.store.write() as conn:
        [recorded] = RECORDER.record(conn, [event])
    return recorded


@pytest.fixture
async def dispatcher(
    store: Store, hook_settings: Settings, clock: ManualClock
) -> AsyncIterator[WebhookDispatcher]:
    running = WebhookDispatcher(store, hook_settings, clock, worker_id="test-dispatcher")
    yield running
    await running.close()


async def drain(dispatcher: WebhookDispatcher, *, passes: int = 200) -> None:
    """Run passes until one finds nothing to do (POSTs in flight count as something)."""
    for _ in range(passes):
        if await dispatcher.run_once() == 0:
            return
    raise AssertionError(f"the dispatcher still had work after {passes} passes")


def later(clock: ManualClock, seconds: float) -> dt.datetime:
    return clock.advance(seconds)
