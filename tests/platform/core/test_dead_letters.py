"""One bad event never costs a batch's valid events: it is dead-lettered with its reason.

Batches are stored directly (as a batch acknowledged before the validator was as strict as the
store would be), then processed by the real worker job on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sendpost_platform import cli
from sendpost_platform.domain.classify import Classification, classify
from sendpost_platform.processing import IngestProcessor
from sendpost_platform.store import Store, counters, ingest
from sendpost_platform.store import events as event_store
from sendpost_platform.store.schema import ingest_batches, ingest_dead_letters

from tests.platform.conftest import Seed
from tests.platform.core.helpers import agent_event

BAD_INDEX = 4

# (what is wrong, the bad fields, the dead letter's reason)
BAD_EVENTS: list[tuple[str, dict[str, Any], str]] = [
    (
        "nul",
        {"smtp_description": "250 ok\x00"},
        "smtp_description: contains a NUL character (at 6)",
    ),
    ("long-command", {"smtp_command": "C" * 65}, "smtp_command: longer than 64 characters (65)"),
    (
        "long-recipient",
        {"recipient": "r" * 309 + "@example.com"},
        "recipient: longer than 320 characters (321)",
    ),
    ("long-event-id", {"event_id": "e" * 201}, "event_id: longer than 200 characters (201)"),
    (
        "surrogate",
        {"smtp_description": "250 \ud800"},
        "smtp_description: contains a lone surrogate (at 4), which is not valid Unicode",
    ),
    (
        "surrogate-recipient",
        {"recipient": "\udcff@example.com"},
        "recipient: contains a lone surrogate (at 0), which is not valid Unicode",
    ),
    ("not-an-object", {}, ": event must be a JSON object"),
    ("too-deep", {"extra": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}, ": nested deeper than 16 levels"),
]


def store_batch(seed: Seed, events: list[Any]) -> int:
    """A batch stored as the ingestion endpoint stores one (raw body), bypassing validation."""
    body = json.dumps({"events": events}).encode()
    with seed.store.write() as conn:
        [batch_id] = ingest.insert_batches(
            conn, [ingest.IncomingBatch(seed.provider.id, body, len(events))], now=seed.clock.now()
        )
    return batch_id


def stored_count(store: Store, uuids: list[str]) -> int:
    with store.read() as conn:
        return sum(len(event_store.events_for_message(conn, u)) for u in uuids)


def letters(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(sa.select(ingest_dead_letters).order_by(ingest_dead_letters.c.id))
        return [dict(r._mapping) for r in rows]


def nine_and_one(seed: Seed, bad: dict[str, Any] | str) -> tuple[list[str], list[Any]]:
    """Nine valid delivered events for nine messages, and ``bad`` at index 4."""
    uuids = [seed.message(recipient=f"u{i}@example.com").uuid for i in range(10)]
    events: list[Any] = [
        agent_event(u, recipient=f"u{i}@example.com", event_id=f"ok-{i}")
        for i, u in enumerate(uuids)
    ]
    events[BAD_INDEX] = bad if isinstance(bad, str) else {**events[BAD_INDEX], **bad}
    return [u for i, u in enumerate(uuids) if i != BAD_INDEX], events


@pytest.mark.parametrize(("kind", "bad", "reason"), BAD_EVENTS, ids=[b[0] for b in BAD_EVENTS])
async def test_a_bad_event_is_dead_lettered_and_the_nine_others_stored(
    seed: Seed, store: Store, kind: str, bad: dict[str, Any], reason: str
) -> None:
    """9 valid events + 1 the store cannot keep (NUL, over-long command, recipient or event_id,
    lone surrogate, not an object) → the 9 stored, the bad one dead-lettered with its index,
    reason and raw JSON, the batch processed without error and the dead letter counted."""
    good, events = nine_and_one(seed, "not an event" if kind == "not-an-object" else bad)
    batch_id = store_batch(seed, events)
    assert 1 == await IngestProcessor(store, seed.clock).run_once()

    assert 9 == stored_count(store, good)
    [letter] = letters(store)
    assert (batch_id, seed.provider.id, BAD_INDEX, reason) == (
        letter["batch_id"],
        letter["provider_id"],
        letter["event_index"],
        letter["reason"],
    )
    assert events[BAD_INDEX] == json.loads(letter["raw"])
    with store.read() as conn:
        batch = conn.execute(sa.select(ingest_batches)).one()
        seen = counters.for_provider(conn, seed.provider.id)
    assert (True, None) == (batch.processed_at is not None, batch.error)
    assert (9, 1) == (seen["ingest.inserted"], seen["ingest.dead_lettered"])


async def test_an_event_that_fails_while_being_stored_costs_only_itself(
    seed: Seed, store: Store
) -> None:
    """An event the validator accepts but storing fails for (a fault injected in the classifier)
    → the claim is retried one batch at a time with a savepoint per event: the other 9 events
    and a second batch are stored, the failing one is dead-lettered naming the error."""

    def faulty(**kwargs: Any) -> Classification:
        if kwargs.get("text") == "explode":
            raise RuntimeError("classifier fault")
        return classify(**kwargs)

    bounce = {"event_type": "bounced", "smtp_code": 550, "smtp_description": "explode"}
    good, events = nine_and_one(seed, bounce)
    first = store_batch(seed, events)
    other = seed.message(recipient="later@example.com")
    store_batch(seed, [agent_event(other.uuid)])
    processor = IngestProcessor(store, seed.clock, classifier=faulty)
    while await processor.run_once():
        pass

    assert (9, 1) == (stored_count(store, good), stored_count(store, [other.uuid]))
    [letter] = letters(store)
    assert (first, BAD_INDEX, "not stored: RuntimeError('classifier fault')") == (
        letter["batch_id"],
        letter["event_index"],
        letter["reason"],
    )
    assert events[BAD_INDEX] == json.loads(letter["raw"])
    with store.read() as conn:
        assert 0 == ingest.pending_count(conn)


async def test_an_unreadable_batch_is_dead_lettered_whole_and_listed_for_operators(
    seed: Seed, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A body that is not JSON → the batch marked failed and its body kept as a dead letter
    (index null), which `sendpost-platform dead-letters` prints with the others."""
    with store.write() as conn:
        ingest.insert_batches(
            conn, [ingest.IncomingBatch(seed.provider.id, b"{broken\x00", 1)], now=seed.clock.now()
        )
    _, events = nine_and_one(seed, {"event_id": "x" * 300})
    store_batch(seed, events)
    assert 2 == await IngestProcessor(store, seed.clock).run_once()

    monkeypatch.setenv("SENDPOST_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("SENDPOST_SECRET_KEY", "test-secret-key")
    assert 0 == cli.main(["dead-letters"])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_batch = {p["batch_id"]: p for p in printed}
    assert [(1, None), (2, BAD_INDEX)] == sorted((b, p["event_index"]) for b, p in by_batch.items())
    assert "event_id: longer than 200 characters (300)" == by_batch[2]["reason"]
    assert by_batch[1]["reason"].startswith("BadBatch('batch 1: None.: malformed JSON")
    assert "{broken\x00" == by_batch[1]["raw"]
