"""The ``bounce`` role and ``serve``'s embedded bounce processor, as real processes (SQLite)."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import subprocess
import time

import httpx
import pytest
from sendpost_platform.clock import SystemClock
from sendpost_platform.store import Store, messages
from sendpost_wire import EventType

from tests.platform.bounces.conftest import corpus_dsn, return_path, timeline
from tests.platform.conftest import add_provider
from tests.platform.core.test_cli_server import CLI, embedded_env, free_port, run_cli

__all__ = ["embedded_env"]


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def wait_for_port(proc: subprocess.Popen[str], port: int) -> None:
    """Until something accepts on ``port``, or fail with the process's stderr (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"process did not listen: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)  # polling the condition above, bounded by the deadline


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def seeded_message(env: dict[str, str]) -> messages.Message:
    created = json.loads(run_cli(env, "create-account", "--name", "Acme", "--json").stdout)
    store = Store.open(env["SENDPOST_DATABASE_URL"], pool_size=1)
    clock = SystemClock()
    try:
        with store.write() as conn:
            provider, _ = add_provider(conn, created["account_id"], clock)  # type: ignore[arg-type]
            return messages.insert_message(
                conn,
                account_id=created["account_id"],
                subaccount_id=created["subaccount_id"],
                recipient="user@example.com",
                sender="news@sender.example",
                now=clock.now(),
                provider_id=provider.id,
                state="sent",
            )
    finally:
        store.dispose()


@pytest.fixture
def migrated_env(embedded_env: dict[str, str]) -> dict[str, str]:
    assert run_cli(embedded_env, "migrate").returncode == 0
    return embedded_env


def test_bounce_role_receives_a_dsn_end_to_end(migrated_env: dict[str, str]) -> None:
    """`sendpost-platform bounce --listen`: refuses an unknown address at RCPT, stores a hard
    bounce from a real DSN, and exits 0 on SIGTERM."""
    message = seeded_message(migrated_env)
    port = free_port()
    proc = start(["bounce", "--listen", f"127.0.0.1:{port}"], migrated_env)
    wait_for_port(proc, port)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo("mta.example")
            smtp.mail("<>")
            code, _ = smtp.rcpt(return_path(message).replace(message.uuid[:8], "00000000"))
            assert code == 550
            assert smtp.rcpt(return_path(message))[0] == 250
            raw = corpus_dsn("sisimai-lhost-sendmail-01.eml", recipient=message.recipient)
            assert smtp.data(raw.replace(b"\n", b"\r\n"))[0] == 250
    finally:
        assert stop(proc) == 0
    store = Store.open(migrated_env["SENDPOST_DATABASE_URL"], pool_size=1)
    try:
        [event] = timeline(store, message.uuid)
    finally:
        store.dispose()
    assert (event["event_type"], event["source"]) == (int(EventType.CSHardBounced), "dsn")


def test_serve_runs_the_bounce_processor_too(embedded_env: dict[str, str]) -> None:
    """`serve` listens for HTTP and, on SENDPOST_BOUNCE_LISTEN, for bounces, in one process."""
    http_port, smtp_port = free_port(), free_port()
    env = {**embedded_env, "SENDPOST_BOUNCE_LISTEN": f"127.0.0.1:{smtp_port}"}
    proc = start(["serve", "--listen", f"127.0.0.1:{http_port}"], env)
    try:
        wait_for_port(proc, smtp_port)
        wait_for_port(proc, http_port)
        assert httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=5).status_code == 200
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            assert smtp.noop()[0] == 250
    finally:
        # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
        assert stop(proc) in (0, -signal.SIGTERM)
