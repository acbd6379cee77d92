"""Processing of stored batches: scoping, deferred counting, classification, deduplication."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.processing import IngestProcessor
from sendpost_platform.recorder import HardBounce
from sendpost_platform.store import Store, counters, ingest
from sendpost_platform.store import events as event_store
from sendpost_platform.store.schema import ingest_batches
from sendpost_platform.worker import Worker, build_jobs
from sendpost_wire import EventType

from tests.platform.conftest import Seed
from tests.platform.core.helpers import agent_event, post_events

HARD = {
    "smtp_code": 550,
    "enhanced_status": "5.1.1",
    "smtp_command": "RCPT TO",
    "smtp_description": "550 5.1.1 <user@example.com>: Recipient address rejected: User unknown",
}
SOFT = {
    "smtp_code": 452,
    "enhanced_status": "4.2.2",
    "smtp_command": "RCPT TO",
    "smtp_description": "452 4.2.2 The email account that you tried to reach is over quota",
}


def timeline(store: Store, message_uuid: str) -> list[dict[str, Any]]:
    with store.read() as conn:
        return event_store.events_for_message(conn, message_uuid)


def provider_counters(store: Store, provider_id: int) -> dict[str, int]:
    with store.read() as conn:
        return counters.for_provider(conn, provider_id)


async def ingest_and_process(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, events: list[dict[str, Any]]
) -> None:
    response = await post_events(client, seed.ingest_key, events)
    assert response.status_code == 200, response.text
    await Worker(build_jobs(settings, seed.store, seed.clock)).drain()


async def test_delivered_becomes_csdelivered_keeping_codes_and_text(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, store: Store
) -> None:
    """`delivered` → one CSDelivered with the code, text, timestamp and provider."""
    message = seed.message()
    await ingest_and_process(
        client,
        settings,
        seed,
        [agent_event(message.uuid, timestamp="2026-02-19T11:59:30Z", recipient="user@example.com")],
    )
    [event] = timeline(store, message.uuid)
    assert int(EventType.CSDelivered) == event["event_type"]
    assert (event["smtp_code"], event["description"]) == (250, "250 2.0.0 OK queued")
    assert dt.datetime(2026, 2, 19, 11, 59, 30, tzinfo=dt.UTC) == event["occurred_at"]
    assert (seed.provider.id, seed.account.subaccount_id) == (
        event["provider_id"],
        event["subaccount_id"],
    )


async def test_bounces_are_classified_by_the_platform_not_the_agent_label(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, store: Store
) -> None:
    """A 5.1.1 labelled soft by the agent is hard; a full mailbox labelled bounced is soft."""
    first, second = seed.message(), seed.message(recipient="full@example.com")
    await ingest_and_process(
        client,
        settings,
        seed,
        [
            agent_event(first.uuid, "soft_bounced", **HARD),
            agent_event(second.uuid, "bounced", **SOFT),
        ],
    )
    [hard] = timeline(store, first.uuid)
    [soft] = timeline(store, second.uuid)
    assert (int(EventType.CSHardBounced), "user_unknown") == (hard["event_type"], hard["reason"])
    assert int(EventType.CSSoftBounced) == soft["event_type"]
    assert ("5.1.1", "RCPT TO", HARD["smtp_description"]) == (
        hard["enhanced_status"],
        hard["smtp_command"],
        hard["description"],
    )


async def test_deferred_is_counted_not_stored(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, store: Store
) -> None:
    """`deferred` events leave no event row, only the provider's deferred counter."""
    message = seed.message()
    await ingest_and_process(
        client, settings, seed, [agent_event(message.uuid, "deferred", **SOFT)] * 3
    )
    assert timeline(store, message.uuid) == []
    assert provider_counters(store, seed.provider.id)["ingest.deferred"] == 3


async def test_events_for_other_providers_messages_are_discarded_and_counted(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, store: Store
) -> None:
    """A key only reaches messages relayed through its provider; others are discarded, counted."""
    other_provider, _ = seed.other_provider()
    foreign = seed.message(provider_id=other_provider.id)
    unrouted = seed.message(provider_id=None)
    unknown = str(uuid.uuid4())
    await ingest_and_process(
        client,
        settings,
        seed,
        [agent_event(foreign.uuid), agent_event(unrouted.uuid), agent_event(unknown)],
    )
    assert timeline(store, foreign.uuid) + timeline(store, unrouted.uuid) == []
    assert timeline(store, unknown) == []
    assert provider_counters(store, seed.provider.id)["ingest.discarded_out_of_scope"] == 3


async def test_resent_batch_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, store: Store
) -> None:
    """An agent re-sending the same events (after a crash) leaves one event of each kind."""
    message = seed.message()
    events = [
        agent_event(message.uuid, event_id="e1"),
        agent_event(message.uuid, "bounced", event_id="e2", **HARD),
    ]
    await ingest_and_process(client, settings, seed, events)
    first = timeline(store, message.uuid)
    await ingest_and_process(client, settings, seed, events)
    assert first == timeline(store, message.uuid)
    assert len(first) == 2
    assert provider_counters(store, seed.provider.id)["ingest.duplicate"] == 2


async def test_second_bounce_is_merged_into_the_first(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, store: Store
) -> None:
    """One terminal bounce per recipient: the first is kept, the later one's details merged."""
    message = seed.message()
    later = {**HARD, "smtp_description": "550 5.1.1 mailbox does not exist"}
    await ingest_and_process(client, settings, seed, [agent_event(message.uuid, "bounced", **HARD)])
    await ingest_and_process(
        client, settings, seed, [agent_event(message.uuid, "bounced", **later)]
    )
    [event] = timeline(store, message.uuid)
    assert HARD["smtp_description"] == event["description"]
    assert [later["smtp_description"]] == [m["description"] for m in event["details"]["merged"]]


async def test_soft_never_overwrites_hard(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, store: Store
) -> None:
    """A soft bounce after a hard one is merged; the event stays hard."""
    message = seed.message()
    await ingest_and_process(client, settings, seed, [agent_event(message.uuid, "bounced", **HARD)])
    await ingest_and_process(client, settings, seed, [agent_event(message.uuid, "bounced", **SOFT)])
    [event] = timeline(store, message.uuid)
    assert int(EventType.CSHardBounced) == event["event_type"]
    assert [int(EventType.CSSoftBounced)] == [m["event_type"] for m in event["details"]["merged"]]


async def test_hard_replaces_an_earlier_soft_bounce(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, store: Store
) -> None:
    """A hard bounce after a soft one upgrades the event; the soft report is kept as merged."""
    message = seed.message()
    await ingest_and_process(client, settings, seed, [agent_event(message.uuid, "bounced", **SOFT)])
    await ingest_and_process(client, settings, seed, [agent_event(message.uuid, "bounced", **HARD)])
    [event] = timeline(store, message.uuid)
    assert (int(EventType.CSHardBounced), HARD["smtp_description"]) == (
        event["event_type"],
        event["description"],
    )
    assert [SOFT["smtp_description"]] == [m["description"] for m in event["details"]["merged"]]


async def test_delivered_and_bounce_are_kept_once_each_per_recipient(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, store: Store
) -> None:
    """Duplicates within one batch: one CSDelivered and one bounce per (message, recipient)."""
    message = seed.message()
    events = [agent_event(message.uuid, recipient="User@Example.com")] * 2
    events += [agent_event(message.uuid, recipient="user@example.com")]
    events += [agent_event(message.uuid, "bounced", **HARD)] * 2
    await ingest_and_process(client, settings, seed, events)
    types = sorted(e["event_type"] for e in timeline(store, message.uuid))
    assert [int(EventType.CSDelivered), int(EventType.CSHardBounced)] == types


async def test_hard_bounce_calls_the_suppression_hook_once(
    client: httpx.AsyncClient, seed: Seed, store: Store, clock: ManualClock
) -> None:
    """The hook sees each hard bounce that becomes the event of record, not merged repeats."""
    seen: list[HardBounce] = []
    processor = IngestProcessor(store, clock, on_hard_bounces=lambda _conn, hbs: seen.extend(hbs))
    message = seed.message(recipient="gone@example.com")
    for events in (
        [agent_event(message.uuid, "bounced", **SOFT)],
        [agent_event(message.uuid, "bounced", **HARD)],
        [agent_event(message.uuid, "bounced", **{**HARD, "smtp_description": "again"})],
    ):
        assert (await post_events(client, seed.ingest_key, events)).status_code == 200
        await processor.run_once()
    assert [(h.recipient, h.reason) for h in seen] == [("gone@example.com", "user_unknown")]


async def test_unparseable_stored_batch_is_dead_lettered_and_others_proceed(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, store: Store
) -> None:
    """A stored batch that cannot be processed is set aside with its error; the queue moves on."""
    message = seed.message()
    with store.write() as conn:
        ingest.insert_batches(
            conn, [ingest.IncomingBatch(seed.provider.id, b"{broken", 1)], now=seed.clock.now()
        )
    await ingest_and_process(client, settings, seed, [agent_event(message.uuid)])
    with store.read() as conn:
        rows = conn.execute(
            sa.select(ingest_batches.c.processed_at.is_not(None), ingest_batches.c.error).order_by(
                ingest_batches.c.id
            )
        ).all()
        assert ingest.pending_count(conn) == 0
    assert [r[0] for r in rows] == [True, True]
    assert "BadBatch" in (rows[0][1] or "")
    assert rows[1][1] is None
    assert len(timeline(store, message.uuid)) == 1
    assert provider_counters(store, seed.provider.id)["ingest.batches_failed"] == 1


async def test_final_recipient_is_kept_in_details_under_the_platform_address(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, store: Store
) -> None:
    """An agent event for a rewritten recipient (virtual_alias_maps) is stored under the address
    the platform sent to, with the rewritten address in details.finalRecipient; one without a
    final_recipient has no such key."""
    rewritten, plain = seed.message(recipient="info@brand.test"), seed.message()
    await ingest_and_process(
        client,
        settings,
        seed,
        [
            agent_event(
                rewritten.uuid,
                "bounced",
                recipient="info@brand.test",
                final_recipient="ok.team@dest.test",
                **HARD,
            ),
            agent_event(plain.uuid, recipient="user@example.com"),
        ],
    )
    [bounce] = timeline(store, rewritten.uuid)
    [delivery] = timeline(store, plain.uuid)
    assert ("info@brand.test", "ok.team@dest.test") == (
        bounce["recipient"],
        bounce["details"]["finalRecipient"],
    )
    assert "finalRecipient" not in delivery["details"]
