"""The event recorder: a group recorded at once ends exactly as if recorded one by one, with
its outbox rows, suppressions and counters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sendpost_platform.recorder import RECORDER
from sendpost_platform.store import counters, suppressions
from sendpost_platform.store import events as event_store
from sendpost_platform.store import webhooks as store_webhooks
from sendpost_platform.store.events import NewEvent, Outcome
from sendpost_platform.store.schema import event_outbox
from sendpost_wire import EventType as E

from tests.platform.conftest import Seed

T0 = dt.datetime(2026, 2, 19, 12, 0, tzinfo=dt.UTC)


def reports(seed: Seed, uuids: list[str]) -> list[NewEvent]:
    """Reports for three messages, with every dedup case: a repeat by agent event ID, a soft
    bounce merged, upgraded by a hard one, a soft one after it (merged), a second delivery
    (dropped), a repeatable kind twice, and a hard bounce in a different recipient case."""

    def new(n: int, event_type: E, **extra: Any) -> NewEvent:
        values: dict[str, Any] = {
            "account_id": seed.account.account_id,
            "subaccount_id": seed.account.subaccount_id,
            "provider_id": seed.provider.id,
            "recipient": f"user{n}@example.com",
            "occurred_at": T0,
            "received_at": T0,
            "source": "agent",
            **extra,
        }
        return NewEvent(message_uuid=uuids[n], event_type=int(event_type), **values)

    return [
        new(0, E.CSSoftBounced, smtp_code=452, description="full", agent_event_id="a"),
        new(0, E.CSSoftBounced, smtp_code=452, description="full again", agent_event_id="a"),
        new(0, E.CSSoftBounced, smtp_code=421, description="later", agent_event_id="b"),
        new(1, E.CSDelivered, smtp_code=250, agent_event_id="c"),
        new(0, E.CSHardBounced, smtp_code=550, description="unknown", reason="user_unknown"),
        new(1, E.CSDelivered, smtp_code=250, agent_event_id="d"),
        new(0, E.CSSoftBounced, smtp_code=452, description="after the hard one"),
        new(2, E.CSOpen, source="tracking"),
        new(2, E.CSOpen, source="tracking"),
        new(2, E.CSHardBounced, recipient="USER2@example.com", smtp_code=550, description="x"),
    ]


def timeline(seed: Seed, uuids: list[str]) -> list[tuple[Any, ...]]:
    """The stored events of ``uuids`` without IDs, messages named by position."""
    rows = []
    with seed.store.read() as conn:
        for n, uuid in enumerate(uuids):
            for e in event_store.events_for_message(conn, uuid):
                rows.append((n, e["event_type"], e["smtp_code"], e["description"], e["details"]))
    return rows


def outbox_ids(seed: Seed) -> list[int]:
    with seed.store.read() as conn:
        query = sa.select(event_outbox.c.event_id).order_by(event_outbox.c.id)
        return [int(i) for i in conn.execute(query).scalars()]


def add_webhook(seed: Seed) -> None:
    """A webhook of the seed's account (so its events go to the outbox); never dispatched."""
    with seed.store.write() as conn:
        store_webhooks.create_webhook(
            conn,
            account_id=seed.account.account_id,
            url="https://hooks.example/x",
            enabled=True,
            switches={},
            secret_encrypted="unused",
            now=T0,
        )


def test_a_group_ends_as_the_same_reports_recorded_one_by_one(seed: Seed) -> None:
    """The same ten reports recorded as one group and one at a time give the same outcomes,
    the same stored events (types, codes, texts, merged details) and the same outbox rows (the
    account has a webhook)."""
    add_webhook(seed)
    grouped = [seed.message(recipient=f"user{n}@example.com").uuid for n in range(3)]
    single = [seed.message(recipient=f"user{n}@example.com").uuid for n in range(3)]
    with seed.store.write() as conn:
        at_once = RECORDER.record(conn, reports(seed, grouped))
    with seed.store.write() as conn:
        one_by_one = [RECORDER.record(conn, [r])[0] for r in reports(seed, single)]
    assert (
        [r.outcome for r in at_once]
        == [r.outcome for r in one_by_one]
        == [
            Outcome.INSERTED,
            Outcome.DUPLICATE,
            Outcome.MERGED,
            Outcome.INSERTED,
            Outcome.UPGRADED,
            Outcome.DUPLICATE,
            Outcome.MERGED,
            Outcome.INSERTED,
            Outcome.INSERTED,
            Outcome.INSERTED,
        ]
    )
    assert timeline(seed, grouped) == timeline(seed, single)
    stored = [r.event_id for r in at_once if r.stored]
    assert len(stored) == 6
    assert outbox_ids(seed) == stored + [r.event_id for r in one_by_one if r.stored]


def test_side_effects_and_counters_are_applied_once_per_group(seed: Seed) -> None:
    """Hard bounces that become the event of record suppress their recipients; two
    unsubscribes of one recipient in a group store one CSUnsubscribe; ``count_as`` counts each
    outcome per provider next to the producer's own counters."""
    uuids = [seed.message(recipient=f"user{n}@example.com").uuid for n in range(3)]
    group = reports(seed, uuids)
    unsubscribe = NewEvent(
        message_uuid=uuids[1],
        account_id=seed.account.account_id,
        subaccount_id=seed.account.subaccount_id,
        provider_id=seed.provider.id,
        event_type=int(E.CSUnsubscribe),
        recipient="user1@example.com",
        occurred_at=T0,
        received_at=T0,
        source="tracking",
    )
    with seed.store.write() as conn:
        recorded = RECORDER.record(
            conn,
            [*group, unsubscribe, unsubscribe],
            count_as="test",
            counts={(seed.provider.id, "test.other"): 3},
        )
        listed = suppressions.list_suppressions(conn, subaccount_id=seed.account.subaccount_id)
        got = counters.for_provider(conn, seed.provider.id)
    assert [r.outcome for r in recorded[-2:]] == [Outcome.INSERTED, Outcome.DUPLICATE]
    assert recorded[-1].event_id is None
    assert sorted((s["recipient_key"], s["reason"]) for s in listed) == [
        ("user0@example.com", "hard_bounce"),
        ("user1@example.com", "unsubscribe"),
        ("user2@example.com", "hard_bounce"),
    ]
    assert got == {
        "test.inserted": 6,
        "test.duplicate": 3,
        "test.merged": 2,
        "test.upgraded": 1,
        "test.other": 3,
    }


def test_repeats_of_stored_events_are_read_back_in_one_statement_whatever_their_number(
    seed: Seed,
) -> None:
    """A later group repeating stored events (deliveries again, hard bounces after soft ones)
    reads the rows of record back with one statement, of the same text on PostgreSQL for 3 and
    for 40 clashing keys, and decides each as recorded one by one: repeats dropped, hard
    bounces upgrading the soft ones, their recipients suppressed."""
    texts = []
    for count in (3, 40):
        uuids = [seed.message(recipient=f"r{count}.{n}@example.com").uuid for n in range(count)]

        def new(n: int, event_type: E, uuids: list[str] = uuids, count: int = count) -> NewEvent:
            return NewEvent(
                message_uuid=uuids[n],
                account_id=seed.account.account_id,
                subaccount_id=seed.account.subaccount_id,
                provider_id=seed.provider.id,
                event_type=int(event_type),
                recipient=f"r{count}.{n}@example.com",
                occurred_at=T0,
                received_at=T0,
                source="agent",
                smtp_code=550 if event_type == E.CSHardBounced else 250,
            )

        first = [new(n, E.CSDelivered if n % 2 else E.CSSoftBounced) for n in range(count)]
        again = [new(n, E.CSDelivered if n % 2 else E.CSHardBounced) for n in range(count)]
        with seed.store.write() as conn:
            RECORDER.record(conn, first)
        seen: list[str] = []

        def hook(*args: Any, seen: list[str] = seen) -> None:
            statement = args[2]
            if statement.lstrip().startswith("SELECT") and "recipient_key" in statement:
                seen.append(statement)

        sa.event.listen(seed.store.engine, "before_cursor_execute", hook)
        try:
            with seed.store.write() as conn:
                recorded = RECORDER.record(conn, again)
        finally:
            sa.event.remove(seed.store.engine, "before_cursor_execute", hook)
        assert len(seen) == 1
        texts.append(seen[0])
        assert [r.outcome for r in recorded] == [
            Outcome.DUPLICATE if n % 2 else Outcome.UPGRADED for n in range(count)
        ]
        with seed.store.read() as conn:
            listed = suppressions.list_suppressions(conn, subaccount_id=seed.account.subaccount_id)
        suppressed = {s["recipient_key"] for s in listed if s["reason"] == "hard_bounce"}
        assert {f"r{count}.{n}@example.com" for n in range(0, count, 2)} <= suppressed
    if not seed.store.is_sqlite:
        assert texts[0] == texts[1]
