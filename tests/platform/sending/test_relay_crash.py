"""Relay workers as real processes (``sendpost-platform worker``) killed and paused mid-stream.

The provider is an aiosmtpd server in this process that records every message it accepted, so
what was sent twice or never is counted from what it received, not from what the workers say.
The bound on duplicates is what SMTP forces: a message the provider accepted whose outcome was
not committed yet is sent again after the lease; the worker keeps at most one such message per
connection (``SENDPOST_RELAY_CONNECTIONS``), so ``kills × connections`` at most.

Each test prints its figures (``pytest -s`` shows them), e.g.
``relay SIGKILL x30 (sqlite, 1 worker(s)): 1500 messages, lost 0, duplicates 102 (bound 120)``.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sendpost_platform.domain.addresses import Mailbox
from sendpost_platform.sending import SendRequest, submit
from sendpost_platform.store import relay
from sendpost_platform.store.schema import events, messages, relay_queue
from sendpost_wire import EventType

from tests.platform.sending.conftest import DOMAIN, SendingSetup
from tests.platform.sending.smtp_servers import Received
from tests.support.worker_processes import WorkerProcesses

pytestmark = pytest.mark.slow

CONNECTIONS = 4
LEASE = 6.0
MESSAGES = 1500
KILLS = 30


def queue(sending: SendingSetup, count: int) -> list[str]:
    """``count`` messages to distinct recipients, queued for relay; their recipients."""
    recipients = [f"user{i}@example.org" for i in range(count)]
    for start in range(0, count, 100):
        request = SendRequest.to_each(
            [Mailbox(r) for r in recipients[start : start + 100]],
            from_email=f"news@{DOMAIN}",
            from_name="Shop",
            subject="Crash test",
            ippool="main",
            text_body="Hello there\n" * 20,
            html_body='<p>Hello <a href="https://shop.example/x">there</a></p>',
            track_opens=True,
            track_clicks=True,
        )
        with sending.store.write() as conn:
            submitted = submit(
                conn,
                account_id=sending.seed.account.account_id,
                subaccount_id=sending.seed.account.subaccount_id,
                request=request,
                pool=sending.pool,
                now=sending.clock.now(),
            )
        assert [0] * len(submitted) == [s.error_code for s in submitted]
    return recipients


class Workers(WorkerProcesses):
    """``sendpost-platform worker`` processes on the test's database, relaying to its sink."""

    def __init__(self, sending: SendingSetup) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_")}
        env.update(
            SENDPOST_DATABASE_URL=sending.settings.database_url,
            SENDPOST_SECRET_KEY=sending.settings.secret_key,
            SENDPOST_PUBLIC_BASE_URL=sending.settings.public_base_url,
            SENDPOST_RELAY_LEASE=str(LEASE),
            SENDPOST_RELAY_BATCH_SIZE="40",
            SENDPOST_RELAY_CONNECTIONS=str(CONNECTIONS),
            SENDPOST_RELAY_RETRY_SCHEDULE="1,1,1,1,1",
            SENDPOST_WORKER_IDLE_INTERVAL="0.1",
            SENDPOST_ALLOW_PRIVATE_NETWORKS="true",  # the provider listens on loopback
        )
        super().__init__(env, stop_timeout=120)


@pytest.fixture
def workers(sending: SendingSetup) -> Iterator[Workers]:
    running = Workers(sending)
    try:
        yield running
    finally:
        running.close()


def received_count(sending: SendingSetup) -> int:
    return len(sending.sink.received())


def wait_for_received(sending: SendingSetup, count: int) -> None:
    sending.sink.wait_until(lambda received: len(received) >= count, timeout=180)


def wait_until_all_done(sending: SendingSetup) -> None:
    """Until no message is left to relay (bounded: expired claims need one lease to return)."""
    deadline = time.monotonic() + 240
    while True:
        with sending.store.read() as conn:
            left = conn.execute(
                sa.select(sa.func.count()).where(relay_queue.c.status != relay.DONE)
            ).scalar_one()
        if left == 0:
            return
        assert time.monotonic() < deadline, f"{left} message(s) still queued"
        time.sleep(0.2)  # polling the database, bounded by the deadline


def tally(sending: SendingSetup, recipients: list[str]) -> tuple[int, int, int]:
    """(lost, duplicates, CSSent events beyond one per message) from what the provider received
    and what the database says: lost counts messages never received or not marked sent."""
    received: list[Received] = sending.sink.received()
    copies = collections.Counter(r.rcpt_tos[0] for r in received)
    with sending.store.read() as conn:
        states = dict(
            conn.execute(sa.select(messages.c.recipient, messages.c.state)).tuples().all()
        )
        sent_events = conn.execute(
            sa.select(sa.func.count()).where(events.c.event_type == int(EventType.CSSent))
        ).scalar_one()
    lost = sum(1 for r in recipients if copies[r] == 0 or states.get(r) != "sent")
    duplicates = sum(n - 1 for n in copies.values() if n > 1)
    return lost, duplicates, sent_events - len(recipients)


@pytest.mark.timeout(1200)
def test_sigkill_30_times_loses_nothing_and_resends_only_in_flight(
    sending: SendingSetup, workers: Workers
) -> None:
    """SIGKILL a relaying worker 30 times at random points (after 5-40 more messages reached the
    provider each time; on PostgreSQL two workers run and one of them is killed), then let a
    worker finish: no message is lost, each has exactly one CSSent, and messages sent twice are
    at most one per connection of each killed worker."""
    is_sqlite = sending.store.is_sqlite
    recipients = queue(sending, MESSAGES)
    rng = random.Random(16)
    pool = [workers.start() for _ in range(1 if is_sqlite else 2)]
    for kill in range(KILLS):
        wait_for_received(sending, received_count(sending) + rng.randint(5, 40))
        victim = pool[kill % len(pool)]
        workers.kill(victim)
        pool[kill % len(pool)] = workers.start()
    wait_until_all_done(sending)
    for proc in pool:
        workers.stop(proc)
    lost, duplicates, extra_events = tally(sending, recipients)
    bound = KILLS * CONNECTIONS
    print(
        f"relay SIGKILL x{KILLS} ({'sqlite' if is_sqlite else 'postgresql'}, {len(pool)} "
        f"worker(s)): {MESSAGES} messages, lost {lost}, duplicates {duplicates} (bound {bound})"
    )
    assert (0, 0, True) == (lost, extra_events, duplicates <= bound), duplicates


@pytest.mark.timeout(600)
def test_worker_paused_past_its_lease_sends_nothing_when_resumed(
    sending: SendingSetup, workers: Workers
) -> None:
    """SIGSTOP a relaying worker mid-batch until its lease is over, then resume it (with SIGTERM,
    so it only finishes the pass it was in): it sends nothing after it was resumed, whatever it
    was doing when paused (waiting for a reply, preparing, committing). A second worker then
    relays the rest: nothing is lost and nothing was sent twice beyond one message per
    connection."""
    recipients = queue(sending, 400)
    paused = workers.start()
    wait_for_received(sending, 20)
    paused.send_signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    time.sleep(LEASE + 1)  # real time is the subject here: the lease must be over
    assert time.monotonic() - paused_at > LEASE
    before_resume = received_count(sending)
    workers.stop(paused)  # SIGCONT, then SIGTERM: it finishes its interrupted pass and exits
    after_resume = received_count(sending)
    other = workers.start()
    wait_until_all_done(sending)
    workers.stop(other)
    lost, duplicates, extra_events = tally(sending, recipients)
    print(
        f"relay SIGSTOP past the lease: {len(recipients)} messages, lost {lost}, "
        f"duplicates {duplicates} (bound {CONNECTIONS}), "
        f"sent after resuming {after_resume - before_resume}"
    )
    assert (0, 0, 0, True) == (
        after_resume - before_resume,
        lost,
        extra_events,
        duplicates <= CONNECTIONS,
    )
