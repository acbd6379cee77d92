"""A real HTTP server on loopback standing in for the platform's event ingestion endpoint.

It runs in a background thread (so agents in subprocesses can reach it too), records every batch
it accepts, and can be told how to answer: a queue of scripted answers (``500``, ``429`` with
``Retry-After``, ``400``…), the set of accepted keys (others get 401), and the largest batch it
takes (bigger ones get 413). It validates bodies with the wire package, as the platform does.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sendpost_wire import BatchError, parse_batch

PATH = "/api/v1/tpsp/custom-smtp/events"


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b'{"error":"scripted"}'


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients killed mid-request (the SIGKILL tests) are expected; stay quiet."""


class FakeIngest:
    def __init__(self, keys: set[str] | None = None, max_events: int = 1000) -> None:
        self.keys = set(keys or {"test-key"})
        self.max_events = max_events
        self.script: list[Answer] = []
        self.down = False
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[float, int, int]] = []  # (monotonic time, status, n events)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if owner.down:
                    with owner.lock:
                        owner.requests.append((time.monotonic(), 0, 0))
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                answer = owner.answer(self.path, self.headers.get("X-SP-Event-ApiKey"), body)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{PATH}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def answer(self, path: str, key: str | None, body: bytes) -> Answer:
        with self.lock:
            count = body.count(b'"message_id"')
            answer = self._decide(path, key, body)
            self.requests.append((time.monotonic(), answer.status, count))
            self.changed.notify_all()
            return answer

    def _decide(self, path: str, key: str | None, body: bytes) -> Answer:
        if path != PATH:
            return Answer(404)
        if key not in self.keys:
            return Answer(401, body=b'{"error":"invalid key"}')
        if self.script:
            return self.script.pop(0)
        try:
            doc = json.loads(body)
        except ValueError:
            return Answer(400)
        if isinstance(doc, dict) and len(doc.get("events") or []) > self.max_events:
            return Answer(413)
        try:
            parse_batch(body)
        except BatchError as exc:
            errors = [e.to_json() for e in exc.errors]
            return Answer(400, body=json.dumps({"errors": errors}).encode())
        self.events.extend(doc["events"])
        return Answer(200, body=b'{"accepted":true}')

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> bool:
        """Wait until ``predicate(self)`` holds (checked on every request), or time out."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.05))
        return True

    def event_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(str(e.get("event_id")) for e in self.events)

    def __enter__(self) -> FakeIngest:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
