"""The relay worker: send API → queue → SMTP, CSSent, retries on a stepped clock, CSDropped,
rate limiting, connection reuse, expired claims."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
from typing import Any

import dkim as dkimpy
import pytest
from sendpost_platform.egress import EgressPolicy
from sendpost_platform.errors import StoreError
from sendpost_platform.relay_worker import RelayJob
from sendpost_platform.smtp import dkim
from sendpost_platform.smtp.prepare import PreparedMessage
from sendpost_platform.smtp.relay import ProviderEndpoint, RelayClient, RelayResult
from sendpost_platform.store import events, relay
from sendpost_wire import EventType

from tests.platform.sending.conftest import DOMAIN, SELECTOR, SendingSetup
from tests.platform.sending.dns_support import txt_lookup


def timeline(setup: SendingSetup, uuid: str) -> list[dict[str, object]]:
    with setup.store.read() as conn:
        return events.events_for_message(conn, uuid)


def types_of(setup: SendingSetup, uuid: str) -> list[int]:
    return [int(e["event_type"]) for e in timeline(setup, uuid)]  # type: ignore[call-overload]


async def test_send_relay_and_dkim_on_received_bytes(sending: SendingSetup) -> None:
    """Accepted messages reach the server signed; CSProcessed then CSSent with code and reply."""
    results = await sending.send(to=["accept-1@example.org", "accept-2@example.org"])
    assert [r["errorCode"] for r in results] == [0, 0]
    job = sending.relay_job()
    assert await job.run_once() == 2
    await job.close()
    received = sending.sink.received()
    assert sorted(r.rcpt_tos[0] for r in received) == [
        "accept-1@example.org",
        "accept-2@example.org",
    ]
    lookup = txt_lookup({f"{SELECTOR}._domainkey.{DOMAIN}": dkim.txt_record(sending.key)})
    by_rcpt = {r.rcpt_tos[0]: r for r in received}
    for result in results:
        got = by_rcpt[result["to"]]
        uuid = result["messageId"]
        assert dkimpy.verify(got.data, dnsfunc=lookup) is True
        assert (
            got.mail_from
            == f"bounces+{uuid}+{sending.seed.account.subaccount_id}@sp-bounce.{DOMAIN}"
        )
        parsed = email.message_from_bytes(got.data, policy=email.policy.default)
        assert parsed["Message-ID"] == f"<{uuid}@{DOMAIN}>"
        sent = timeline(sending, uuid)
        assert [e["event_type"] for e in sent] == [EventType.CSProcessed, EventType.CSSent]
        assert sent[1]["smtp_code"] == 250
        assert str(sent[1]["description"]).startswith("2.0.0 Ok: queued as Q")


async def test_retry_schedule_to_dropped_with_stepped_clock(sending: SendingSetup) -> None:
    """A 4xx is retried 1h, 2h, 3h, 4h, 5h after each attempt, then CSDropped (last reply)."""
    [result] = await sending.send(to=["defer-1@example.org"])
    uuid = result["messageId"]
    start = sending.clock.now()
    job = sending.relay_job()
    assert await job.run_once() == 1
    for delay in (1, 2, 3, 4, 5):
        sending.clock.advance(hours=delay, seconds=-1)
        assert await job.run_once() == 0
        sending.clock.advance(seconds=1)
        assert await job.run_once() == 1
    assert await job.run_once() == 0
    await job.close()
    with sending.store.read() as conn:
        attempts = relay.attempts_of(conn, uuid)
        entry = relay.queue_entry(conn, uuid)
    offsets = [(a["started_at"] - start) / dt.timedelta(hours=1) for a in attempts]
    assert offsets == [0, 1, 3, 6, 10, 15]
    assert entry is not None
    assert (entry["status"], entry["attempts"], entry["last_code"]) == ("done", 6, 450)
    dropped = timeline(sending, uuid)[-1]
    assert dropped["event_type"] == EventType.CSDropped
    assert dropped["smtp_code"] == 450
    assert dropped["reason"] == "Relay failed after 6 attempts"
    assert dropped["description"] == "RCPT: 450 4.2.0 Mailbox temporarily unavailable"


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("reject-1@example.org", (550, "RCPT: 550 5.1.1 User unknown")),
        ("dataerr-1@example.org", (554, "DATA: 554 5.7.1 Message rejected as spam")),
    ],
)
async def test_5xx_is_retried_then_dropped(
    sending: SendingSetup, recipient: str, expected: tuple[int, str]
) -> None:
    """A 5xx at RCPT or DATA is retried like any failure (short schedule), then dropped."""
    [result] = await sending.send(to=[recipient])
    job = sending.relay_job(relay_retry_schedule=(10.0,))
    assert await job.run_once() == 1
    sending.clock.advance(seconds=10)
    assert await job.run_once() == 1
    await job.close()
    dropped = timeline(sending, result["messageId"])[-1]
    assert dropped["event_type"] == EventType.CSDropped
    assert (dropped["smtp_code"], dropped["description"]) == expected


async def test_mail_refused_and_connection_refused_are_retried(sending: SendingSetup) -> None:
    """A 451 at MAIL and a refused connection each schedule a retry, then the message is sent."""
    [result] = await sending.send(to=["accept-1@example.org"])
    uuid = result["messageId"]
    sending.sink.mail_reply = "451 4.3.0 Try again later"
    job = sending.relay_job(relay_retry_schedule=(10.0, 10.0))
    assert await job.run_once() == 1
    sending.sink.mail_reply = None
    real_port = sending.sink.port
    with socket_closed_port() as closed:
        sending.point_provider(port=closed)
        sending.clock.advance(seconds=10)
        assert await job.run_once() == 1
    sending.point_provider(port=real_port)
    sending.clock.advance(seconds=10)
    fresh = sending.relay_job()
    assert await fresh.run_once() == 1
    await job.close()
    await fresh.close()
    with sending.store.read() as conn:
        attempts = relay.attempts_of(conn, uuid)
    assert [(a["ok"], a["smtp_code"]) for a in attempts] == [
        (False, 451),
        (False, None),
        (True, 250),
    ]
    assert types_of(sending, uuid) == [EventType.CSProcessed, EventType.CSSent]


async def test_rate_limit_waits_instead_of_dropping(sending: SendingSetup) -> None:
    """With maxRatePerHour 3, five messages go out 3 now and 2 once the hour has passed."""
    sending.point_provider(max_rate_per_hour=3)
    results = await sending.send(to=[f"accept-{i}@example.org" for i in range(5)])
    job = sending.relay_job()
    assert await job.run_once() == 3
    sending.clock.advance(minutes=59)
    assert await job.run_once() == 0
    sending.clock.advance(minutes=1, seconds=1)
    assert await job.run_once() == 2
    await job.close()
    assert len(sending.sink.received()) == 5
    assert all(types_of(sending, r["messageId"])[-1] == EventType.CSSent for r in results)


async def test_connections_are_reused(sending: SendingSetup) -> None:
    """Ten messages over one allowed connection use a single SMTP session."""
    await sending.send(to=[f"accept-{i}@example.org" for i in range(10)])
    job = sending.relay_job(relay_connections_per_provider=1)
    assert await job.run_once() == 10
    await sending.send(to=["accept-again@example.org"])
    assert await job.run_once() == 1
    await job.close()
    assert {r.session for r in sending.sink.received()} == {1}


async def test_dead_workers_claim_expires_and_nothing_is_lost(sending: SendingSetup) -> None:
    """A claim by a worker that died blocks others until its lease ends; then it is relayed, and
    the dead worker can no longer record an outcome."""
    [result] = await sending.send(to=["accept-1@example.org"])
    with sending.store.write() as conn:
        [dead_claim] = relay.claim(
            conn,
            provider_id=sending.provider_id,
            worker_id="dead",
            now=sending.clock.now(),
            lease=dt.timedelta(seconds=60),
            limit=10,
        )
    job = sending.relay_job("alive")
    assert await job.run_once() == 0
    sending.clock.advance(seconds=60)
    assert await job.run_once() == 1
    await job.close()
    with sending.store.write() as conn:
        late = relay.finish(
            conn,
            dead_claim,
            worker_id="dead",
            ok=False,
            code=None,
            reply="late",
            next_attempt_at=None,
            now=sending.clock.now(),
        )
    assert late is False
    assert len(sending.sink.received()) == 1
    assert types_of(sending, result["messageId"]) == [EventType.CSProcessed, EventType.CSSent]


class socket_closed_port:
    """A loopback port with nothing listening (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.postgres
async def test_two_workers_on_postgresql_never_send_twice(pg_sending: SendingSetup) -> None:
    """Two workers polling one PostgreSQL queue concurrently relay each message exactly once."""
    results = await pg_sending.send(to=[f"accept-{i}@example.org" for i in range(40)])
    first = pg_sending.relay_job("w1", relay_batch_size=7)
    second = pg_sending.relay_job("w2", relay_batch_size=7)
    per_worker = [0, 0]
    for _ in range(20):
        a, b = await asyncio.gather(first.run_once(), second.run_once())
        per_worker = [per_worker[0] + a, per_worker[1] + b]
        if a + b == 0:
            break
    done = sum(per_worker)
    await first.close()
    await second.close()
    assert done == 40
    received = [r.rcpt_tos[0] for r in pg_sending.sink.received()]
    assert sorted(received) == sorted(r["to"] for r in results)
    assert min(per_worker) > 0
    with pg_sending.store.read() as conn:
        attempts = [len(relay.attempts_of(conn, r["messageId"])) for r in results]
    assert attempts == [1] * 40


async def test_each_outcome_is_committed_before_its_connection_sends_again(
    sending: SendingSetup,
) -> None:
    """At no commit are more messages accepted by the provider than recorded plus one per
    connection: that is the most a crash can send twice."""
    connections = 2
    committed = 0
    unrecorded_at_commits: list[int] = []

    class Observed(RelayJob):
        def _record(self, outcomes: list[Any]) -> None:
            nonlocal committed
            unrecorded_at_commits.append(len(sending.sink.received()) - committed)
            super()._record(outcomes)
            committed += len(outcomes)

    results = await sending.send(to=[f"accept-{i}@example.org" for i in range(12)])
    settings = dataclasses.replace(sending.settings, relay_connections_per_provider=connections)
    job = Observed(sending.store, settings, sending.clock, worker_id="w1")
    assert 12 == await job.run_once()
    await job.close()
    assert (12, 12) == (committed, len(sending.sink.received()))
    assert [] == [n for n in unrecorded_at_commits if n > connections]
    assert all(types_of(sending, r["messageId"])[-1] == EventType.CSSent for r in results)


async def test_outcomes_waiting_together_share_one_commit(sending: SendingSetup) -> None:
    """While one commit runs, the outcomes of the other connections wait and are committed
    together: four messages over four connections, the first commit held until the provider has
    all four, take at most two commits, not four."""
    groups: list[int] = []

    class Observed(RelayJob):
        def _record(self, outcomes: list[Any]) -> None:
            if not groups:
                sending.sink.wait_until(lambda received: len(received) == 4, timeout=60)
            groups.append(len(outcomes))
            super()._record(outcomes)

    await sending.send(to=[f"accept-{i}@example.org" for i in range(4)])
    settings = dataclasses.replace(sending.settings, relay_connections_per_provider=4)
    job = Observed(sending.store, settings, sending.clock, worker_id="w1")
    assert 4 == await job.run_once()
    await job.close()
    assert 4 == sum(groups)
    assert len(groups) <= 2, groups


async def test_paused_worker_withholds_the_data_once_its_lease_is_gone(
    sending: SendingSetup,
) -> None:
    """A worker paused in the middle of a transaction (here: while the provider answers RCPT,
    the clock jumps past the 60 s lease) does not write the message data when it resumes: it
    closes the connection, sends nothing and hands the claim back, so the worker that takes the
    messages over sends each exactly once."""
    recipients = [f"accept-{i}@example.org" for i in range(3)]
    uuids = [r["messageId"] for r in await sending.send(to=recipients)]

    def pause_once(address: str) -> None:
        sending.sink.on_rcpt = None
        sending.clock.advance(seconds=61)

    sending.sink.on_rcpt = pause_once
    paused = sending.relay_job("w1", relay_connections_per_provider=1)
    assert 0 == await paused.run_once()
    await paused.close()
    assert [] == sending.sink.received()
    with sending.store.read() as conn:
        entries = [relay.queue_entry(conn, uuid) or {} for uuid in uuids]
        attempts = [relay.attempts_of(conn, uuid) for uuid in uuids]
    assert [(None, "pending", 0)] * 3 == [
        (e.get("claimed_by"), e.get("status"), e.get("attempts")) for e in entries
    ]
    assert [[], [], []] == attempts
    other = sending.relay_job("w2")
    assert 3 == await other.run_once()
    await other.close()
    assert sorted(recipients) == sorted(r.rcpt_tos[0] for r in sending.sink.received())


async def test_slow_live_worker_never_sends_past_its_lease(sending: SendingSetup) -> None:
    """A worker whose provider is slow (each message takes 29 s of a 60 s lease) stops starting
    sends once too little of its lease is left, and hands the rest back: another worker that
    claims after the lease would have expired sends nothing twice, and every message goes out
    exactly once."""
    recipients = [f"accept-{i}@example.org" for i in range(3)]
    await sending.send(to=recipients)
    other = sending.relay_job("w2")
    other_sent: list[int] = []
    lease_ends = sending.clock.now() + dt.timedelta(seconds=sending.settings.relay_lease)

    class SlowProvider(RelayClient):
        async def send(
            self, endpoint: ProviderEndpoint, message: PreparedMessage, **options: Any
        ) -> RelayResult:
            result = await super().send(endpoint, message, **options)
            sending.clock.advance(seconds=29)
            if sending.clock.now() > lease_ends:
                # Another worker polls while this one is still busy with its claim.
                other_sent.append(await other.run_once())
            return result

    settings = dataclasses.replace(sending.settings, relay_connections_per_provider=1)
    slow = RelayJob(
        sending.store,
        settings,
        sending.clock,
        client=SlowProvider(max_connections=1, egress=EgressPolicy.from_settings(settings)),
        worker_id="w1",
    )
    first = await slow.run_once()
    sending.clock.advance(seconds=1)
    rest = await other.run_once()
    await slow.close()
    await other.close()
    received = sorted(r.rcpt_tos[0] for r in sending.sink.received())
    assert sorted(recipients) == received
    assert (3, []) == (first + rest, other_sent)


async def test_a_failed_commit_stops_every_lane_and_hands_the_rest_back(
    sending: SendingSetup,
) -> None:
    """When committing an outcome fails (the database is down), no lane writes any more data:
    the pass raises, the provider has at most one message per connection, the messages not
    written are handed back at once, and after the lease every message has gone out with at
    most those written ones twice."""

    class FailingOnce(RelayJob):
        failures = 1

        def _record(self, outcomes: list[Any]) -> None:
            if self.failures:
                self.failures -= 1
                raise StoreError("database write failed: the test says so")
            super()._record(outcomes)

    recipients = [f"accept-{i}@example.org" for i in range(6)]
    results = await sending.send(to=recipients)
    settings = dataclasses.replace(sending.settings, relay_connections_per_provider=2)
    job = FailingOnce(sending.store, settings, sending.clock, worker_id="w1")
    with pytest.raises(StoreError):
        await job.run_once()
    await job.close()
    written = len(sending.sink.received())
    assert 1 <= written <= 2
    other = sending.relay_job("w2")
    assert 6 - written == await other.run_once()
    sending.clock.advance(seconds=61)
    await other.run_once()
    await other.close()
    received = [r.rcpt_tos[0] for r in sending.sink.received()]
    assert sorted(recipients) == sorted(set(received))
    assert len(received) - len(recipients) <= written
    assert all(types_of(sending, r["messageId"])[-1] == EventType.CSSent for r in results)
