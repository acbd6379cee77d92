"""The webhook dispatcher's HTTP/1.1 client: one POST at a time per keep-alive connection, on an
asyncio protocol with httptools' response parser (docs/webhooks.md, "Delivery").

Why not a general client: the dispatcher sends many small POSTs to few endpoints, and aiohttp
spent about 90 µs of CPU per POST there, four times what this path needs
(``bench/webhook_http_clients.py``, docs/benchmarks.md). What a POST guarantees:

- **Pinned addresses.** It connects only to an address of the :class:`CheckedTarget` the
  egress policy resolved and checked (``egress.open_socket``), never to the name; the name goes
  in ``Host`` and, for https, in TLS (SNI and certificate and hostname verification by the
  given :class:`ssl.SSLContext`, by default the system's trust store).
- **Timeouts.** Connecting (TCP and the TLS handshake) within ``connect`` seconds, and the
  whole POST, connection included, within ``total``: the error kind says which phase ran out
  (``ConnectTimeout``, ``ReadTimeout``).
- **A complete answer or a failure.** Success is a status line, headers and a body framed by
  ``Content-Length``, chunked encoding, or the end of the connection when neither is given. A
  connection reset, a connection closed (also a kept-alive one the server closed between
  requests) before the answer is complete, or an answer httptools cannot parse is a
  :class:`HttpFailure` (the dispatcher retries it), never a status.
- **A capped body.** At most ``body_cap`` bytes of a body are read; past that the answer's
  status counts (the endpoint has answered) and the connection is closed, not read further.
- **Keep-alive.** A connection goes back to its pool after a complete answer unless the server
  asked to close it (``Connection: close``, HTTP/1.0); a pool (one per scheme, TLS name, port
  and checked addresses) keeps at most ``per_pool`` idle connections, the client at most
  ``max_idle`` in all, each at most ``KEEPALIVE_SECONDS`` (idle ones past that are closed at
  least every ``SWEEP_SECONDS``, so endpoints no longer posted to hold no sockets). Interim 1xx
  answers are skipped.

Error tree: :class:`HttpFailure` (``kind``: ``ConnectError``, ``ConnectTimeout``,
``ReadTimeout``, ``ConnectionClosed``, ``ProtocolError``), raised by :meth:`HttpClient.post`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import re
import ssl
import time
import typing
import urllib.parse

import httptools

from sendpost_platform.egress import CheckedTarget, open_socket

KEEPALIVE_SECONDS = 15.0
"""An idle connection older than this is closed instead of used (servers drop idle ones)."""
SWEEP_SECONDS = 1.0
"""How often (at most, on a POST) idle connections past ``KEEPALIVE_SECONDS`` are closed."""


class HttpFailure(Exception):
    """A POST without a complete answer: ``kind`` and the detail, as recorded."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None
    """The ``Retry-After`` header as sent (parsed by ``domain.webhooks.retry_after``)."""


_UNSAFE = re.compile(r"[^\x21-\x7e]")


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """What a POST needs of a webhook URL, parsed once per URL by the caller."""

    host: str
    """The name to resolve and check (and for TLS), without brackets or port."""
    port: int
    https: bool
    head: bytes
    """``POST <target> HTTP/1.1``, ``Host`` and ``User-Agent`` lines."""

    @classmethod
    def of(cls, url: str, user_agent: str) -> Route:
        parts = urllib.parse.urlsplit(url)
        https = parts.scheme == "https"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        target = _UNSAFE.sub(lambda m: urllib.parse.quote(m.group()), target)
        host_header = parts.netloc.rpartition("@")[2]
        if not host_header.isascii():  # an internationalized name goes as its A-label
            port = f":{parts.port}" if parts.port is not None else ""
            host_header = (parts.hostname or "").encode("idna").decode("ascii") + port
        head = f"POST {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {user_agent}\r\n"
        return cls(
            host=parts.hostname or "",
            port=parts.port or (443 if https else 80),
            https=https,
            head=head.encode("ascii"),
        )


class _Connection(asyncio.Protocol):
    """One connection: a request at a time, its answer parsed as it arrives."""

    __slots__ = (
        "_answer",
        "_body_cap",
        "_body_read",
        "_framed",
        "_headers_done",
        "_retry_after",
        "_waiter",
        "closed",
        "idle_since",
        "parser",
        "reusable",
        "transport",
    )

    def __init__(self, body_cap: int) -> None:
        self._body_cap = body_cap
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self._retry_after: str | None = None
        self._framed = False
        self._headers_done = False
        self._body_read = 0
        self._answer: Answer | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self._close()  # bytes nobody asked for: the connection is not in a known state
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("ProtocolError", "the server switched protocols")
        except httptools.HttpParserError as exc:
            self._fail("ProtocolError", f"unreadable answer: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._framed and exc is None:
            self._complete()  # a body that ends with the connection: complete
            return
        what = "reset the connection" if isinstance(exc, ConnectionResetError) else "closed"
        stage = "in its answer" if self._headers_done else "before answering"
        self._fail("ConnectionClosed", f"the server {what} {stage}")

    # --- httptools callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"retry-after":
            self._retry_after = value.decode("latin-1")
        elif lowered in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status >= 200 or status == 101:
            self._headers_done = True
            if status in (204, 304):
                self._framed = True

    def on_body(self, body: bytes) -> None:
        self._body_read += len(body)
        if self._body_read > self._body_cap:
            self._complete()  # the status counts; the rest is not read
            self._close()

    def on_message_complete(self) -> None:
        if not self._headers_done:  # an interim 1xx answer: the real one follows
            self._reset()
            return
        self._complete()

    # --- the request ----------------------------------------------------------------------------

    def _complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        self.reusable = not self.closed and self.parser.should_keep_alive()
        waiter.set_result(Answer(self.parser.get_status_code(), self._retry_after))

    def _fail(self, kind: str, detail: str) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpFailure(kind, detail))
        self._close()

    def _close(self) -> None:
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def send(self, request: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._reset()
        self.reusable = False
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        if self.closed:  # closed by the server right after it was opened
            self._fail("ConnectionClosed", "the server closed before answering")
        else:
            self.transport.write(request)
        return waiter


class _Pool:
    __slots__ = ("idle",)

    def __init__(self) -> None:
        self.idle: collections.deque[_Connection] = collections.deque()


class HttpClient:
    """Keep-alive POSTs to checked targets (see the module docstring)."""

    def __init__(
        self,
        *,
        connect: float,
        total: float,
        per_pool: int,
        max_idle: int,
        body_cap: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.connect = connect
        self.total = total
        self.per_pool = per_pool
        self.max_idle = max_idle
        self._idle_total = 0
        self._swept = time.monotonic()
        self.body_cap = body_cap
        self._tls = tls
        self._pools: dict[tuple[object, ...], _Pool] = {}
        self.connections_made = 0
        """Connections opened so far (tests check reuse with it)."""

    def tls(self) -> ssl.SSLContext:
        """The TLS context (made on first https use: loading the trust store takes time)."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def post(
        self, route: Route, target: CheckedTarget, headers: bytes, body: bytes
    ) -> Answer:
        """POST ``body`` with ``headers`` (complete ``Name: value\\r\\n`` lines, without
        ``Content-Length``) to ``route`` on one of ``target``'s checked addresses."""
        request = b"".join((route.head, headers, b"Content-Length: %d\r\n\r\n" % len(body), body))
        key = (route.https, target.tls_name, target.port, target.addresses)
        if time.monotonic() - self._swept > SWEEP_SECONDS:
            self.sweep()
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool()
        connection: _Connection | None = None
        sent = False
        try:
            async with asyncio.timeout(self.total):
                connection = self._idle(pool)
                if connection is None:
                    connection = await self._open(route, target)
                waiter = connection.send(request)
                sent = True
                answer = await waiter
        except TimeoutError:
            if connection is not None:
                connection.abort()
            if sent:
                raise HttpFailure(
                    "ReadTimeout", f"no complete answer within {self.total:g} s"
                ) from None
            raise HttpFailure(
                "ConnectTimeout", f"no connection to {target.host} within {self.total:g} s"
            ) from None
        except BaseException:
            if connection is not None:
                connection.abort()
            raise
        pool = self._pools.setdefault(key, pool)  # swept meanwhile: kept again
        if (
            connection.reusable
            and len(pool.idle) < self.per_pool
            and self._idle_total < self.max_idle
        ):
            connection.idle_since = time.monotonic()
            pool.idle.append(connection)
            self._idle_total += 1
        elif not connection.closed:
            connection.abort()
        return answer

    def _idle(self, pool: _Pool) -> _Connection | None:
        """The most recently used live idle connection, dropping stale ones."""
        now = time.monotonic()
        while pool.idle:
            connection = pool.idle.pop()
            self._idle_total -= 1
            if connection.closed or now - connection.idle_since > KEEPALIVE_SECONDS:
                connection.abort()
                continue
            return connection
        return None

    async def _open(self, route: Route, target: CheckedTarget) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            sock = await open_socket(target, self.connect)
        except TimeoutError as exc:
            raise HttpFailure("ConnectTimeout", str(exc)) from None
        except OSError as exc:
            raise HttpFailure("ConnectError", str(exc) or type(exc).__name__) from None
        try:
            async with asyncio.timeout(self.connect):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self.body_cap),
                    sock=sock,
                    ssl=self.tls() if route.https else None,
                    server_hostname=target.tls_name if route.https else None,
                )
        except TimeoutError:
            sock.close()
            raise HttpFailure(
                "ConnectTimeout", f"no TLS handshake with {target.host} within {self.connect:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise HttpFailure("ConnectError", str(exc) or type(exc).__name__) from None
        self.connections_made += 1
        return connection

    def idle_connections(self) -> int:
        """Idle connections kept that the server has not closed (as far as this loop knows)."""
        return sum(not c.closed for pool in self._pools.values() for c in pool.idle)

    def sweep(self, *, everything: bool = False) -> None:
        """Close the idle connections past ``KEEPALIVE_SECONDS`` or closed by their server
        (``everything``: all of them), and forget the pools left empty."""
        now = self._swept = time.monotonic()
        for key, pool in list(self._pools.items()):
            kept: collections.deque[_Connection] = collections.deque()
            for connection in pool.idle:
                if (
                    everything
                    or connection.closed
                    or now - connection.idle_since > KEEPALIVE_SECONDS
                ):
                    connection.abort()
                else:
                    kept.append(connection)
            self._idle_total -= len(pool.idle) - len(kept)
            pool.idle = kept
            if not kept:
                del self._pools[key]

    def close(self) -> None:
        """Close every idle connection (those in use are closed by their POST)."""
        self.sweep(everything=True)
