"""Benchmark: DKIM-signed messages relayed per second to a local SMTP sink.

    .venv/bin/python bench/relay.py [--messages 3000] [--database-url URL] [--connections 4]

Setup (not timed): a fresh database (SQLite in a temp dir by default), an account with a
verified sender domain (RSA-2048 DKIM key), a round-robin pool of one provider pointing at an
aiosmtpd sink running in a separate process, and ``--messages`` messages accepted through the
send path (``sending.submit``). Timed: the relay worker (``RelayJob.run_once`` passes) claiming,
preparing (MIME, tracking links, DKIM signature), relaying over reused SMTP connections and
recording CSSent for every message, until the queue is empty. The sink counts what it received.
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


def _sink(ready: Any, stop: Any, count: Any) -> None:
    from devtools.smtp_servers import TestServer

    with TestServer() as server:
        ready.put(server.port)
        while not stop.wait(0.2):
            count.value = len(server.messages)
        count.value = len(server.messages)


def _setup(url: str, port: int, messages: int, html: str) -> Any:
    from sendpost_platform.clock import SystemClock
    from sendpost_platform.config import Settings
    from sendpost_platform.crypto import SecretBox
    from sendpost_platform.domain.routing import PoolMember
    from sendpost_platform.sending import SendRequest, submit
    from sendpost_platform.smtp import dkim
    from sendpost_platform.store import Store, accounts, domains, pools, providers

    settings = Settings(database_url=url, secret_key=secrets.token_urlsafe(32))
    store = Store.open(url)
    store.migrate()
    clock = SystemClock()
    key = dkim.generate_key()
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
            algorithm="rsa",
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
        request = SendRequest(
            from_email="news@bench.example",
            from_name="Bench",
            subject="Benchmark message",
            ippool="main",
            to=[f"user{i}@example.org" for i in range(start, min(messages, start + per_request))],
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
    return settings, store, clock


async def _relay(settings: Any, store: Any, clock: Any, expected: int) -> tuple[int, float]:
    from sendpost_platform.relay_worker import RelayJob

    job = RelayJob(store, settings, clock)
    done = 0
    cpu = time.process_time()
    started = time.perf_counter()
    while done < expected:
        did = await job.run_once()
        if did == 0:
            break
        done += did
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    await job.close()
    print(f"worker CPU per message: {cpu / max(done, 1) * 1000:.2f} ms")
    return done, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--batch", type=int, default=200, help="relay_batch_size")
    parser.add_argument("--connections", type=int, default=4, help="connections per provider")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ready, stop, count = ctx.Queue(), ctx.Event(), ctx.Value("i", 0)
    sink = ctx.Process(target=_sink, args=(ready, stop, count), daemon=True)
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
        settings, store, clock = _setup(url, port, args.messages, html)
        settings = dataclasses.replace(
            settings,
            relay_batch_size=args.batch,
            relay_connections_per_provider=args.connections,
        )
        done, elapsed = asyncio.run(_relay(settings, store, clock, args.messages))
        store.dispose()
    stop.set()
    sink.join(timeout=10)
    db = "sqlite" if url.startswith("sqlite") else "postgresql"
    print(
        f"relayed {done} DKIM-signed messages in {elapsed:.2f}s: {done / elapsed:.0f} msg/s "
        f"(database {db}, batch {args.batch}, {args.connections} connections; "
        f"sink received {count.value})"
    )
    return 0 if done == args.messages == count.value else 1


if __name__ == "__main__":
    sys.exit(main())
