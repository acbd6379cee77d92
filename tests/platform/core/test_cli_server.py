"""The CLI and a real server: ``create-account``, ``migrate`` and ``serve`` over loopback HTTP."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sendpost_platform.clock import SystemClock
from sendpost_platform.store import Store, messages

from tests.platform.conftest import add_provider
from tests.platform.core.helpers import INGEST_PATH, agent_event

CLI = [sys.executable, "-m", "sendpost_platform.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_")}
    env["SENDPOST_DATABASE_URL"] = f"sqlite:///{tmp_path / 'data' / 'sendpost.db'}"
    (tmp_path / "data").mkdir()
    return env


def test_create_account_json_and_generated_secret(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    """create-account --json prints the four fields; embedded mode made a 0600 secret key file."""
    result = run_cli(embedded_env, "create-account", "--name", "Acme", "--json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert {"account_id", "account_key", "subaccount_id", "subaccount_key"} == set(created)
    secret = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    again = run_cli(embedded_env, "create-account", "--name", "Beta", "--json")
    assert secret.read_text() == secret.read_text()
    assert created["account_id"] + 1 == json.loads(again.stdout)["account_id"]


def test_bad_setting_stops_with_one_line_naming_it(embedded_env: dict[str, str]) -> None:
    """A bad variable is reported by name and value, exit status 1, no traceback."""
    env = {**embedded_env, "SENDPOST_WORKER_CLAIM_BATCHES": "many"}
    result = run_cli(env, "migrate")
    assert result.returncode == 1
    assert (result.stderr.strip().splitlines()) == [
        "sendpost-platform: SENDPOST_WORKER_CLAIM_BATCHES='many': expected an integer"
    ]


def test_api_role_refuses_an_unmigrated_database(embedded_env: dict[str, str]) -> None:
    """Only `serve` migrates by itself; `api` asks for `migrate` first."""
    result = run_cli(embedded_env, "api", "--listen", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "run `sendpost-platform migrate`" in result.stderr


@pytest.fixture
def server(embedded_env: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--listen", f"127.0.0.1:{port}"],
        env={**embedded_env, "SENDPOST_WORKER_IDLE_INTERVAL": "0.05"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)  # polling the condition above, bounded by the deadline
    try:
        yield base, embedded_env
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_ingests_and_processes_over_real_http(server: tuple[str, dict[str, str]]) -> None:
    """Through a real uvicorn: post a batch, the background worker turns it into a CSDelivered
    visible in the events API."""
    base, env = server
    created = json.loads(run_cli(env, "create-account", "--name", "Acme", "--json").stdout)
    store = Store.open(env["SENDPOST_DATABASE_URL"], pool_size=1)
    clock = SystemClock()
    with store.write() as conn:
        provider, key = add_provider(conn, created["account_id"], clock)  # type: ignore[arg-type]
        message = messages.insert_message(
            conn,
            account_id=created["account_id"],
            subaccount_id=created["subaccount_id"],
            recipient="user@example.com",
            sender="s@example.com",
            now=clock.now(),
            provider_id=provider.id,
            state="sent",
        )
    store.dispose()
    posted = httpx.post(
        base + INGEST_PATH,
        headers={"X-SP-Event-ApiKey": key},
        json={"events": [agent_event(message.uuid)]},
        timeout=10,
    )
    assert posted.status_code == 200
    deadline = time.monotonic() + 20
    data: list[dict[str, object]] = []
    while not data and time.monotonic() < deadline:
        data = httpx.get(
            f"{base}/api/v1/events",
            headers={"X-Account-ApiKey": created["account_key"]},
            params={"messageId": message.uuid},
            timeout=10,
        ).json()["data"]
        if not data:
            time.sleep(0.05)  # polling the condition, bounded by the deadline
    assert [e["typeName"] for e in data] == ["CSDelivered"]
