"""Benchmark: DKIM-signed messages relayed per second to a local SMTP sink.

    .venv/bin/python bench/relay.py [--messages 3000] [--workers 1] [--connections 4]
                                    [--batch 200] [--dkim rsa|ed25519] [--sink lean|aiosmtpd]
                                    [--database-url URL]

Setup (not timed): a fresh database (SQLite in a temp dir by default; a URL must name an empty
database), an account with a verified sender domain (RSA-2048 DKIM key by default), a
round-robin pool of one provider pointing at an SMTP sink in a separate process, and
``--messages`` messages accepted through the send path (``sending.submit``), with open and click
tracking on.

The sink is ``bench/relay_sink.py`` by default: a real but lean SMTP server (pipelining, DATA
dot-unstuffing, command order enforced) that costs a fraction of aiosmtpd's CPU, which matters
on a 2-core machine where the sink shares the cores with the worker; ``--sink aiosmtpd`` uses
``devtools.smtp_servers.TestServer`` instead.

Timed: ``--workers`` relay worker processes (``RelayJob.run_once`` passes) claiming, preparing
(MIME, tracking links, DKIM signature), relaying over reused SMTP connections and recording CSSent
for every message, until the queue is empty. The sink counts what it received, and the DKIM
signature of the first message it received is verified with dkimpy; the exit status is 0 only
if every message was relayed, received and that signature verifies.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _sink(kind: str, ready: Any, stop: Any, count: Any, sample: Any) -> None:
    if kind == "aiosmtpd":
        from devtools.smtp_servers import TestServer

        with TestServer() as server:
            ready.put(server.port)
            while not stop.wait(0.2):
                count.value = len(server.messages)
            count.value = len(server.messages)
            sample.put(("", [], server.messages[0]) if server.messages else None)
        return
    asyncio.run(_lean_sink(ready, stop, count, sample))


async def _lean_sink(ready: Any, stop: Any, count: Any, sample: Any) -> None:
    from bench.relay_sink import SinkStats, start_sink

    stats = SinkStats()
    server = await start_sink(stats)
    ready.put(server.sockets[0].getsockname()[1])
    while not stop.is_set():
        count.value = stats.messages
        await asyncio.sleep(0.1)
    count.value = stats.messages
    sample.put(stats.first)
    server.close()


def _check_signature(sample: Any, public_key: str) -> bool:
    """Verify the DKIM signature of the first message the sink received."""
    import dkim

    if sample is None:
        return False
    record = f"v=DKIM1; k={public_key[0]}; p={public_key[1]}".encode()
    message = sample[2] if isinstance(sample[2], bytes) else sample[2].encode()
    return bool(dkim.verify(message, dnsfunc=lambda name, timeout=5: record))


def _setup(url: str, port: int, messages: int, html: str, algorithm: str = "rsa") -> Any:
    from sendpost_platform.clock import SystemClock
    from sendpost_platform.config import Settings
    from sendpost_platform.crypto import SecretBox
    from sendpost_platform.domain.addresses import Mailbox
    from sendpost_platform.domain.routing import PoolMember
    from sendpost_platform.sending import SendRequest, submit
    from sendpost_platform.smtp import dkim
    from sendpost_platform.store import Store, accounts, domains, pools, providers

    settings = Settings(
        database_url=url,
        secret_key=secrets.token_urlsafe(32),
        allow_private_networks=True,  # the sink listens on loopback
    )
    store = Store.open(url)
    store.migrate()
    clock = SystemClock()
    key = dkim.generate_key(dkim.DkimAlgorithm(algorithm))
    box = SecretBox(settings.secret_key, purpose=domains.KEY_PURPOSE)
    now = clock.now()
    with store.write() as conn:
        account = accounts.create_account(conn, name="bench", now=now)
        provider, _ = providers.create_provider(
            conn,
            account_id=account.account_id,
            name="sink",
            host="127.0.0.1",
            port=port,
            security="none",
            test_from="t@bench.example",
            test_to="t@example.org",
            now=now,
            max_rate_per_hour=10_000_000,
        )
        domain = domains.create_domain(
            conn,
            account_id=account.account_id,
            domain="bench.example",
            selector="s1",
            algorithm=algorithm,
            private_key=box.seal(key.private_key.decode()),
            public_key=key.public_key,
            now=now,
        )
        assert domain is not None
        domains.record_check(
            conn, domain.id, dkim_verified=True, return_path_verified=True, check={}, now=now
        )
        pool = pools.create_pool(
            conn,
            account_id=account.account_id,
            name="main",
            strategy="round_robin",
            members=[PoolMember(str(provider.id))],
            now=now,
        )
        assert pool is not None
    per_request = 100
    for start in range(0, messages, per_request):
        request = SendRequest.to_each(
            [
                Mailbox(f"user{i}@example.org")
                for i in range(start, min(messages, start + per_request))
            ],
            from_email="news@bench.example",
            from_name="Bench",
            subject="Benchmark message",
            ippool="main",
            text_body="Hello, this is a benchmark message.\n" * 20,
            html_body=html,
            track_clicks=True,
            track_opens=True,
        )
        with store.write() as conn:
            submit(
                conn,
                account_id=account.account_id,
                subaccount_id=account.subaccount_id,
                request=request,
                pool=pool,
                now=clock.now(),
            )
    return settings, store, clock, (algorithm, key.public_key)


async def _relay(settings: Any, store: Any, clock: Any, worker_id: str) -> tuple[int, float]:
    """Run relay passes until one finds nothing due; returns (messages, CPU seconds)."""
    from sendpost_platform.relay_worker import RelayJob

    job = RelayJob(store, settings, clock, worker_id=worker_id)
    done = 0
    cpu = time.process_time()
    while True:
        did = await job.run_once()
        if did == 0:
            break
        done += did
    cpu = time.process_time() - cpu
    await job.close()
    return done, cpu


def _worker(settings: Any, number: int, go: Any, results: Any) -> None:
    from sendpost_platform.clock import SystemClock
    from sendpost_platform.store import Store

    store = Store.open(settings.database_url)
    go.wait()
    done, cpu = asyncio.run(_relay(settings, store, SystemClock(), f"bench-{number}"))
    store.dispose()
    results.put((done, cpu))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--batch", type=int, default=200, help="relay_batch_size")
    parser.add_argument("--connections", type=int, default=4, help="connections per provider")
    parser.add_argument("--workers", type=int, default=1, help="relay worker processes")
    parser.add_argument("--dkim", choices=["rsa", "ed25519"], default="rsa", help="key type")
    parser.add_argument(
        "--sink",
        choices=["lean", "aiosmtpd"],
        default="lean",
        help="SMTP sink (bench/relay_sink.py or devtools)",
    )
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ready, stop, count, sample = ctx.Queue(), ctx.Event(), ctx.Value("i", 0), ctx.Queue()
    sink = ctx.Process(target=_sink, args=(args.sink, ready, stop, count, sample), daemon=True)
    sink.start()
    port = ready.get(timeout=30)
    html = (
        "<html><body>"
        + "".join(
            f'<p>Item {i}: <a href="https://shop.example/item/{i}">see it</a></p>'
            for i in range(10)
        )
        + "</body></html>"
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        settings, store, _clock, public_key = _setup(url, port, args.messages, html, args.dkim)
        settings = dataclasses.replace(
            settings,
            relay_batch_size=args.batch,
            relay_connections_per_provider=args.connections,
        )
        store.dispose()
        go, results = ctx.Event(), ctx.Queue()
        workers = [
            ctx.Process(target=_worker, args=(settings, n, go, results))
            for n in range(args.workers)
        ]
        for worker in workers:
            worker.start()
        time.sleep(2.0)  # let the worker processes import and connect: not part of the timing
        started = time.perf_counter()
        go.set()
        outcomes = [results.get(timeout=3600) for _ in workers]
        elapsed = time.perf_counter() - started
        for worker in workers:
            worker.join(timeout=30)
    done = sum(d for d, _ in outcomes)
    cpu_ms = sum(c for _, c in outcomes) / max(done, 1) * 1000
    stop.set()
    signed = _check_signature(sample.get(timeout=30), public_key)
    sink.join(timeout=10)
    db = "sqlite" if url.startswith("sqlite") else "postgresql"
    print(
        f"relayed {done} DKIM-signed ({args.dkim}) messages in {elapsed:.2f}s: "
        f"{done / elapsed:.0f} msg/s "
        f"(database {db}, {args.workers} worker process(es), batch {args.batch}, "
        f"{args.connections} connections each, worker CPU {cpu_ms:.2f} ms/message; "
        f"{args.sink} sink received {count.value}, DKIM of the first "
        f"{'verifies' if signed else 'DOES NOT VERIFY'})"
    )
    return 0 if done == args.messages == count.value and signed else 1


if __name__ == "__main__":
    sys.exit(main())
