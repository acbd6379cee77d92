"""A journald-only mail host in a private mount namespace, for test_journald_real_postfix.py.

Run as root under ``unshare --mount --propagation private``:
``python -m tests.agent.postfix.journald_host WORKDIR MESSAGES``. Inside the namespace it
mounts empty tmpfs on ``/run`` and ``/var/log`` (no mail.log, no journal of the machine), a
``/dev`` with only the basic devices and ``/dev/log`` → journald's syslog socket; starts the real
``systemd-journald`` (volatile journal in ``/run/log/journal``), a real Postfix whose
``maillog_file`` is empty (so it logs through syslog(3) to ``/dev/log``, as on Debian 12 without
rsyslog), the test receiver and the agent with no ``log-path`` (the default). It runs
``sendpost-agent check``, submits messages, SIGKILLs the agent half-way and starts it again,
waits for the events, and prints one JSON document on stdout (see :func:`main`). Everything it
started is stopped before it returns; the namespace's mounts go with its last process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

from devtools.rig import LocalMta
from tests.support.fake_ingest import FakeIngest

JOURNALD = "/lib/systemd/systemd-journald"
DEVICES = ("null", "zero", "random", "urandom", "full", "tty")


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def private_host(work: Path) -> None:
    """The mounts of a journald-only host (in this process's own mount namespace)."""
    old = work / "host-dev"
    old.mkdir()
    _mount("--bind", "/dev", str(old))
    _mount("-t", "tmpfs", "tmpfs", "/dev")
    for name in DEVICES:
        (Path("/dev") / name).touch()
        _mount("--bind", str(old / name), f"/dev/{name}")
    Path("/dev/shm").mkdir()
    os.symlink("/run/systemd/journal/dev-log", "/dev/log")
    _mount("-t", "tmpfs", "tmpfs", "/run")
    _mount("-t", "tmpfs", "tmpfs", "/var/log")


def start_journald(work: Path) -> subprocess.Popen[bytes]:
    with open(work / "journald.log", "ab") as log:
        proc = subprocess.Popen(
            [JOURNALD],
            env={**os.environ, "SYSTEMD_LOG_TARGET": "console"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while not Path("/run/systemd/journal/dev-log").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"systemd-journald did not start: {(work / 'journald.log').read_text()}"
            )
        time.sleep(0.05)
    return proc


def agent_command(work: Path, command: str, url: str) -> list[str]:
    return [
        sys.executable, "-m", "sendpost_agent.cli", command,
        "--api-key", "test-key", "--endpoint", url, "--state-dir", str(work / "state"),
        "--listen", "127.0.0.1:0", "--config", str(work / "none.yaml"),
        "--batch-wait", "0.05", "--poll-interval", "0.05", "--checkpoint-interval", "0.05",
    ]  # fmt: skip


def start_agent(work: Path, url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_AGENT_")}
    if "SENDPOST_AGENT_PURE_PYTHON" in os.environ:
        env["SENDPOST_AGENT_PURE_PYTHON"] = os.environ["SENDPOST_AGENT_PURE_PYTHON"]
    with open(work / "agent.log", "ab") as log:
        return subprocess.Popen(agent_command(work, "run", url), env=env, stderr=log)


def journal_view() -> dict[str, Any]:
    """What the journal holds of Postfix: identifiers and facilities of every entry whose
    identifier starts with ``postfix``, and the units they came from."""
    out = subprocess.run(
        ["journalctl", "--output=json", "--no-pager",
         "--output-fields=SYSLOG_IDENTIFIER,SYSLOG_FACILITY,_TRANSPORT"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    idents: dict[str, set[str]] = {}
    transports: set[str] = set()
    for raw in out.splitlines():
        entry = json.loads(raw)
        ident = str(entry.get("SYSLOG_IDENTIFIER", ""))
        if ident.startswith("postfix"):
            idents.setdefault(ident, set()).add(str(entry.get("SYSLOG_FACILITY")))
            transports.add(str(entry.get("_TRANSPORT")))
    return {
        "identifiers": {k: sorted(v) for k, v in sorted(idents.items())},
        "transports": sorted(transports),
    }


def main(work: Path, messages: int) -> dict[str, Any]:
    """``check``'s output and status, the journal's view of Postfix, the UUIDs sent and the
    events the receiver got."""
    (work / "none.yaml").write_text("")
    private_host(work)
    journald = start_journald(work)
    agent: subprocess.Popen[bytes] | None = None
    try:
        with FakeIngest(keys={"test-key"}) as ingest, LocalMta(main_cf={"maillog_file": ""}) as rig:
            uuids = [str(uuidlib.uuid4()) for _ in range(messages)]
            rig.send(uuids[0], ["accept-0@sink.test"])
            deadline = time.monotonic() + 30  # Postfix's first lines reach the journal
            while not journal_view()["identifiers"] and time.monotonic() < deadline:
                time.sleep(0.1)
            check = subprocess.run(
                agent_command(work, "check", ingest.url),
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            # the same check as a user outside systemd-journal and adm (the system journal's
            # files are root:systemd-journal 0640): it sees only its own entries (its config:
            # /dev/null, the work directory is root's)
            command = agent_command(work, "check", ingest.url)
            command[command.index("--config") + 1] = "/dev/null"
            unprivileged = subprocess.run(
                ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            agent = start_agent(work, ingest.url)
            for i, mid in enumerate(uuids[1:], start=1):
                rig.send(mid, [f"accept-{i}@sink.test"])
                if i == messages // 2:
                    ingest.wait_for(lambda s: len(s.events) > 0, timeout=30)
                    agent.send_signal(signal.SIGKILL)
                    agent.wait()
                    agent = start_agent(work, ingest.url)
            ingest.wait_for(
                lambda s: {str(e.get("message_id")) for e in s.events} >= set(uuids), timeout=90
            )
            agent.send_signal(signal.SIGTERM)
            status = agent.wait(timeout=30)
            return {
                "check": check.stdout + check.stderr,
                "check_status": check.returncode,
                "unprivileged_check": unprivileged.stdout + unprivileged.stderr,
                "unprivileged_status": unprivileged.returncode,
                "agent_status": status,
                "journal": journal_view(),
                "uuids": uuids,
                "events": list(ingest.events),
                "agent_log": (work / "agent.log").read_text()[-4000:],
            }
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        journald.terminate()
        journald.wait(timeout=30)


if __name__ == "__main__":
    result = main(Path(sys.argv[1]), int(sys.argv[2]))
    sys.stdout.write(json.dumps(result) + "\n")
