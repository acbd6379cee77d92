"""Catch-up benchmark: a 1,000,000-line Postfix backlog shipped by ``sendpost-agent run``.

A minimal asyncio HTTP endpoint (in this process) acknowledges every batch with 200. The agent runs
as its own process; the time measured is from its start until its ``/health`` shows the read
position at the end of the log and an empty WAL (every event acknowledged). Target: ≤ 15 s.

    .venv/bin/python bench/agent_catchup.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.agent.daemon.loglines import message_lines


class AckServer:
    """Answers every POST with 200 and counts the events it saw."""

    def __init__(self) -> None:
        self.events = 0
        self.requests = 0
        self.port = 0
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                self.events += body.count(b'"message_id"')
                self.requests += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def agent_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_backlog(path: Path, lines: int) -> int:
    written = 0
    i = 0
    with open(path, "w") as fh:
        while written < lines:
            chunk = message_lines(i)
            fh.writelines(chunk)
            written += len(chunk)
            i += 1
    return path.stat().st_size


def health(port: int) -> dict[str, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return dict(json.load(resp))
    except OSError as exc:
        body = getattr(exc, "read", None)
        return dict(json.loads(body())) if body else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--max-in-flight", default="4")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agent-catchup-"))
    log = work / "mail.log"
    size = write_backlog(log, args.lines)
    server = AckServer()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_AGENT_")}
    cmd = [
        sys.executable, "-m", "sendpost_agent.cli", "run", "--api-key", "bench",
        "--endpoint", f"http://127.0.0.1:{server.port}/api/v1/tpsp/custom-smtp/events",
        "--log-path", str(log), "--state-dir", str(work / "state"),
        "--listen", f"127.0.0.1:{port}", "--config", str(work / "none.yaml"),
        "--max-in-flight", args.max_in_flight, "--log-level", "warning",
    ]  # fmt: skip
    (work / "none.yaml").write_text("")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env)
    try:
        while True:
            time.sleep(0.1)
            h = health(port)
            log_state, wal = h.get("log") or {}, h.get("wal") or {}
            if (
                isinstance(log_state, dict)
                and isinstance(wal, dict)
                and log_state.get("offset") == size
                and wal.get("events") == 0
            ):
                break
            if proc.poll() is not None:
                print("agent exited early", file=sys.stderr)
                return 1
        elapsed = time.monotonic() - started
        cpu = agent_cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"catch-up: {args.lines} lines ({size / 1e6:.0f} MB), {server.events} events in "
        f"{server.requests} requests acknowledged in {elapsed:.1f} s "
        f"({args.lines / elapsed:,.0f} lines/s); agent CPU {cpu:.1f} s "
        f"({cpu / elapsed * 100:.0f}% of a core); target <= 15 s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
