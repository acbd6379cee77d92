"""Start-up problems of `run` and `check` are one line naming the setting, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.agent.packaging.conftest import ROOT
from tests.support.fake_ingest import FakeIngest

AGENT = ROOT / ".venv" / "bin" / "sendpost-agent"


def _agent(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SENDPOST_AGENT_", "SSL_"))}
    return subprocess.run(
        [str(AGENT), *args], capture_output=True, text=True, timeout=60, env={**base, **env},
        check=False,
    )  # fmt: skip


def _settings(tmp_path: Path, endpoint: str, listen: str, state: Path | None = None) -> list[str]:
    log = tmp_path / "mail.log"
    log.touch()
    return [
        "--api-key", "sp_key_123", "--endpoint", endpoint, "--log-path", str(log),
        "--state-dir", str(state or tmp_path / "state"), "--listen", listen,
    ]  # fmt: skip


def test_taken_listen_port_is_one_line(tmp_path: Path) -> None:
    """`run` on a taken listen port exits 2 with one line naming `listen`; `check` fails on it."""
    with socket.create_server(("127.0.0.1", 0)) as taken, FakeIngest(keys={"sp_key_123"}) as ing:
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        run = _agent("run", *_settings(tmp_path, ing.url, listen))
        check = _agent("check", *_settings(tmp_path, ing.url, listen))
    assert (run.returncode, run.stderr.splitlines()) == (
        2,
        [f"sendpost-agent: config: listen='{listen}': cannot listen there: Address already in use"],
    )
    assert check.returncode == 1
    assert f"FAIL cannot listen on {listen}: Address already in use" in check.stdout


def test_unusable_state_directory_fails_check(tmp_path: Path) -> None:
    """`check` fails when the state directory is a file (it cannot be used or created)."""
    state = tmp_path / "state"
    state.write_text("")
    with FakeIngest(keys={"sp_key_123"}) as ingest:
        check = _agent("check", *_settings(tmp_path, ingest.url, "127.0.0.1:0", state))
    assert check.returncode == 1
    assert f"FAIL the state directory {state} is not a directory" in check.stdout


def test_bad_ssl_cert_file(tmp_path: Path) -> None:
    """A missing SSL_CERT_FILE does not matter for an http:// endpoint (check passes); for https
    `check` and `run` say so in one line."""
    bad = str(tmp_path / "missing.pem")
    with FakeIngest(keys={"sp_key_123"}) as ingest:
        plain = _agent("check", *_settings(tmp_path, ingest.url, "127.0.0.1:0"), SSL_CERT_FILE=bad)
    assert (plain.returncode, plain.stderr) == (0, ""), plain.stdout
    https = _settings(tmp_path, "https://127.0.0.1:9/events", "127.0.0.1:0")
    line = f"config: SSL_CERT_FILE='{bad}': cannot load the CA certificates for https"
    check = _agent("check", *https, SSL_CERT_FILE=bad)
    assert check.returncode == 1
    assert f"FAIL TLS: {line}" in check.stdout
    run = _agent("run", *https, SSL_CERT_FILE=bad)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"sendpost-agent: {line}: No such file or directory"]
