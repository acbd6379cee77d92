"""The dispatcher's HTTP/1.1 client (``webhook_http.py``) against real servers on loopback: the
test receiver, and small asyncio servers that answer with scripted bytes (chunked bodies,
bodies over the cap, half answers, closed keep-alive connections, slow answers) or speak TLS
with a throwaway CA. Each pins one guarantee of the module docstring; the last runs the
dispatcher itself against an https webhook (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sendpost_platform import webhook_http
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.egress import CheckedTarget
from sendpost_platform.store import Store
from sendpost_platform.store import webhooks as store_webhooks
from sendpost_platform.webhook_dispatch import WebhookDispatcher
from sendpost_platform.webhook_http import Answer, HttpClient, HttpFailure, Route
from sendpost_wire import EventType

from devtools.smtp_servers import TlsMaterial
from devtools.webhook_receiver import WebhookReceiver
from tests.platform.conftest import Seed
from tests.platform.webhooks.conftest import add_webhook, drain, record

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
CAP = 1024


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str]]:
    """One request's head and headers (the client always sends ``Content-Length``)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers["content-length"]))
    return head, headers


class Scripted:
    """A loopback server in this loop; each connection runs ``script``."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def target(port: int, host: str = "127.0.0.1") -> CheckedTarget:
    return CheckedTarget(host, port, ("127.0.0.1",))


def client(*, total: float = 2.0, tls: ssl.SSLContext | None = None) -> HttpClient:
    return HttpClient(connect=total, total=total, per_pool=4, max_idle=8, body_cap=CAP, tls=tls)


async def post(http: HttpClient, url: str, port: int, host: str = "127.0.0.1") -> Answer:
    return await http.post(
        Route.of(url, "test"), target(port, host), b"Content-Type: application/json\r\n", b"{}"
    )


def answering(*answers: bytes, then_close: bool = False) -> Script:
    """Reads a request and writes the next answer, for each answer; then closes (or, with
    ``then_close`` False, waits for the client to close)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await read_request(reader)
            writer.write(answer)
            await writer.drain()
        if not then_close:
            await reader.read()

    return script


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    running = client()
    yield running
    running.close()


async def test_keep_alive_posts_reuse_one_connection(http: HttpClient) -> None:
    """Five POSTs one after another to the test receiver travel on one connection, and each
    carries the route's request line and ``Host`` (the name, though the address is pinned)."""
    with WebhookReceiver() as receiver:
        url = f"http://hooks.example:{receiver.port}/k/ok?x=1"
        answers = [await post(http, url, receiver.port, "hooks.example") for _ in range(5)]
        got = receiver.received()
    assert ([200] * 5, 1, ["/k/ok?x=1"] * 5, [f"hooks.example:{receiver.port}"] * 5) == (
        [a.status for a in answers],
        http.connections_made,
        [r.path for r in got],
        [r.headers["host"] for r in got],
    )


async def test_a_reset_connection_is_a_failure_not_an_answer(http: HttpClient) -> None:
    """The receiver's ``reset`` mode (TCP reset before answering) fails the POST as
    ``ConnectionClosed``; the next POST opens a new connection and gets the 200."""
    with WebhookReceiver(reset_times=1) as receiver:
        url = receiver.url("/r/reset")
        with pytest.raises(HttpFailure) as failed:
            await post(http, url, receiver.port)
        second = await post(http, url, receiver.port)
    assert ("ConnectionClosed", 200, 2) == (failed.value.kind, second.status, http.connections_made)


async def test_a_kept_connection_closed_by_the_server_before_answering_is_a_failure(
    http: HttpClient,
) -> None:
    """A server that answers the first request and then closes the connection on reading the
    second (a keep-alive connection dropped as the request arrives) fails that POST, never a
    success; the POST after it gets a fresh connection."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok)
        await writer.drain()
        await read_request(reader)  # read, not answered: closed

    async with Scripted(script) as server:
        url = f"http://127.0.0.1:{server.port}/"
        first = await post(http, url, server.port)
        with pytest.raises(HttpFailure) as failed:
            await post(http, url, server.port)
        third = await post(http, url, server.port)
    assert (200, "ConnectionClosed: the server closed before answering", 200, 2) == (
        first.status,
        str(failed.value),
        third.status,
        server.connections,
    )


async def test_a_keep_alive_connection_the_server_closed_while_idle_is_not_used(
    http: HttpClient,
) -> None:
    """A server that closes each connection after answering (without saying so): once the close
    has arrived, the idle connection is dropped and the next POST connects again and succeeds."""
    async with Scripted(
        answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", then_close=True)
    ) as server:
        url = f"http://127.0.0.1:{server.port}/"
        first = await post(http, url, server.port)
        async with asyncio.timeout(5):
            # the server's FIN reaching the client's protocol: nothing to wait on but its state
            while http.idle_connections():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        second = await post(http, url, server.port)
    assert (200, 200, 2) == (first.status, second.status, http.connections_made)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
    ids=["short-content-length", "unfinished-chunks", "half-headers"],
)
async def test_a_half_read_answer_is_a_failure(http: HttpClient, answer: bytes) -> None:
    """An answer cut off by the server closing (short body, chunks without the last one,
    headers not finished) fails the POST as ``ConnectionClosed``, though its status was 200."""
    async with Scripted(answering(answer, then_close=True)) as server:
        with pytest.raises(HttpFailure) as failed:
            await post(http, f"http://127.0.0.1:{server.port}/", server.port)
    assert "ConnectionClosed" == failed.value.kind


async def test_chunked_and_content_length_answers_keep_the_connection(http: HttpClient) -> None:
    """A chunked body and a ``Content-Length`` body within the cap are read whole, their
    statuses and ``Retry-After`` returned, and the connection is used for the next POST."""
    chunked = (
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
        b"4\r\nbusy\r\n0\r\n\r\n"
    )
    sized = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"
    async with Scripted(answering(chunked, sized)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        answers = [await post(http, url, server.port) for _ in range(2)]
    assert ([Answer(503, "7"), Answer(202, None)], 1) == (answers, server.connections)


async def test_a_body_over_the_cap_counts_its_status_and_drops_the_connection(
    http: HttpClient,
) -> None:
    """A 200 whose body is larger than the cap (1 KiB here; the server would send 1 MiB) is
    answered 200 after reading past the cap only, and the connection is not used again."""
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"x" * 1048576
    async with Scripted(answering(big, big)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        answers = [await post(http, url, server.port) for _ in range(2)]
    assert ([200, 200], 2) == ([a.status for a in answers], server.connections)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_connection_close_is_honoured(http: HttpClient, answer: bytes) -> None:
    """An answer with ``Connection: close`` (or from HTTP/1.0 without keep-alive) succeeds and
    its connection is not used again."""
    async with Scripted(answering(answer)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        answers = [await post(http, url, server.port) for _ in range(2)]
    assert ([200, 200], 2) == ([a.status for a in answers], server.connections)


async def test_a_body_ended_by_the_close_is_complete(http: HttpClient) -> None:
    """An answer with neither ``Content-Length`` nor chunks ends with the connection: the close
    completes it (a success)."""
    async with Scripted(
        answering(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndone", then_close=True)
    ) as server:
        answer = await post(http, f"http://127.0.0.1:{server.port}/", server.port)
    assert 200 == answer.status


async def test_an_interim_answer_is_skipped() -> None:
    """A ``100 Continue`` before the real answer is not taken for it."""
    http = client()
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    async with Scripted(answering(answer)) as server:
        got = await post(http, f"http://127.0.0.1:{server.port}/", server.port)
    http.close()
    assert Answer(204, None) == got


async def test_a_slow_answer_times_out_as_a_read_timeout() -> None:
    """A server that reads the request and does not answer within the total timeout fails the
    POST as ``ReadTimeout``; the receiver's ``slow`` mode does the same."""
    http = client(total=0.3)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()

    async with Scripted(silent) as server:
        with pytest.raises(HttpFailure) as scripted:
            await post(http, f"http://127.0.0.1:{server.port}/", server.port)
    with WebhookReceiver(slow_seconds=2) as receiver, pytest.raises(HttpFailure) as slow:
        await post(http, receiver.url("/s/slow"), receiver.port)
    http.close()
    assert ("ReadTimeout", "ReadTimeout") == (scripted.value.kind, slow.value.kind)


async def test_a_refused_connection_is_a_connect_error(http: HttpClient) -> None:
    """Nothing listening on the checked address: ``ConnectError``."""
    async with Scripted(answering()) as server:
        port = server.port
    with pytest.raises(HttpFailure) as failed:
        await post(http, f"http://127.0.0.1:{port}/", port)
    assert "ConnectError" == failed.value.kind


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return TlsMaterial.create(Path(tmp_path_factory.mktemp("webhook-tls")))


def tls_server(material: TlsMaterial, names: list[str | None]) -> ssl.SSLContext:
    """The server's context, noting the SNI name of each handshake in ``names``."""
    context = material.server_context()

    def note(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = note  # type: ignore[assignment]
    return context


async def test_https_verifies_the_certificate_for_the_name_and_sends_sni(
    tls_material: TlsMaterial,
) -> None:
    """An https URL whose name (``localhost``) is in the certificate, connected on the pinned
    address 127.0.0.1: the handshake sends the name as SNI, verifies the chain against the
    given CA and the name, and the POST is answered over TLS on one kept connection."""
    names: list[str | None] = []
    trusting = ssl.create_default_context(cafile=str(tls_material.ca_file))
    http = client(tls=trusting)
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    async with Scripted(answering(ok, ok), tls=tls_server(tls_material, names)) as server:
        url = f"https://localhost:{server.port}/tls"
        answers = [await post(http, url, server.port, "localhost") for _ in range(2)]
    http.close()
    assert ([200, 200], ["localhost"], 1) == (
        [a.status for a in answers],
        names,
        server.connections,
    )


@pytest.mark.parametrize("case", ["wrong-name", "untrusted-ca"])
async def test_https_refuses_a_certificate_for_another_name_or_an_unknown_ca(
    tls_material: TlsMaterial, case: str
) -> None:
    """The same server reached as ``other.example`` (not in its certificate), or with the
    system's trust store (which does not hold the throwaway CA): ``ConnectError`` naming the
    verification failure, and no request sent."""
    trusting = ssl.create_default_context(cafile=str(tls_material.ca_file))
    http = client(tls=trusting) if case == "wrong-name" else client()
    host = "other.example" if case == "wrong-name" else "localhost"
    requests: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append((await read_request(reader))[0])

    async with Scripted(script, tls=tls_server(tls_material, [])) as server:
        with pytest.raises(HttpFailure) as failed:
            await post(http, f"https://{host}:{server.port}/", server.port, host)
    http.close()
    assert ("ConnectError", True, []) == (
        failed.value.kind,
        "certificate verify failed" in str(failed.value),
        requests,
    )


async def test_a_tls_handshake_that_never_comes_is_a_connect_timeout(
    tls_material: TlsMaterial,
) -> None:
    """A server that accepts the TCP connection but never answers the TLS hello: the POST fails
    as ``ConnectTimeout`` within the timeout."""
    http = client(total=0.3, tls=ssl.create_default_context(cafile=str(tls_material.ca_file)))

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with Scripted(mute) as server:
        with pytest.raises(HttpFailure) as failed:
            await post(http, f"https://localhost:{server.port}/", server.port, "localhost")
    http.close()
    assert "ConnectTimeout" == failed.value.kind


async def test_idle_connections_past_their_time_are_closed_by_the_sweep(
    http: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle connection older than ``KEEPALIVE_SECONDS`` (0 here) is closed by the sweep
    (the server sees the close) and its endpoint's pool forgotten; the next POST connects anew."""
    monkeypatch.setattr(webhook_http, "KEEPALIVE_SECONDS", 0.0)
    closed = asyncio.Event()
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answering(ok)(reader, writer)
        closed.set()

    async with Scripted(script) as server:
        url = f"http://127.0.0.1:{server.port}/"
        first = await post(http, url, server.port)
        kept = http.idle_connections()
        http.sweep()
        async with asyncio.timeout(5):
            await closed.wait()
        second = await post(http, url, server.port)
    assert (200, 1, 200, 2) == (first.status, kept, second.status, server.connections)


async def test_the_client_keeps_at_most_max_idle_connections_in_all() -> None:
    """With room for one idle connection in all, the connection of a second endpoint is closed
    after its answer (a new one each time) while the first endpoint's is kept and reused."""
    http = HttpClient(connect=2, total=2, per_pool=4, max_idle=1, body_cap=CAP)
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    async with Scripted(answering(ok, ok)) as a, Scripted(answering(ok)) as b:
        for server in (a, b, a, b):
            await post(http, f"http://127.0.0.1:{server.port}/", server.port)
    http.close()
    assert (1, 2) == (a.connections, b.connections)


async def test_the_dispatcher_posts_to_an_https_webhook_verified_for_its_name(
    seed: Seed,
    hook_settings: Settings,
    store: Store,
    clock: ManualClock,
    tls_material: TlsMaterial,
) -> None:
    """A webhook at ``https://localhost:PORT``: the dispatcher resolves and checks the name,
    connects to the checked address and sends the name as SNI and ``Host``, the certificate is
    verified for it (against the CA given to the dispatcher), and the delivery is done."""
    names: list[str | None] = []
    hosts: list[str] = []
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hosts.append((await read_request(reader))[1]["host"])
        writer.write(ok)
        await writer.drain()
        await reader.read()

    trusting = ssl.create_default_context(cafile=str(tls_material.ca_file))
    # a TLS handshake on a loaded 2-core machine (CI builds the packages meanwhile) can take
    # longer than the fixture's 0.5 s: a late answer would be a retry, not what this pins down
    patient = dataclasses.replace(hook_settings, webhook_timeout=10.0)
    dispatcher = WebhookDispatcher(store, patient, clock, worker_id="tls", tls=trusting)
    try:
        async with Scripted(script, tls=tls_server(tls_material, names)) as server:
            hook_id, _ = add_webhook(seed, patient, f"https://localhost:{server.port}/h")
            record(seed, seed.message().uuid, EventType.CSDelivered)
            await drain(dispatcher)
    finally:
        await dispatcher.close()
    with seed.store.read() as conn:
        [row] = store_webhooks.deliveries_of(conn, hook_id)
    assert (["localhost"], [f"localhost:{server.port}"], "done", 200) == (
        names,
        hosts,
        row["status"],
        row["last_status"],
    )
