"""Dispatchers as real processes (``sendpost-platform worker``) SIGKILLed at random moments while
events flow, on SQLite and PostgreSQL.

A thread of the test records events through the event recorder (so each lands in the outbox in
its own transaction, as producers do) while the main thread kills a dispatcher 20 times (two
run; the older one is killed each time, once the pair has POSTed a random number of events
more), then lets them finish. What was delivered is counted from what the loopback receiver
got, whose signature check is written from docs/webhooks.md. Each test prints its figures
(``pytest -s``); most of its time is the workers' start-up (Python imports).
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sendpost_platform.config import Settings
from sendpost_platform.store.schema import event_outbox, webhook_deliveries
from sendpost_wire import EventType

from devtools.webhook_receiver import WebhookReceiver
from tests.platform.conftest import Seed
from tests.platform.webhooks.conftest import add_webhook, record
from tests.support.worker_processes import WorkerProcesses

pytestmark = pytest.mark.slow

KILLS = 20
GROUP = 10
FLOW = (EventType.CSProcessed, EventType.CSSent, EventType.CSDelivered, EventType.CSOpen)
LEASE = 4.0
MAX_EVENTS = 800


class Dispatchers(WorkerProcesses):
    """``sendpost-platform worker`` processes on the test's database."""

    def __init__(self, settings: Settings) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_")}
        env.update(
            SENDPOST_DATABASE_URL=settings.database_url,
            SENDPOST_SECRET_KEY=settings.secret_key,
            SENDPOST_ALLOW_PRIVATE_NETWORKS="true",  # the receiver listens on loopback
            SENDPOST_WORKER_IDLE_INTERVAL="0.05",
            SENDPOST_WEBHOOK_LEASE=str(LEASE),
            SENDPOST_WEBHOOK_TIMEOUT="1",
            SENDPOST_WEBHOOK_RETRY_SCHEDULE=",".join(["0.2"] * 40),
            SENDPOST_WEBHOOK_BATCH_SIZE="100",
            SENDPOST_WEBHOOK_ENDPOINT_CONCURRENCY="32",
            # The seed's events carry the test clock's date (2026-02-19); the worker runs on the
            # real clock, and its retention job would delete them as older than 30 days.
            SENDPOST_EVENT_RETENTION="3650d",
        )
        super().__init__(env, stop_timeout=30)


@pytest.fixture
def dispatchers(settings: Settings) -> Iterator[Dispatchers]:
    running = Dispatchers(settings)
    try:
        yield running
    finally:
        running.close()


def produce(
    seed: Seed, keys: list[tuple[str, str]], stop: threading.Event, rng: random.Random
) -> None:
    """Until ``stop`` (or MAX_EVENTS): groups of GROUP messages, each going through FLOW, the
    group's events interleaved (every message's first event, then every second one, ...),
    with short pauses."""
    group = 0
    while not stop.is_set() and len(keys) < MAX_EVENTS:
        uuids = [seed.message(recipient=f"r{group}.{i}@example.com").uuid for i in range(GROUP)]
        for kind in FLOW:
            for uuid in uuids:
                recorded = record(seed, uuid, kind)
                keys.append((uuid, f"cs-{recorded.event_id}-{int(kind)}"))
            time.sleep(rng.uniform(0.05, 0.15))
        group += 1


def wait_for_more(receiver: WebhookReceiver, more: int, at_most: float) -> None:
    """Until the receiver got ``more`` requests beyond what it has now, or ``at_most`` seconds
    passed (a dispatcher may still be starting: killing it then is a random moment too)."""
    target = receiver.count + more
    deadline = time.monotonic() + at_most
    while receiver.count < target and time.monotonic() < deadline:
        time.sleep(0.005)  # polling the receiver's counter, bounded by the deadline


@pytest.mark.timeout(300)
def test_sigkill_20_times_while_events_flow_loses_nothing(
    seed: Seed, settings: Settings, dispatchers: Dispatchers
) -> None:
    """Every event recorded while dispatchers were SIGKILLed 20 times at random moments is
    delivered at least once; every copy of an event carries the same eventId and the same body;
    every signature verifies; a message's events arrive in the order they were recorded."""
    is_sqlite = seed.store.is_sqlite
    rng = random.Random(13)
    started = time.monotonic()
    with WebhookReceiver() as receiver:
        _, secret = add_webhook(seed, settings, receiver.url("/k/ok"))
        receiver.secrets["/k/"] = secret
        keys: list[tuple[str, str]] = []
        stop = threading.Event()
        producer = threading.Thread(target=produce, args=(seed, keys, stop, rng))
        pool = [dispatchers.start(), dispatchers.start()]
        producer.start()
        wait_for_more(receiver, 1, 30)  # both have started (or are about to)
        for _ in range(KILLS):
            # the random moment: once the dispatchers have POSTed 1-40 more events, and a
            # random fraction of a POST's time later; the older dispatcher dies
            wait_for_more(receiver, rng.randint(1, 40), 8)
            time.sleep(rng.uniform(0.0, 0.004))
            victim = pool.pop(0)
            dispatchers.kill(victim)
            pool.append(dispatchers.start())
        stop.set()
        producer.join(30)
        expected = {key for _, key in keys}
        try:
            receiver.wait_until(
                lambda got: expected <= {r.event_id for r in got if r.answered == 200},
                timeout=120,
            )
        except AssertionError:
            with seed.store.read() as conn:
                states = conn.execute(
                    sa.select(webhook_deliveries.c.status, sa.func.count()).group_by(
                        webhook_deliveries.c.status
                    )
                ).all()
                outbox = conn.execute(sa.select(sa.func.count()).select_from(event_outbox)).scalar()
                sample = conn.execute(
                    sa.select(
                        webhook_deliveries.c.id,
                        webhook_deliveries.c.attempts,
                        webhook_deliveries.c.claimed_by,
                        webhook_deliveries.c.claimed_until,
                        webhook_deliveries.c.next_attempt_at,
                        webhook_deliveries.c.last_error,
                    )
                    .where(webhook_deliveries.c.status == "pending")
                    .order_by(webhook_deliveries.c.id)
                    .limit(5)
                ).all()
            print(sample, time.time())
            got = {r.event_id for r in receiver.received() if r.answered == 200}
            raise AssertionError(
                f"{len(expected - got)} of {len(expected)} events missing; deliveries "
                f"{states}, outbox {outbox}"
            ) from None
        for proc in pool:
            dispatchers.stop(proc)
        received = receiver.received()
    bodies: dict[str, set[bytes]] = collections.defaultdict(set)
    for got in received:
        bodies[got.event_id].add(got.body)
    copies = collections.Counter(r.event_id for r in received)
    rank = {key: i for i, (_, key) in enumerate(keys)}
    message_of = dict((key, uuid) for uuid, key in keys)
    out_of_order = 0
    last: dict[str, int] = {}
    for got in received:
        uuid = message_of[got.event_id]
        if rank[got.event_id] < last.get(uuid, -1):
            out_of_order += 1
        last[uuid] = max(last.get(uuid, -1), rank[got.event_id])
    lost = len(expected - set(copies))
    duplicates = sum(n - 1 for n in copies.values())
    print(
        f"webhooks SIGKILL x{KILLS} ({'sqlite' if is_sqlite else 'postgresql'}, 2 "
        f"dispatchers): {len(expected)} events, lost {lost}, duplicates {duplicates}, "
        f"{time.monotonic() - started:.1f}s"
    )
    assert (0, [], 0, True, len(keys)) == (
        lost,
        [k for k, b in bodies.items() if len(b) != 1],
        out_of_order,
        all(r.verified for r in received),
        len(expected),
    )
