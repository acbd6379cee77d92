"""``/health`` and ``/metrics`` on the ``listen`` address: a tiny asyncio HTTP/1.0 server.

Only ``GET`` of these two paths is served; every answer closes the connection. The agent stays
free of a web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sendpost_agent.errors import ConfigError

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class StatusServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Callable[[], tuple[int, dict[str, Any]]],
    ) -> None:
        self.host, self.port = host, port
        self.registry = registry
        self.health = health
        self._server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        """Listen; a taken or impossible address is a :class:`ConfigError` naming ``listen``."""
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigError(
                "listen", f"{self.host}:{self.port}", f"cannot listen there: {reason}"
            ) from None
        address = self._server.sockets[0].getsockname()
        self.port = int(address[1])
        return str(address[0]), self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request."""
        path = path.split("?", 1)[0]
        if path not in ("/health", "/metrics"):
            return 404, "text/plain", b"not found\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        code, body = self.health()
        return code, "application/json", json.dumps(body).encode() + b"\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            code, ctype, body = self.respond(method, path)
            writer.write(
                f"HTTP/1.0 {code} {_REASONS.get(code, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (b"" if method == "HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
