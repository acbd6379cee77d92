"""Benchmark: agent events acknowledged, processed and drained, through the whole platform.

    .venv/bin/python bench/pipeline.py [--messages 20000] [--backends postgres,sqlite]
                                       [--workers 1,2,4] [--api-processes 2] [--clients 16]
                                       [--claim-batches 20] [--backlogs 1]
                                       [--core-per-worker]

Setup, per backend (not timed): a fresh database (PostgreSQL: a new schema of database ``test``
at 127.0.0.1:5432, dropped afterwards; SQLite: a temp file), an account with a verified sender
domain (Ed25519 DKIM) and one provider pointing at the lean SMTP sink (``bench/relay_sink.py``,
its own process); ``--messages`` messages accepted through the send path and relayed to the
sink by the relay job, so they are CSSent and in the provider's scope.

The events, 100 per batch, as the agent would report them: per message one outcome (90%
``delivered``, 6% hard bounces, 4% soft bounces, with reply texts from Postfix, Gmail,
Microsoft, Yahoo and blocklists, some naming the recipient), then 5% of them again (exact
repeats, as a WAL replay sends them) at random later places, and 1% for messages that are not
the provider's (out of scope); shuffled within windows of 1,000, as several agent connections
interleave them.

Timed, per configuration: PostgreSQL with ``--workers`` worker processes (``sendpost-platform
worker``) next to ``--api-processes`` API processes (``sendpost-platform api``); SQLite with one
``sendpost-platform serve`` (API and worker in one process, the SQLite deployment). Two phases
with the same processes, the event tables emptied before each:

- **live**: a client process (raw asyncio HTTP/1.1 over ``--clients`` keep-alive connections)
  posts every batch once to the ingestion endpoint while the workers process. Reported:
  acknowledged events/s (events in 200 answers over the posting time), processed events/s
  (from the first 200 answer to the ``processed_at`` of the last batch) and the drain time
  (from the last 200 answer to the last batch processed).
- **backlog**: the same batches appear at once (stored in one transaction, the rows the
  ingestion API writes), as after an outage when every agent replays its WAL; the idle workers
  drain them. Reported: the drain time, processed events/s over it, and events per CPU-second
  of the processing processes (the workers; for ``serve`` its one process), a figure that
  other work on a shared machine disturbs less than the wall-clock rates; on PostgreSQL also
  the CPU per event of the database's processes that work for the workers (their sessions,
  named by ``PGAPPNAME``, and the server's WAL writer, checkpointer and background writer; not
  autovacuum). ``--backlogs N`` repeats this phase N times with the same processes (the event
  tables emptied before each): the run with the median rate is reported, every run listed; a
  backlog of 21,200 events drains in well under a second, so one run says little on a shared
  machine.

``--core-per-worker`` measures how processing scales with workers when each has a core, which
a machine whose cores the database shares cannot show otherwise: worker ``i`` and its database
sessions are pinned to CPU ``i`` (``sched_setaffinity``; sessions found by a ``PGAPPNAME`` of
their own, pinned again before each backlog phase), so one worker gets one core and two workers
two; the server's shared processes (WAL writer, checkpointer), the API processes and this
script are not pinned. It needs as many CPUs as the largest ``--workers``.

Each phase's counts must add up: acknowledged = stored (new or upgraded) + deduplicated
(duplicates dropped or merged) + discarded (out of scope) + deferred + dead-lettered, with the
stored rows of ``events`` matching. The exit status is non-zero if anything does not add up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._http import response_status  # noqa: E402 (the path above first)

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
INGEST_PATH = "/api/v1/tpsp/custom-smtp/events"
PLATFORM = str(Path(sys.executable).parent / "sendpost-platform")

HARD = [
    (550, "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"),
    (
        550,
        "550-5.1.1 The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos or unnecessary spaces. For more "
        "information, go to https://support.google.com/mail/?p=NoSuchUser "
        "41be03b00d2f7-5e4f2a1b3c4si1234567a.123 - gsmtp",
    ),
    (
        550,
        "550 5.4.1 Recipient address rejected: Access denied. For more information see "
        "https://aka.ms/EXOSmtpErrors [AM4PEPF00027A5F.eurprd04.prod.outlook.com]",
    ),
    (554, "554 delivery error: dd This user doesn't have a yahoo.com account ({rcpt}) [0]"),
    (550, "550 5.1.1 <{rcpt}>... User unknown"),
]
SOFT = [
    (
        452,
        "452-4.2.2 The email account that you tried to reach is over quota. Please direct the "
        "recipient to https://support.google.com/mail/?p=OverQuotaTemp",
    ),
    (
        421,
        "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected "
        "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
    ),
    (
        550,
        "550 5.7.1 Service unavailable, Client host [192.0.2.10] blocked using Spamhaus. To "
        "request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.10",
    ),
    (552, "552 5.2.2 <{rcpt}>: Mailbox full"),
]


# --- setup ------------------------------------------------------------------------------------


def setup(url: str, sink_port: int, count: int) -> tuple[str, list[tuple[str, str]]]:
    """Messages accepted and relayed to the sink; returns the ingestion key and the relayed
    messages' (UUID, recipient)."""
    import dataclasses

    import sqlalchemy as sa
    from sendpost_platform.store import providers
    from sendpost_platform.store.schema import messages

    from bench.relay import _relay, _setup

    settings, store, clock, _ = _setup(url, sink_port, count, "<p>Hello</p>", "ed25519")
    settings = dataclasses.replace(settings, relay_batch_size=500, relay_connections_per_provider=8)
    started = time.perf_counter()
    relayed, _cpu = asyncio.run(_relay(settings, store, clock, "bench-setup"))
    print(f"setup: relayed {relayed} messages in {time.perf_counter() - started:.1f}s", flush=True)
    with store.write() as conn:
        [provider] = providers.list_providers(conn, account_id=1)
        key = providers.rotate_ingest_key(
            conn, provider_id=provider.id, now=clock.now(), grace=dt.timedelta(0)
        )
        rows = conn.execute(
            sa.select(messages.c.uuid, messages.c.recipient).where(messages.c.state == "sent")
        ).all()
    store.dispose()
    return key, [(r.uuid, r.recipient) for r in rows]


def make_bodies(sent: Sequence[tuple[str, str]], seed: int = 17) -> tuple[list[bytes], int]:
    """The batches to post (see the module docstring); returns them and the event count."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for n, (message_uuid, recipient) in enumerate(sent):
        event: dict[str, Any] = {
            "message_id": message_uuid,
            "recipient": recipient,
            "timestamp": f"2026-02-19T12:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}."
            f"{n % 1000:03d}{rng.randrange(1000):03d}Z",
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "queue_id": f"4Z{n:09X}",
        }
        roll = rng.random()
        if roll < 0.90:
            event.update(
                event_type="delivered",
                smtp_code=250,
                smtp_description=f"250 2.0.0 Ok: queued as 5B{n:08X}",
            )
        else:
            code, text = rng.choice(HARD if roll < 0.96 else SOFT)
            kind = "soft_bounced" if code < 500 else "bounced"
            event.update(
                event_type=kind,
                smtp_code=code,
                smtp_description=text.format(rcpt=recipient),
                smtp_command="RCPT",
            )
        events.append(event)
    for index in sorted(rng.sample(range(len(events)), len(events) // 20), reverse=True):
        events.insert(rng.randrange(index + 1, len(events) + 1), dict(events[index]))
    for _ in range(len(sent) // 100):
        stray = dict(rng.choice(events))
        stray["message_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        events.insert(rng.randrange(len(events) + 1), stray)
    for start in range(0, len(events), 1000):
        window = events[start : start + 1000]
        rng.shuffle(window)
        events[start : start + 1000] = window
    bodies = [
        json.dumps({"events": events[i : i + 100]}).encode() for i in range(0, len(events), 100)
    ]
    return bodies, len(events)


# --- the client -------------------------------------------------------------------------------


async def _post_all(port: int, key: str, bodies: list[bytes], conns: int) -> dict[str, Any]:
    requests = [
        (
            f"POST {INGEST_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-SP-Event-ApiKey: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    counts = [json.loads(b)["events"].__len__() for b in bodies]
    state: dict[str, Any] = {"next": 0, "acked": 0, "failed": 0, "first": None, "last": None}

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while state["next"] < len(requests):
            index = state["next"]
            state["next"] += 1
            writer.write(requests[index])
            if await response_status(reader) == b"200":
                state["acked"] += counts[index]
                state["last"] = time.time()
                if state["first"] is None:
                    state["first"] = state["last"]
            else:
                state["failed"] += counts[index]
        writer.close()

    state["started"] = time.time()
    await asyncio.gather(*(one() for _ in range(conns)))
    return state


def _client(port: int, key: str, bodies: list[bytes], conns: int, out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(_post_all(port, key, bodies, conns)))


# --- one configuration ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reset(url: str) -> None:
    """Empty what a run writes (the agent's events and their outbox rows, batches, counters,
    suppressions, dead letters); the messages and their CSProcessed/CSSent stay."""
    import sqlalchemy as sa
    from sendpost_platform.store import Store
    from sendpost_platform.store.schema import (
        counters,
        event_outbox,
        events,
        ingest_batches,
        ingest_dead_letters,
        suppressions,
    )

    store = Store.open(url, pool_size=1)
    with store.write() as conn:
        agent = sa.select(events.c.id).where(events.c.source == "agent")
        conn.execute(sa.delete(event_outbox).where(event_outbox.c.event_id.in_(agent)))
        conn.execute(sa.delete(events).where(events.c.source == "agent"))
        for table in (ingest_batches, counters, suppressions, ingest_dead_letters):
            conn.execute(sa.delete(table))
    store.dispose()


def snapshot(url: str) -> dict[str, Any]:
    """Pending batches, the last ``processed_at``, the counters and the agent's stored rows."""
    import sqlalchemy as sa
    from sendpost_platform.store import Store
    from sendpost_platform.store.schema import counters, events, ingest_batches

    store = Store.open(url, pool_size=1)
    with store.read() as conn:
        pending, last = conn.execute(
            sa.select(
                sa.func.count().filter(ingest_batches.c.processed_at.is_(None)),
                sa.func.max(ingest_batches.c.processed_at),
            )
        ).one()
        named = dict(
            conn.execute(
                sa.select(counters.c.name, sa.func.sum(counters.c.value)).group_by(counters.c.name)
            ).all()
        )
        stored_rows = conn.execute(
            sa.select(sa.func.count()).select_from(events).where(events.c.source == "agent")
        ).scalar_one()
    store.dispose()
    return {
        "pending": int(pending),
        "last": last.timestamp() if last else None,
        "counters": {k: int(v) for k, v in named.items()},
        "rows": int(stored_rows),
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WORKER_SESSIONS = "sendpost-bench-worker"
"""The ``application_name`` of the worker processes' database sessions (``PGAPPNAME``)."""


def database_cpu(url: str) -> dict[int, float]:
    """CPU seconds used so far, by PID, by the PostgreSQL processes that work for the workers:
    their sessions and the server's own processes (WAL writer, checkpointer, background
    writer); not other sessions (the bench's own, other users of the server), nor autovacuum."""
    import psycopg

    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        pids = [
            int(row[0])
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s"
                " OR backend_type NOT IN ('client backend', 'autovacuum worker',"
                " 'autovacuum launcher')",
                (WORKER_SESSIONS + "%",),
            )
        ]
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):  # the process ended meanwhile
            found[pid] = cpu_seconds(pid)
    return found


def pin_workers(url: str, processing: list[subprocess.Popen[bytes]]) -> None:
    """Worker ``i`` and its database sessions (``PGAPPNAME`` ``WORKER_SESSIONS-i``) on CPU ``i``
    (``--core-per-worker``)."""
    import psycopg

    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        sessions = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity WHERE application_name LIKE %s",
            (WORKER_SESSIONS + "-%",),
        ).fetchall()
    for cpu, proc in enumerate(processing):
        for task in Path(f"/proc/{proc.pid}/task").iterdir():  # every thread, not only the first
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), {cpu})
    for pid, application in sessions:
        with contextlib.suppress(OSError):  # the session ended meanwhile
            os.sched_setaffinity(int(pid), {int(application.rpartition("-")[2])})


def database_cpu_since(url: str, before: dict[int, float]) -> float:
    """CPU seconds the processes of :func:`database_cpu` at ``before`` have used since."""
    now = database_cpu(url)
    return sum(now[pid] - used for pid, used in before.items() if pid in now)


def wait_listening(port: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError("the platform did not start") from None
            time.sleep(0.1)  # bounded wait for the server to listen


def _live(
    port: int, url: str, key: str, bodies: list[bytes], clients: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Post every batch while the workers run, then wait for the backlog to drain; returns the
    client's figures and the database's."""
    out: Any = multiprocessing.Queue()
    client = multiprocessing.Process(target=_client, args=(port, key, bodies, clients, out))
    client.start()
    posted = out.get(timeout=3600)
    client.join()
    return posted, drained(url)


def _backlog(url: str, bodies: list[bytes]) -> tuple[float, dict[str, Any]]:
    """Store every batch at once, as an outage's replay would (the rows the ingestion API
    writes, in one transaction), and wait for the idle workers to drain them; returns the
    commit time and the database's figures."""
    import sqlalchemy as sa
    from sendpost_platform.clock import SystemClock
    from sendpost_platform.store import Store, ingest
    from sendpost_platform.store.schema import custom_smtp_providers

    store = Store.open(url, pool_size=1)
    with store.write() as conn:
        provider_id = conn.execute(sa.select(custom_smtp_providers.c.id)).scalar_one()
        items = [ingest.IncomingBatch(provider_id, b, len(json.loads(b)["events"])) for b in bodies]
        ingest.insert_batches(conn, items, now=SystemClock().now())
    committed = time.time()
    store.dispose()
    return committed, drained(url)


def drained(url: str) -> dict[str, Any]:
    """Waits for the backlog to drain, then returns the :func:`snapshot`. While waiting it asks
    only how many batches are pending (one probe of the partial index of pending batches, on
    one connection): counting the stored events, or connecting anew, every tenth of a second
    would take CPU from the processes being measured."""
    import sqlalchemy as sa
    from sendpost_platform.store import Store
    from sendpost_platform.store.schema import ingest_batches

    pending = (
        sa.select(sa.func.count())
        .select_from(ingest_batches)
        .where(ingest_batches.c.processed_at.is_(None))
    )
    store = Store.open(url, pool_size=1)
    deadline = time.monotonic() + 3600
    try:
        while time.monotonic() < deadline:
            with store.read() as conn:
                if not conn.execute(pending).scalar_one():
                    break
            time.sleep(0.1)  # bounded wait for the workers to drain the backlog
    finally:
        store.dispose()
    return snapshot(url)


def counts(seen: dict[str, Any], acknowledged: int) -> dict[str, Any]:
    got = seen["counters"]
    out = {
        "acknowledged": acknowledged,
        "stored": got.get("ingest.inserted", 0) + got.get("ingest.upgraded", 0),
        "deduplicated": got.get("ingest.duplicate", 0) + got.get("ingest.merged", 0),
        "discarded": got.get("ingest.discarded_out_of_scope", 0),
        "deferred": got.get("ingest.deferred", 0),
        "dead_lettered": got.get("ingest.dead_lettered", 0),
        "stored_rows": seen["rows"],
        "pending_after": seen["pending"],
    }
    out["adds_up"] = (
        acknowledged
        == sum(out[k] for k in ("stored", "deduplicated", "discarded", "deferred", "dead_lettered"))
        and seen["rows"] == got.get("ingest.inserted", 0)
        and seen["pending"] == 0
    )
    return out


def run(
    name: str,
    url: str,
    key: str,
    bodies: list[bytes],
    *,
    workers: int,
    api_processes: int,
    clients: int,
    claim_batches: int,
    backlogs: int = 1,
    core_per_worker: bool = False,
) -> dict[str, Any]:
    """One configuration: the live phase, then ``backlogs`` backlog phases (same processes;
    ``backlog`` is the one with the median rate, ``backlog_runs`` lists them all)."""
    reset(url)
    port = free_port()
    env = {
        **os.environ,
        "SENDPOST_DATABASE_URL": url,
        "SENDPOST_SECRET_KEY": "bench-secret",
        "SENDPOST_INGEST_RATE_LIMIT": "100000000/minute",
        "SENDPOST_WORKER_IDLE_INTERVAL": "0.05",
        "SENDPOST_WORKER_CLAIM_BATCHES": str(claim_batches),
        "SENDPOST_BOUNCE_LISTEN": "",
        "SENDPOST_ALLOW_PRIVATE_NETWORKS": "true",
    }
    listen = ["--listen", f"127.0.0.1:{port}"]
    with tempfile.TemporaryFile() as log:  # the servers' logs (an access line per request)

        def start(*command: str, **extra: str) -> subprocess.Popen[bytes]:
            command = (PLATFORM, *command)
            return subprocess.Popen(command, env={**env, **extra}, cwd=ROOT, stdout=log, stderr=log)

        if name == "sqlite":
            procs = [start("serve", *listen)]
            processing = procs  # the API and the worker in one process
        else:
            procs = [start("api", *listen, "--workers", str(api_processes))]
            processing = [
                start("worker", PGAPPNAME=f"{WORKER_SESSIONS}-{i}") for i in range(workers)
            ]
            procs += processing
        try:
            wait_listening(port, procs)
            time.sleep(1.0)  # the worker processes import and connect: not part of the timing
            load_live = round(os.getloadavg()[0], 2)
            posted, live = _live(port, url, key, bodies, clients)
            live_counts = counts(live, posted["acked"])
            pin = core_per_worker and name == "postgres"
            runs = [
                _measured_backlog(name, url, bodies, processing, pin=pin) for _ in range(backlogs)
            ]
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)
            log.seek(0)
            tracebacks = log.read().decode(errors="replace").count("Traceback")
            if tracebacks:
                print(f"{tracebacks} traceback(s) in the servers' logs", file=sys.stderr)
    posting_s = posted["last"] - posted["started"]
    median = sorted(runs, key=lambda r: r["processed_events_per_s"])[len(runs) // 2]
    return {
        "backend": name,
        "configuration": "serve"
        if name == "sqlite"
        else f"{workers} worker(s)" + (", a core each" if core_per_worker else ""),
        "live": {
            "load_average_1m_before": load_live,
            "acknowledged_events_per_s": round(posted["acked"] / posting_s),
            "processed_events_per_s": round(posted["acked"] / (live["last"] - posted["first"])),
            "drain_after_last_ack_s": round(live["last"] - posted["last"], 2),
            "refused": posted["failed"],
            **live_counts,
        },
        "backlog": median,
        "backlog_runs": [
            {
                key: run[key]
                for key in (
                    "load_average_1m_before",
                    "processed_events_per_s",
                    "processing_cpu_us_per_event",
                    "database_cpu_us_per_event",
                    "adds_up",
                )
            }
            for run in runs
        ],
        "adds_up": live_counts["adds_up"]
        and all(run["adds_up"] for run in runs)
        and not posted["failed"],
    }


def _measured_backlog(
    name: str,
    url: str,
    bodies: list[bytes],
    processing: list[subprocess.Popen[bytes]],
    *,
    pin: bool = False,
) -> dict[str, Any]:
    """One backlog phase with the running processes: the event tables emptied, the backlog
    stored at once and drained; its figures and counts."""
    total = sum(len(json.loads(b)["events"]) for b in bodies)
    reset(url)
    time.sleep(0.5)  # let the workers go idle
    if pin:
        pin_workers(url, processing)
    load = round(os.getloadavg()[0], 2)
    cpu_before = sum(cpu_seconds(p.pid) for p in processing)
    db_before = database_cpu(url) if name == "postgres" else {}
    committed, backlog = _backlog(url, bodies)
    cpu = sum(cpu_seconds(p.pid) for p in processing) - cpu_before
    db_cpu = database_cpu_since(url, db_before) if name == "postgres" else 0.0
    drain_s = backlog["last"] - committed
    return {
        "load_average_1m_before": load,
        "events": total,
        "drain_s": round(drain_s, 2),
        "processed_events_per_s": round(total / drain_s),
        "processing_cpu_s": round(cpu, 2),
        "events_per_cpu_s": round(total / cpu) if cpu else None,
        "processing_cpu_us_per_event": round(cpu / total * 1e6, 1),
        "database_cpu_s": round(db_cpu, 2),
        "database_cpu_us_per_event": round(db_cpu / total * 1e6, 1),
        **counts(backlog, total),
    }


def backend(name: str, url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    from bench.relay import _sink

    ready, stop, count, sample = ctx.Queue(), ctx.Event(), ctx.Value("i", 0), ctx.Queue()
    sink = ctx.Process(target=_sink, args=("lean", ready, stop, count, sample), daemon=True)
    sink.start()
    try:
        key, sent = setup(url, ready.get(timeout=30), args.messages)
    finally:
        stop.set()
        sink.join(timeout=10)
    bodies, total = make_bodies(sent)
    print(f"{name}: {len(sent)} messages relayed, {total} events in {len(bodies)} batches")
    counts = [0] if name == "sqlite" else [int(w) for w in args.workers.split(",")]
    results = []
    for workers in counts:
        result = run(
            name,
            url,
            key,
            bodies,
            workers=workers,
            api_processes=args.api_processes,
            clients=args.clients,
            claim_batches=args.claim_batches,
            backlogs=args.backlogs,
            core_per_worker=args.core_per_worker,
        )
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def _spread(runs: list[dict[str, Any]]) -> str:
    """`` (median of N: low–high)`` for repeated backlog phases, nothing for one."""
    if len(runs) < 2:
        return ""
    rates = sorted(run["processed_events_per_s"] for run in runs)
    return f" (median of {len(rates)}: {rates[0]:,}–{rates[-1]:,})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--workers", default="1,2,4", help="worker processes (PostgreSQL)")
    parser.add_argument("--api-processes", type=int, default=2, help="API processes (PostgreSQL)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--claim-batches", type=int, default=20)
    parser.add_argument(
        "--backlogs",
        type=int,
        default=1,
        help="backlog phases per configuration (the median is reported, every run listed)",
    )
    parser.add_argument(
        "--core-per-worker",
        action="store_true",
        help="pin each worker and its database sessions to a CPU of its own (PostgreSQL)",
    )
    args = parser.parse_args()
    if args.core_per_worker and max(map(int, args.workers.split(","))) > len(
        os.sched_getaffinity(0)
    ):
        parser.error("--core-per-worker needs as many CPUs as the largest --workers")
    results: list[dict[str, Any]] = []
    for name in args.backends.split(","):
        if name == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                results += backend(name, f"sqlite:///{tmp}/bench.db", args)
            continue
        import psycopg

        schema = f"sp_pipeline_{os.getpid()}"
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            results += backend(name, f"{PG_SERVER}?options=-csearch_path%3D{schema}", args)
        finally:
            with psycopg.connect(PG_SERVER, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    print("summary:")
    for r in results:
        live, backlog = r["live"], r["backlog"]
        adds_up = "counts add up" if r["adds_up"] else "COUNTS DO NOT ADD UP"
        print(
            f"  {r['backend']:8} {r['configuration']:11}"
            f" live: acknowledged {live['acknowledged_events_per_s']:>7,} ev/s,"
            f" processed {live['processed_events_per_s']:>7,} ev/s,"
            f" drained {live['drain_after_last_ack_s']:>5.2f} s after the last ack"
            f" (load {live['load_average_1m_before']});"
            f" backlog of {backlog['events']:,}: drained in {backlog['drain_s']:.2f} s ="
            f" {backlog['processed_events_per_s']:>7,} ev/s{_spread(r['backlog_runs'])},"
            f" {backlog['events_per_cpu_s'] or 0:>7,} ev per CPU-second of the processing"
            f" process(es) ({backlog['processing_cpu_us_per_event']} µs CPU per event,"
            f" PostgreSQL {backlog['database_cpu_us_per_event']} µs)"
            f" (load {backlog['load_average_1m_before']});"
            f" {live['acknowledged']:,} = {live['stored']:,} stored"
            f" + {live['deduplicated']:,} deduplicated + {live['discarded']:,} discarded"
            f" + {live['dead_lettered']:,} dead-lettered: {adds_up}"
        )
    return 0 if all(r["adds_up"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
