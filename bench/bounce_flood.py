"""Idle-connection flood against ``sendpost-platform serve``'s bounce port (issue 16, point 1).

Starts ``serve`` on a fresh SQLite database in a temporary directory, with its file-descriptor
limit lowered to ``--nofile`` (1024 by default, a common distribution default), opens
``--connections`` idle TCP connections to the bounce port from up to ``--addresses`` loopback
source addresses (127.0.0.2, 127.0.0.3, ...), then for ``--seconds`` asks ``GET /health`` twice
a second. It prints how many connections were not closed, the server's open file descriptors
(from ``/proc``), the slowest health answer (or how many failed), and how many lines the server
wrote to its log meanwhile.

    .venv/bin/python bench/bounce_flood.py --connections 1100 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


async def open_idle(port: int, count: int, addresses: int) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    held: list[socket.socket] = []

    async def one(i: int) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((f"127.0.0.{2 + i % addresses}", 0))
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 10)
        except (OSError, TimeoutError):
            sock.close()
            return
        held.append(sock)

    for start in range(0, count, 200):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 200))))
    return held


def rcpt_flood(port: int, sessions: int, addresses: int, stop: threading.Event) -> list[int]:
    """``sessions`` sessions sending ``RCPT TO`` unknown return paths until ``stop``; returns
    how many replies each got (run in a thread with its own event loop)."""
    counts = [0] * sessions

    async def session(i: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(f"127.0.0.{2 + i % addresses}", 0)
            )
            await reader.readline()
            for command in (b"HELO flood.example", b"MAIL FROM:<>"):
                writer.write(command + b"\r\n")
                await reader.readline()
            n = 0
            while not stop.is_set():
                address = f"bounces+{uuid.uuid4()}+1@sp-bounce.example.com"
                writer.write(f"RCPT TO:<{address}>\r\n".encode())
                if not (await reader.readline()).startswith(b"5"):
                    break
                n += 1
                counts[i] = n
            writer.close()
        except OSError:
            pass

    async def run() -> None:
        await asyncio.gather(*(session(i) for i in range(sessions)))

    asyncio.run(run())
    return counts


def still_open(sockets: list[socket.socket]) -> int:
    """Connections the server has not closed (no EOF readable)."""
    alive = 0
    for sock in sockets:
        try:
            while True:
                data = sock.recv(4096)
                if not data:
                    break
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--addresses", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--keep-log", type=Path, help="copy the server's log here")
    parser.add_argument(
        "--rcpt", action="store_true", help="busy sessions sending RCPT TO instead of idle ones"
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    http_port, bounce_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_")}
        env["SENDPOST_DATABASE_URL"] = f"sqlite:///{Path(tmp) / 'sendpost.db'}"
        env["SENDPOST_BOUNCE_LISTEN"] = f"127.0.0.1:{bounce_port}"
        log_path = Path(tmp) / "serve.log"

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))

        with log_path.open("w") as log_file:
            command = [sys.executable, "-m", "sendpost_platform.cli", "serve"]
            proc = subprocess.Popen(
                [*command, "--listen", f"127.0.0.1:{http_port}"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=limit,  # the descriptor limit of the server only
            )
            try:
                wait_for(http_port, time.monotonic() + 60)
                wait_for(bounce_port, time.monotonic() + 10)
                before = len(log_path.read_bytes().splitlines())
                started = time.monotonic()
                stop = threading.Event()
                flood: list[list[int]] = []
                if args.rcpt:
                    held = []
                    flooder = threading.Thread(
                        target=lambda: flood.append(
                            rcpt_flood(bounce_port, args.connections, args.addresses, stop)
                        )
                    )
                    flooder.start()
                    time.sleep(2)
                else:
                    held = asyncio.run(open_idle(bounce_port, args.connections, args.addresses))
                opened = time.monotonic() - started
                latencies: list[float] = []
                ingest: list[float] = []
                timeouts = 0
                end = time.monotonic() + args.seconds
                with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as client:
                    while time.monotonic() < end and not stop.is_set():
                        t0 = time.monotonic()
                        try:
                            client.get("/health").raise_for_status()
                            latencies.append(time.monotonic() - t0)
                        except httpx.HTTPError:
                            timeouts += 1
                        t0 = time.monotonic()
                        try:
                            response = client.post(
                                "/api/v1/tpsp/custom-smtp/events",
                                headers={"X-SP-Event-ApiKey": "no-such-key"},
                                content=b"[]",
                            )
                            assert response.status_code == 401, response.status_code
                            ingest.append(time.monotonic() - t0)
                        except httpx.HTTPError:
                            timeouts += 1
                        time.sleep(0.5)
                stop.set()
                if args.rcpt:
                    flooder.join()
                alive = still_open(held)
                server_fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
                lines = len(log_path.read_bytes().splitlines()) - before
                size = log_path.stat().st_size
                for sock in held:
                    sock.close()
                if args.keep_log:
                    args.keep_log.write_bytes(log_path.read_bytes())
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    worst = f"{max(latencies) * 1000:.0f} ms" if latencies else "none answered"
    worst_ingest = f"{max(ingest) * 1000:.0f} ms" if ingest else "none answered"
    if flood:
        print(f"RCPT commands answered: {sum(flood[0])} in {len(flood[0])} sessions")
    print(
        f"connections opened: {len(held)}/{args.connections} in {opened:.1f} s; "
        f"not closed after {args.seconds:.0f} s: {alive}; "
        f"server's open descriptors: {server_fds} (limit {args.nofile})\n"
        f"/health: {len(latencies)} answered (slowest {worst}); ingestion with a wrong key: "
        f"{len(ingest)} answered 401 (slowest {worst_ingest}); {timeouts} failed\n"
        f"server log: {lines} lines, {size} bytes in total"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
