"""Benchmark: one webhook-sized POST after another on keep-alive connections, httpx against
the dispatcher's own HTTP client (``webhook_http.py``), and the capacity of the test receiver.

    .venv/bin/python bench/webhook_http_clients.py [--connections 16] [--seconds 3]

The server runs in a process of its own: either a minimal HTTP/1.1 responder (httptools'
parser, 200 with an empty body) or ``devtools/webhook_receiver.py``. The clients run here, as
many loops as connections, each POSTing a 600-byte JSON body with the dispatcher's headers.
Printed per case: requests per second and per client CPU-second (the figure the machine's load
disturbs less). This is how the dispatcher's HTTP client was chosen (docs/benchmarks.md; aiohttp,
its client before, was measured here too until it was dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BODY = json.dumps(
    {
        "event": {
            "eventId": "cs-1234-60",
            "messageId": "5b0c0a3e-8f7d-4c1e-9d7a-1f0e6b2c3d4e",
            "type": 2,
            "typeName": "delivered",
            "from": "news@shop.example",
            "to": "user@example.com",
            "subject": "Hello",
            "groups": [],
            "submittedAt": 1764877200000000000,
            "timestamp": 1764877203000000000,
            "eventMetadata": {"smtpCode": 250, "smtpDescription": "250 2.0.0 OK"},
        },
        "emailMessage": {
            "messageID": "5b0c0a3e-8f7d-4c1e-9d7a-1f0e6b2c3d4e",
            "accountID": 1,
            "subAccountID": 1,
            "submittedAt": 1764877200000000000,
            "from": {"email": "news@shop.example"},
            "to": {"email": "user@example.com"},
            "groups": [],
            "headers": {},
            "trackOpens": True,
            "trackClicks": True,
        },
    },
    separators=(",", ":"),
).encode()
HEADERS = {
    "Content-Type": "application/json",
    "X-SendPost-Event-Id": "cs-1234-60",
    "X-SendPost-Webhook-Id": "1",
    "X-SendPost-Timestamp": "1764877203",
    "X-SendPost-Signature": "v1=" + "0" * 64,
    "User-Agent": "SendPost-Webhooks/1.0",
}


def _minimal_server(ports: Any, stop: Any) -> None:
    import httptools

    class Responder(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Responder, "127.0.0.1", 0, backlog=1024)
        ports.put(server.sockets[0].getsockname()[1])
        await loop.run_in_executor(None, stop.wait)
        server.close()

    asyncio.run(serve())


def _test_receiver(ports: Any, stop: Any) -> None:
    from devtools.webhook_receiver import WebhookReceiver

    with WebhookReceiver(record=False) as receiver:
        ports.put(receiver.port)
        stop.wait()


async def _loops(connections: int, seconds: float, one: Callable[[], Awaitable[None]]) -> int:
    done = 0
    end = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < end:
            await one()
            done += 1

    await asyncio.gather(*(loop() for _ in range(connections)))
    return done


async def _httpx(url: str, connections: int, seconds: float) -> int:
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits) as client:

        async def one() -> None:
            (await client.post(url, content=BODY, headers=HEADERS)).raise_for_status()

        return await _loops(connections, seconds, one)


async def _webhook_http(url: str, connections: int, seconds: float) -> int:
    from sendpost_platform.egress import CheckedTarget
    from sendpost_platform.webhook_http import HttpClient, Route

    client = HttpClient(
        connect=10, total=10, per_pool=connections, max_idle=connections, body_cap=65536
    )
    route = Route.of(url, HEADERS["User-Agent"])
    target = CheckedTarget(route.host, route.port, (route.host,))
    headers = b"".join(f"{k}: {v}\r\n".encode() for k, v in HEADERS.items() if k != "User-Agent")

    async def one() -> None:
        answer = await client.post(route, target, headers, BODY)
        assert answer.status == 200

    try:
        return await _loops(connections, seconds, one)
    finally:
        client.close()


async def _raw(url: str, connections: int, seconds: float) -> int:
    """A load generator with no HTTP client at all (for the receiver's capacity)."""
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    request = (
        b"POST /bench/ok HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(f"{k}: {v}\r\n".encode() for k, v in HEADERS.items())
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    free = list(streams)

    async def one() -> None:
        reader, writer = free.pop()
        writer.write(request)
        await reader.readuntil(b"\r\n\r\n")  # the answers have no body
        free.append((reader, writer))

    try:
        return await _loops(connections, seconds, one)
    finally:
        for _, writer in streams:
            writer.close()


CLIENTS = {"httpx": _httpx, "webhook_http": _webhook_http, "raw": _raw}
SERVERS = {"minimal": _minimal_server, "receiver": _test_receiver}


def case(server: str, client: str, connections: int, seconds: float) -> str:
    ports: Any = multiprocessing.Queue()
    stop = multiprocessing.Event()
    proc = multiprocessing.Process(target=SERVERS[server], args=(ports, stop))
    proc.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=30)}/bench/ok"
        cpu, wall = time.process_time(), time.monotonic()
        done = asyncio.run(CLIENTS[client](url, connections, seconds))
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    finally:
        stop.set()
        proc.join(30)
    return (
        f"{client:>12} → {server:<8} {connections:>3} connections: "
        f"{done / wall:>7,.0f} requests/s, "
        f"{done / cpu:>7,.0f} per client CPU-s, load {os.getloadavg()[0]:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    for server, client in (
        ("minimal", "httpx"),
        ("minimal", "webhook_http"),
        ("receiver", "raw"),
        ("receiver", "webhook_http"),
    ):
        print(case(server, client, args.connections, args.seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
