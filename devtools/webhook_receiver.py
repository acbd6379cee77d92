"""A webhook receiver on loopback: a small HTTP/1.1 server (asyncio streams) that records every
POST and answers by path, so tests, ``bench/webhooks.py`` and the demo can point webhooks at it.

Paths (the last segment picks the behaviour; anything before it is free, e.g. ``/hook/a/ok``):

- ``.../ok``: 200;
- ``.../fail``: 500;
- ``.../slow``: waits ``slow_seconds`` then 200;
- ``.../busy``: 429 with ``Retry-After: {retry_after}`` for the first ``busy_times`` requests
  of each event, then 200;
- ``.../reset``: for the first ``reset_times`` requests of each event, closes the connection
  with a TCP reset (``SO_LINGER`` 0) before answering, then 200;
- ``.../flaky``: 500 for the first ``fail_times`` requests of each event, then 200.

Each request is recorded (:class:`Received`) with whether its signature verified under
:func:`verify_signature`, which is written from the recipe in docs/webhooks.md (not imported
from the platform), keyed by the secret registered for the path's webhook in :attr:`secrets`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import hmac
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

REPLAY_WINDOW = 300


def verify_signature(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """docs/webhooks.md, "Verifying a delivery", step by step."""
    timestamp = headers.get("x-sendpost-timestamp", "")
    signature = headers.get("x-sendpost-signature", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > REPLAY_WINDOW:
        return False
    signed = timestamp.encode() + b"." + body
    expected = "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, part.strip()) for part in signature.split(","))


@dataclasses.dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """time.time() when the body was read."""
    verified: bool | None
    """None: no secret registered for the path."""
    answered: int
    """The status answered (0: the connection was reset)."""

    @property
    def payload(self) -> dict[str, Any]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value

    @property
    def event_id(self) -> str:
        return str(self.payload["event"]["eventId"])


class WebhookReceiver:
    """Serve on 127.0.0.1 in a thread of its own (``with WebhookReceiver() as r: r.url("ok")``)."""

    def __init__(
        self,
        *,
        slow_seconds: float = 2.0,
        retry_after: int = 1,
        busy_times: int = 1,
        reset_times: int = 1,
        fail_times: int = 1,
        record: bool = True,
    ) -> None:
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.busy_times = busy_times
        self.reset_times = reset_times
        self.fail_times = fail_times
        self.record = record
        self.secrets: dict[str, str] = {}
        """Path prefix → the webhook secret its requests are signed with."""
        self._received: list[Received] = []
        self._seen: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.count = 0
        self.in_flight = 0
        self.max_in_flight: collections.Counter[str] = collections.Counter()
        self._in_flight_by: collections.Counter[str] = collections.Counter()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def wait_until(self, condition: Callable[[list[Received]], bool], timeout: float) -> None:
        """Block until ``condition(received)`` holds; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self._received):
                left = deadline - time.monotonic()
                assert left > 0, f"receiver: condition not met in {timeout}s ({self.count} got)"
                self._cond.wait(min(left, 0.5))

    # --- the server ---------------------------------------------------------------------------

    def _secret_for(self, path: str) -> str | None:
        for prefix, secret in self.secrets.items():
            if path.startswith(prefix):
                return secret
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _method, path, _version = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = raw.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                keep = await self._answer(path, headers, body, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        except asyncio.CancelledError:
            return  # the server is stopping: end quietly (the stream's callback reads the result)
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _answer(
        self, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        at = time.time()
        mode = path.rstrip("/").rsplit("/", 1)[-1]
        event_id = headers.get("x-sendpost-event-id", "")
        with self._lock:
            self._seen[(path, event_id)] += 1
            nth = self._seen[(path, event_id)]
            self.in_flight += 1
            self._in_flight_by[path] += 1
            self.max_in_flight[path] = max(self.max_in_flight[path], self._in_flight_by[path])
        extra = ""
        try:
            if mode == "slow":
                await asyncio.sleep(self.slow_seconds)
                status = 200
            elif mode == "fail":
                status = 500
            elif mode == "flaky":
                status = 500 if nth <= self.fail_times else 200
            elif mode == "busy" and nth <= self.busy_times:
                status, extra = 429, f"Retry-After: {self.retry_after}\r\n"
            elif mode == "reset" and nth <= self.reset_times:
                status = 0
            else:
                status = 200
        finally:
            with self._lock:
                self.in_flight -= 1
                self._in_flight_by[path] -= 1
        secret = self._secret_for(path)
        verified = None if secret is None else verify_signature(secret, headers, body, time.time())
        with self._cond:
            self.count += 1
            if self.record:
                self._received.append(Received(path, headers, body, at, verified, status))
            self._cond.notify_all()
        if status == 0:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n{extra}\r\n".encode("latin-1")
        )
        await writer.drain()
        return True
