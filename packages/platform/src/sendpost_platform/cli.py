"""Command line: ``sendpost-platform COMMAND`` (serve, api, worker, bounce, migrate, ...).

- ``serve [--listen HOST:PORT]``: API, background worker and bounce processor in one process
  (embedded mode: migrates a SQLite database automatically; the bounce processor listens on
  ``SENDPOST_BOUNCE_LISTEN`` unless it is empty, and a port it cannot bind is logged, not fatal).
- ``bounce [--listen HOST:PORT]``: the bounce processor only (SMTP server for DSNs).
- ``api [--listen HOST:PORT] [--workers N]``: the HTTP API only; ``worker``: background jobs
  only. Run any number of each against one PostgreSQL; they coordinate through the database.
- ``migrate``: apply the database migrations.
- ``create-account --name NAME [--json]``: an account with one sub-account; prints IDs and keys.
- ``dead-letters [--limit N]``: the newest ingested events that processing set aside (one JSON
  object per line: batch, index, reason and the raw event).

Settings come from the environment (``docs/platform.md``); a bad one stops the command with one
line naming the variable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from sendpost_platform import __version__
from sendpost_platform.config import Settings, load_settings, parse_listen
from sendpost_platform.errors import PlatformError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sendpost-platform", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"sendpost-platform {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("serve", "HTTP API and background processing in one process"),
        ("api", "the HTTP API only"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--listen", help="HOST:PORT (default: SENDPOST_LISTEN or 127.0.0.1:8080)")
        if name == "api":
            p.add_argument("--workers", type=int, default=1, help="HTTP worker processes")
    sub.add_parser("worker", help="background processing only")
    p = sub.add_parser("bounce", help="the bounce processor (SMTP server for DSNs) only")
    p.add_argument("--listen", help="HOST:PORT (default: SENDPOST_BOUNCE_LISTEN or 127.0.0.1:2525)")
    sub.add_parser("migrate", help="apply database migrations")
    p = sub.add_parser("create-account", help="create an account with one sub-account")
    p.add_argument("--name", required=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("dead-letters", help="list ingested events that could not be stored")
    p.add_argument("--limit", type=int, default=100, help="how many, newest first")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings()
        if args.command == "create-account":
            return _create_account(settings, args.name, as_json=args.json)
        if args.command == "migrate":
            return _migrate(settings)
        if args.command == "dead-letters":
            return _dead_letters(settings, args.limit)
        if args.command == "worker":
            return _worker(settings)
        if args.command == "bounce":
            return _bounce(settings, args.listen or settings.bounce_listen)
        listen = args.listen or settings.listen
        host, port = parse_listen(listen)
        return _serve(settings, host, port, role=args.command, workers=getattr(args, "workers", 1))
    except PlatformError as exc:
        print(f"sendpost-platform: {exc}", file=sys.stderr)
        return 1


def _open_store(settings: Settings, *, migrate_sqlite: bool) -> object:
    from sendpost_platform.store import Store

    store = Store.open(settings.database_url)
    if migrate_sqlite and store.is_sqlite:
        store.migrate()
    store.require_current_schema()
    return store


def _migrate(settings: Settings) -> int:
    from sendpost_platform.store import Store

    store = Store.open(settings.database_url)
    try:
        store.migrate()
    finally:
        store.dispose()
    print("database schema is up to date")
    return 0


def _dead_letters(settings: Settings, limit: int) -> int:
    from sendpost_platform.store import Store, dead_letters

    store = Store.open(settings.database_url)
    try:
        store.require_current_schema()
        with store.read() as conn:
            rows = dead_letters.recent(conn, limit=limit)
    finally:
        store.dispose()
    for row in rows:
        print(json.dumps(row, default=str, ensure_ascii=True))
    return 0


def _create_account(settings: Settings, name: str, *, as_json: bool) -> int:
    from sendpost_platform.clock import SystemClock
    from sendpost_platform.store import Store, accounts

    store = Store.open(settings.database_url)
    try:
        if store.is_sqlite:
            store.migrate()
        store.require_current_schema()
        with store.write() as conn:
            created = accounts.create_account(conn, name=name, now=SystemClock().now())
    finally:
        store.dispose()
    if as_json:
        print(
            json.dumps(
                {
                    "account_id": created.account_id,
                    "account_key": created.account_key,
                    "subaccount_id": created.subaccount_id,
                    "subaccount_key": created.subaccount_key,
                }
            )
        )
    else:
        print(f"account_id:     {created.account_id}")
        print(f"account_key:    {created.account_key}")
        print(f"subaccount_id:  {created.subaccount_id}")
        print(f"subaccount_key: {created.subaccount_key}")
        print("Keys are shown only now; they are stored hashed.")
    return 0


def _serve(settings: Settings, host: str, port: int, *, role: str, workers: int) -> int:
    import uvicorn

    from sendpost_platform.app import create_app
    from sendpost_platform.store import Store

    store = Store.open(settings.database_url)
    if role == "serve" and store.is_sqlite:
        store.migrate()
    store.require_current_schema()
    store.dispose()
    if workers > 1:
        os.environ["SENDPOST_SECRET_KEY"] = settings.secret_key
        uvicorn.run(
            "sendpost_platform.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )
        return 0
    if role == "serve" and settings.bounce_listen:
        return _serve_with_bounce(settings, host, port)
    app = create_app(settings, run_worker=role == "serve")
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0


def _serve_with_bounce(settings: Settings, host: str, port: int) -> int:
    """``serve``: the HTTP app (with its worker) and the bounce processor on one event loop."""
    import uvicorn

    from sendpost_platform.app import create_app
    from sendpost_platform.clock import SystemClock
    from sendpost_platform.smtp.bounce_guard import budget_bounce_logs
    from sendpost_platform.smtp.bounce_server import build_bounce_server
    from sendpost_platform.store import Store

    bounce_host, bounce_port = parse_listen(
        settings.bounce_listen, variable="SENDPOST_BOUNCE_LISTEN"
    )
    store = Store.open(settings.database_url)
    clock = SystemClock()
    app = create_app(settings, clock=clock, store=store, run_worker=True)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
    budget_bounce_logs()
    bounce = build_bounce_server(settings, store, clock)

    async def run() -> None:
        try:
            await bounce.start(bounce_host, bounce_port)
        except PlatformError as exc:
            logging.getLogger("sendpost_platform.cli").error(
                "bounce processor not started: %s", exc
            )
        try:
            await server.serve()
        finally:
            await bounce.stop()

    try:
        asyncio.run(run())
    finally:
        store.dispose()
    return 0


def _bounce(settings: Settings, listen: str) -> int:
    from sendpost_platform.clock import SystemClock
    from sendpost_platform.smtp.bounce_guard import budget_bounce_logs
    from sendpost_platform.smtp.bounce_server import build_bounce_server
    from sendpost_platform.store import Store

    host, port = parse_listen(listen, variable="SENDPOST_BOUNCE_LISTEN")
    store = Store.open(settings.database_url)
    try:
        store.require_current_schema()
        budget_bounce_logs()
        bounce = build_bounce_server(settings, store, SystemClock())

        async def run() -> None:
            await bounce.start(host, port)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                await stop.wait()
            finally:
                await bounce.stop()

        asyncio.run(run())
    finally:
        store.dispose()
    return 0


def _worker(settings: Settings) -> int:
    # SIGTERM during start-up (the imports below take a second or more on a busy machine) is
    # kept and honoured once the loop runs: the worker then exits 0 without a pass.
    early_stop: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: early_stop.append(signum))
    from sendpost_platform.clock import SystemClock
    from sendpost_platform.store import Store
    from sendpost_platform.worker import Worker, build_jobs

    store = Store.open(settings.database_url)
    store.require_current_schema()
    clock = SystemClock()
    worker = Worker(build_jobs(settings, store, clock), idle_interval=settings.worker_idle_interval)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if early_stop:
            stop.set()
        await worker.run(stop)

    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(run())
    finally:
        signal.signal(signal.SIGTERM, previous)
        store.dispose()
    return 0


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The worker's event loop: uvloop's where it is installed (Linux and macOS), asyncio's
    own otherwise. The webhook dispatcher's loop does a callback per socket event of many small
    POSTs; uvloop runs them with less CPU (docs/benchmarks.md, "Webhook dispatch")."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    sys.exit(main())
