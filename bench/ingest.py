"""Benchmark: agent events durably stored per second through the real ingestion endpoint.

    .venv/bin/python bench/ingest.py [--seconds 5] [--clients 32] [--pg-workers 3]
                                     [--backends sqlite,postgres]

For each backend (SQLite in a temp dir; PostgreSQL in a fresh schema of database ``test`` at
127.0.0.1:5432, dropped afterwards): migrate, create an account and a provider, start the
platform's app under uvicorn (httptools + uvloop) on loopback — 1 process on SQLite (one writer
by design), ``--pg-workers`` processes on PostgreSQL — plus a ``POST /bench/noop`` route that
reads the body and answers 200 without validating or storing anything. Then ``--clients``
concurrent keep-alive connections (raw asyncio HTTP/1.1 in a separate process, so client cost is
small and outside the server) post 100-event batches, first to the no-op route, then to
``/api/v1/tpsp/custom-smtp/events``, ``--seconds`` each. Reported: events/s answered 200 (each
one durably committed before its answer) and the ratio to the no-op rate on the same stack in
the same run; the stored rows are counted afterwards to check nothing acknowledged is missing.
The 1-minute load average before each backend's run is reported too (other work on the machine
lowers both rates).
The per-key rate limit is raised for the run (the contract's 10,000 requests/min would cap it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._http import response_status  # noqa: E402 (the path above first)

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
INGEST_PATH = "/api/v1/tpsp/custom-smtp/events"
NOOP_PATH = "/bench/noop"


def bench_app() -> Any:
    """uvicorn factory: the platform app plus the no-op route (settings from the environment)."""
    from fastapi.responses import JSONResponse
    from sendpost_platform.app import create_app
    from sendpost_platform.config import load_settings

    app = create_app(load_settings())

    @app.post(NOOP_PATH, include_in_schema=False)
    async def noop(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"accepted": len(body)})

    return app


def make_bodies(count: int = 64, events: int = 100) -> list[bytes]:
    """Realistic ``delivered`` batches; every event has its own microsecond timestamp (the
    validator's per-batch memo of valid timestamps gets no help here)."""
    bodies = []
    for b in range(count):
        micros = [secrets.randbelow(10**6) for _ in range(events)]
        batch = [
            {
                "message_id": str(uuid.uuid4()),
                "event_type": "delivered",
                "timestamp": f"2026-02-19T12:{b % 60:02d}:{n % 60:02d}.{micros[n]:06d}Z",
                "smtp_code": 250,
                "smtp_description": "250 2.0.0 Ok: queued as 4Z1bX83Lq2z9tSx",
                "recipient": f"user{n}@example.com",
                "event_id": secrets.token_hex(16),
                "queue_id": "4Z1bX83Lq2z9tSx",
            }
            for n in range(events)
        ]
        bodies.append(json.dumps({"events": batch}).encode())
    return bodies


async def _client(
    port: int, path: str, key: str, bodies: list[bytes], seconds: float, conns: int
) -> tuple[int, int, int]:
    requests = [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-SP-Event-ApiKey: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    ok = failed = 0
    stored_events = 0
    deadline = time.monotonic() + seconds

    async def one(index: int) -> None:
        nonlocal ok, failed, stored_events
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = index
        while time.monotonic() < deadline:
            writer.write(requests[n % len(requests)])
            n += 1
            if await response_status(reader) == b"200":
                ok += 1
                stored_events += 100
            else:
                failed += 1
        writer.close()

    await asyncio.gather(*(one(i) for i in range(conns)))
    return ok, failed, stored_events


def _client_process(args: tuple[int, str, str, float, int], out: Any) -> None:
    port, path, key, seconds, conns = args
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    bodies = make_bodies()
    started = time.monotonic()
    ok, failed, _ = asyncio.run(_client(port, path, key, bodies, seconds, conns))
    out.put((ok, failed, time.monotonic() - started))


def drive(port: int, path: str, key: str, seconds: float, conns: int) -> tuple[int, int, float]:
    out: Any = multiprocessing.Queue()
    proc = multiprocessing.Process(
        target=_client_process, args=((port, path, key, seconds, conns), out)
    )
    proc.start()
    result = out.get(timeout=seconds + 120)
    proc.join()
    return result  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def setup_store(url: str) -> str:
    from sendpost_platform.clock import SystemClock
    from sendpost_platform.store import Store, accounts, providers

    store = Store.open(url, pool_size=1)
    store.migrate()
    now = SystemClock().now()
    with store.write() as conn:
        account = accounts.create_account(conn, name="bench", now=now)
        _provider, key = providers.create_provider(
            conn,
            account_id=account.account_id,
            name="mta",
            host="127.0.0.1",
            port=25,
            security="none",
            test_from="a@example.com",
            test_to="b@example.com",
            now=now,
        )
    store.dispose()
    return key


def stored_events(url: str) -> int:
    import sqlalchemy as sa
    from sendpost_platform.store import Store
    from sendpost_platform.store.schema import ingest_batches

    store = Store.open(url, pool_size=1)
    with store.read() as conn:
        total = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(ingest_batches.c.event_count), 0))
        ).scalar_one()
    store.dispose()
    return int(total)


def run_backend(name: str, url: str, workers: int, seconds: float, clients: int) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)
    key = setup_store(url)
    port = free_port()
    env = {
        **os.environ,
        "SENDPOST_DATABASE_URL": url,
        "SENDPOST_SECRET_KEY": "bench-secret",
        "SENDPOST_INGEST_RATE_LIMIT": "100000000/minute",
        "PYTHONPATH": str(ROOT),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.ingest:bench_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.1)  # bounded wait for the server to listen
        drive(port, NOOP_PATH, key, 1.0, clients)  # warm-up: imports, connections, caches
        noop_ok, noop_failed, noop_elapsed = drive(port, NOOP_PATH, key, seconds, clients)
        before = stored_events(url)
        ok, failed, elapsed = drive(port, INGEST_PATH, key, seconds, clients)
        stored = stored_events(url) - before
    finally:
        server.terminate()
        server.wait(timeout=30)
    result: dict[str, Any] = {
        "backend": name,
        "load_average_1m_before": load_before,
        "server_processes": workers,
        "clients": clients,
        "noop_events_per_s": round(noop_ok * 100 / noop_elapsed),
        "ingest_events_per_s": round(ok * 100 / elapsed),
        "ingest_requests_per_s": round(ok / elapsed),
        "non_200": failed + noop_failed,
        "acknowledged_events": ok * 100,
        "stored_events": stored,
    }
    result["ratio_to_noop"] = round(
        result["ingest_events_per_s"] / max(1, result["noop_events_per_s"]), 3
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--pg-workers", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    results = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/bench.db"
                results.append(run_backend("sqlite", url, 1, args.seconds, args.clients))
        elif backend == "postgres":
            import psycopg

            schema = f"sp_bench_{os.getpid()}"
            with psycopg.connect(PG_SERVER, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            try:
                url = f"{PG_SERVER}?options=-csearch_path%3D{schema}"
                results.append(
                    run_backend("postgres", url, args.pg_workers, args.seconds, args.clients)
                )
            finally:
                with psycopg.connect(PG_SERVER, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    for result in results:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
