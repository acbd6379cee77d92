"""Benchmark: webhook events dispatched per second to a local receiver, and commit → receipt
latency, with one and two dispatcher processes on PostgreSQL.

    .venv/bin/python bench/webhooks.py [--events 10000] [--dispatchers 1,2] [--rate 1000]
                                       [--seconds 10] [--endpoint-concurrency 16]
                                       [--server postgresql://postgres@127.0.0.1:5432]

Each run uses a fresh PostgreSQL database (created on ``--server``, dropped afterwards), an
account with one webhook (every switch on) pointing at the receiver, in a process of its own,
answering 200 and recording each request's headers, body and arrival time: ``--receiver lean``
(the default) is a minimal HTTP/1.1 server on httptools' request parser and uvloop, so that the
receiver, which shares the machine's cores with the dispatchers, costs little CPU;
``--receiver devtools`` is the loopback server of ``devtools/webhook_receiver.py`` the tests
use. Dispatchers are real ``sendpost-platform worker`` processes
(``SENDPOST_WEBHOOK_ENDPOINT_CONCURRENCY`` from the flag, batch 500).

- **Throughput**: ``--events`` CSDelivered events (one message each) are recorded through the
  event recorder before the dispatchers start (not timed); timed from the first request the
  receiver got to the last (dispatcher start-up excluded). Every event must arrive.
- **Latency**: with the dispatchers running and warmed up, events are recorded at ``--rate``
  per second for ``--seconds`` (``--per-commit`` events per transaction, 10 by default: one
  transaction every 10 ms at 1,000/s; a producer that falls behind catches up without pausing,
  and the rate it reached is printed); the latency of each is
  its arrival at the receiver minus the moment its transaction committed. p50/p99/max printed.

Every request's signature is verified afterwards, at its arrival time, with the recipe of
docs/webhooks.md (``devtools.webhook_receiver.verify_signature``), and its eventId read from its
body. The exit status is 0 only when every event arrived and every signature verified.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


Arrival = tuple[dict[str, str], bytes, float]
"""One request the receiver answered 200: its headers (lower-case names), body, time.time()."""


def _receiver(ready: Any, stop: Any, out: Any) -> None:
    from devtools.webhook_receiver import WebhookReceiver

    with WebhookReceiver() as receiver:
        ready.put(receiver.port)
        stop.wait()
        got = receiver.received()
        out.put([(r.headers, r.body, r.at) for r in got if r.answered == 200])


def _lean_receiver(ready: Any, stop: Any, out: Any) -> None:
    import asyncio

    import httptools
    import uvloop

    arrivals: list[Arrival] = []
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    class Serve(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.headers: dict[str, str] = {}
            self.body: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            arrivals.append((self.headers, b"".join(self.body), time.time()))
            self.headers, self.body = {}, []
            self.transport.write(ok)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Serve, "127.0.0.1", 0, backlog=1024)
        ready.put(server.sockets[0].getsockname()[1])
        await loop.run_in_executor(None, stop.wait)
        server.close()

    uvloop.run(serve())
    out.put(arrivals)


RECEIVERS = {"lean": _lean_receiver, "devtools": _receiver}


def _database(server: str) -> tuple[str, str]:
    import psycopg

    name = f"sp_bench_webhooks_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{server}/{name}"


def _drop(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Setup:
    def __init__(self, url: str, receiver_url: str) -> None:
        from sendpost_platform.clock import SystemClock
        from sendpost_platform.crypto import SecretBox
        from sendpost_platform.domain import webhooks as rules
        from sendpost_platform.store import Store, accounts
        from sendpost_platform.store import webhooks as store_webhooks

        self.url = url
        self.secret_key = secrets.token_urlsafe(32)
        self.store = Store.open(url)
        self.store.migrate()
        self.clock = SystemClock()
        with self.store.write() as conn:
            self.account = accounts.create_account(conn, name="Bench", now=self.clock.now())
        self.secret = rules.new_secret()
        sealed = SecretBox(self.secret_key, purpose=rules.SECRET_PURPOSE).seal(self.secret)
        with self.store.write() as conn:
            store_webhooks.create_webhook(
                conn,
                account_id=self.account.account_id,
                url=receiver_url,
                enabled=True,
                switches=dict.fromkeys(rules.SWITCHES, True),
                secret_encrypted=sealed,
                now=self.clock.now(),
            )

    def messages(self, count: int) -> list[str]:
        from sendpost_platform.store import messages

        uuids = []
        for start in range(0, count, 500):
            with self.store.write() as conn:
                for i in range(start, min(count, start + 500)):
                    uuids.append(
                        messages.insert_message(
                            conn,
                            account_id=self.account.account_id,
                            subaccount_id=self.account.subaccount_id,
                            recipient=f"user{i}@example.org",
                            sender="news@shop.example",
                            now=self.clock.now(),
                            state="sent",
                        ).uuid
                    )
        return uuids

    def record(self, uuids: list[str]) -> tuple[list[str], float]:
        """Record CSDelivered for each message in one transaction; (eventIds, commit time)."""
        from sendpost_platform.recorder import RECORDER
        from sendpost_platform.store import events
        from sendpost_wire import EventType

        with self.store.write() as conn:
            now = self.clock.now()
            new = [
                events.NewEvent(
                    message_uuid=uuid,
                    account_id=self.account.account_id,
                    subaccount_id=self.account.subaccount_id,
                    event_type=int(EventType.CSDelivered),
                    occurred_at=now,
                    received_at=now,
                    source="agent",
                    recipient=None,
                    smtp_code=250,
                    description="250 2.0.0 OK",
                )
                for uuid in uuids
            ]
            recorded = RECORDER.record(conn, new)
        keys = [f"cs-{r.event_id}-{int(EventType.CSDelivered)}" for r in recorded]
        return keys, time.time()


def _dispatchers(count: int, url: str, secret_key: str, cap: int) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_")}
    env.update(
        SENDPOST_DATABASE_URL=url,
        SENDPOST_SECRET_KEY=secret_key,
        SENDPOST_ALLOW_PRIVATE_NETWORKS="true",
        SENDPOST_WORKER_IDLE_INTERVAL="0.05",
        SENDPOST_WEBHOOK_BATCH_SIZE="500",
        SENDPOST_WEBHOOK_ENDPOINT_CONCURRENCY=str(cap),
        SENDPOST_WEBHOOK_CONCURRENCY=str(max(cap, 64)),
    )
    return [
        subprocess.Popen(
            [sys.executable, "-m", "sendpost_platform.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def _read(arrivals: list[Arrival], secret: str) -> tuple[list[tuple[str, float]], int]:
    """(eventId, arrival time) of each request, and how many signatures did not verify."""
    from devtools.webhook_receiver import verify_signature

    got = []
    bad = 0
    for headers, body, at in arrivals:
        got.append((str(json.loads(body)["event"]["eventId"]), at))
        bad += not verify_signature(secret, headers, body, at)
    return got, bad


def run(args: argparse.Namespace, dispatchers: int, mode: str) -> bool:
    name, url = _database(args.server)
    ready: Any = multiprocessing.Queue()
    out: Any = multiprocessing.Queue()
    stop = multiprocessing.Event()
    receiver = multiprocessing.Process(target=RECEIVERS[args.receiver], args=(ready, stop, out))
    receiver.start()
    port = ready.get(timeout=30)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        setup = Setup(url, f"http://127.0.0.1:{port}/bench/ok")
        committed: dict[str, float] = {}
        if mode == "throughput":
            uuids = setup.messages(args.events)
            for start in range(0, len(uuids), 500):
                keys, _ = setup.record(uuids[start : start + 500])
                committed.update(dict.fromkeys(keys, 0.0))
            load = os.getloadavg()[0]
            procs = _dispatchers(dispatchers, url, setup.secret_key, args.endpoint_concurrency)
            meter = Meter([p.pid for p in procs], receiver.pid or 0)
            _wait_all(setup, len(committed), timeout=300, meter=meter)
        else:
            total = int(args.rate * args.seconds)
            uuids = setup.messages(total + 1)
            procs = _dispatchers(dispatchers, url, setup.secret_key, args.endpoint_concurrency)
            warm, _ = setup.record(uuids[-1:])  # dispatchers up once this one is delivered
            _wait_all(setup, 1, timeout=120)
            load = os.getloadavg()[0]
            meter = Meter([p.pid for p in procs], receiver.pid or 0)
            meter.start = meter.sample(0)
            per_tick = args.per_commit
            interval = per_tick / args.rate
            began = time.monotonic()
            for tick, start in enumerate(range(0, total, per_tick)):
                due = began + tick * interval
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # pacing the producer at --rate
                keys, at = setup.record(uuids[start : start + per_tick])
                committed.update(dict.fromkeys(keys, at))
            produced = time.monotonic() - began
            meter.end = meter.sample(len(committed))
            _wait_all(setup, len(committed) + 1, timeout=300)
            committed.update(dict.fromkeys(warm, 0.0))
        retried = _retried(setup)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        stop.set()
        raw = out.get(timeout=60)
        receiver.join(30)
        setup.store.dispose()
        _drop(args.server, name)
    arrivals, bad = _read(raw, setup.secret)
    verified = bad == 0 and bool(arrivals)
    first_at: dict[str, float] = {}
    for key, at in arrivals:
        first_at.setdefault(key, at)
    missing = len(set(committed) - set(first_at))
    signatures = f"signatures {'ok' if verified else f'BAD {bad}'} ({len(arrivals)} checked)"
    if mode == "throughput":
        times = sorted(first_at.values())
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        print(
            f"throughput: {dispatchers} dispatcher(s), {len(committed)} events, "
            f"{len(committed) / span:,.0f} events/s (first→last receipt {span:.2f}s), "
            f"missing {missing}, duplicates {len(arrivals) - len(first_at)}, {retried}, "
            f"{signatures}, load at start {load:.2f}; {meter.summary()}"
        )
    else:
        lat = sorted(
            (first_at[k] - at) * 1000 for k, at in committed.items() if at and k in first_at
        )
        p99 = lat[int(len(lat) * 0.99) - 1] if lat else float("nan")
        times = sorted(at for k, at in first_at.items() if committed.get(k))
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        print(
            f"latency: {dispatchers} dispatcher(s), {len(lat)} events at {len(lat) / produced:,.0f}"
            f"/s (target {args.rate:,.0f}/s), commit→receipt p50 {statistics.median(lat):.0f} ms, "
            f"p99 {p99:.0f} ms, max {lat[-1]:.0f} ms, received at {len(times) / span:,.0f}/s, "
            f"missing {missing}, {retried}, "
            f"{signatures}, load at start {load:.2f}; "
            f"over the producing span {meter.summary()}"
        )
    return missing == 0 and verified


def _retried(setup: Setup) -> str:
    """How many deliveries needed more than one attempt, and their last errors."""
    import sqlalchemy as sa
    from sendpost_platform.store.schema import webhook_deliveries as d

    with setup.store.read() as conn:
        rows = conn.execute(
            sa.select(d.c.last_error, sa.func.count())
            .where(d.c.attempts > 1)
            .group_by(d.c.last_error)
        ).all()
    return f"retried {sum(n for _, n in rows)}" + "".join(f"; {e}: {n}" for e, n in rows)


def _cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used so far (Linux ``/proc``)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Meter:
    """CPU seconds of the dispatchers and of the receiver over a span of deliveries: sampled
    when the first counted delivery is seen done and when the last is."""

    def __init__(self, dispatchers: list[int], receiver: int) -> None:
        self.dispatchers = dispatchers
        self.receiver = receiver
        self.start: tuple[int, float, float] | None = None
        self.end: tuple[int, float, float] | None = None

    def sample(self, done: int) -> tuple[int, float, float]:
        return (done, _cpu(self.dispatchers), _cpu([self.receiver]))

    def summary(self) -> str:
        if self.start is None or self.end is None or self.end[0] <= self.start[0]:
            return "cpu n/a"
        events = self.end[0] - self.start[0]
        disp = self.end[1] - self.start[1]
        recv = self.end[2] - self.start[2]
        return (
            f"dispatcher cpu {disp:.2f}s ({events / disp:,.0f} events/cpu-s), "
            f"receiver cpu {recv:.2f}s ({events / recv:,.0f} events/cpu-s)"
        )


def _wait_all(
    setup: Setup, count: int, *, timeout: float, meter: Meter | None = None, after: int = 0
) -> None:
    """Until ``count`` deliveries are done (polled in the database, bounded); ``meter`` samples
    CPU when more than ``after`` are done, and at the end."""
    import sqlalchemy as sa
    from sendpost_platform.store.schema import webhook_deliveries

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with setup.store.read() as conn:
            done = conn.execute(
                sa.select(sa.func.count()).where(webhook_deliveries.c.status == "done")
            ).scalar_one()
        if meter is not None and meter.start is None and done > after:
            meter.start = meter.sample(done)
        if done >= count:
            if meter is not None:
                meter.end = meter.sample(done)
            return
        time.sleep(0.02)  # polling, bounded by the deadline
    raise SystemExit(f"only {done} of {count} events delivered in {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--dispatchers", default="1,2")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--endpoint-concurrency", type=int, default=16)
    parser.add_argument("--per-commit", type=int, default=10, help="latency: events per commit")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--mode", choices=("both", "throughput", "latency"), default="both")
    parser.add_argument("--receiver", choices=tuple(RECEIVERS), default="lean")
    args = parser.parse_args()
    ok = True
    for count in (int(n) for n in args.dispatchers.split(",")):
        for mode in ("throughput", "latency"):
            if args.mode in ("both", mode):
                ok = run(args, count, mode) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
