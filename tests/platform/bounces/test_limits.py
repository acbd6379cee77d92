"""The bounce listener under abuse: connection caps, idle and session time limits, quiet logs,
temporary replies on internal errors, and the quota on unparsed messages (issue 16)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import resource
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import uvicorn
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.domain.classify import Classification, Classifier, classify
from sendpost_platform.smtp.bounce_guard import Limits, LogBudget, client_key
from sendpost_platform.smtp.bounce_server import BounceProcessor, BounceServer, build_bounce_server
from sendpost_platform.store import Store
from sendpost_platform.store import bounces as bounce_store

from tests.platform.bounces.conftest import (
    corpus_dsn,
    provider_counters,
    return_path,
    send_bounce,
    timeline,
)
from tests.platform.bounces.test_bounce_server import send_bounce_expecting_error
from tests.platform.conftest import Seed

GREETING = b"220 bounce.test SendPost bounce processor\r\n"
LOOSE = Limits(max_connections=100, max_per_address=50, idle_timeout=60, session_limit=120)


@pytest.fixture
async def server_with() -> AsyncIterator[list[BounceServer]]:
    """Servers the test builds with its own limits (``servers.append(...)``), all stopped."""
    servers: list[BounceServer] = []
    yield servers
    for server in servers:
        await server.stop()


async def limited(
    store: Store,
    clock: ManualClock,
    limits: Limits,
    *,
    classifier: Classifier = classify,
    unparsed_quota: int | None = None,
) -> BounceServer:
    """A started server with these limits (and classifier, unparsed quota)."""
    processor = BounceProcessor(store, clock, classifier=classifier, unparsed_quota=unparsed_quota)
    server = BounceServer(processor, hostname="bounce.test", limits=limits)
    await server.start("127.0.0.1", 0)
    return server


async def connect(
    server: BounceServer, source: str = "127.0.0.2"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(server.host, server.port, local_addr=(source, 0)), 10
    )


async def line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), 10)


async def until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    """Wait (polling, bounded) until ``condition()`` is true."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def refusal_count(records: list[logging.LogRecord]) -> int:
    """Refused connections the log accounts for (first one, then summaries)."""
    total = 0
    for record in records:
        text = record.getMessage()
        if text.startswith("refused a connection"):
            total += 1
        elif found := re.match(r"refused (\d+) more connections", text):
            total += int(found.group(1))
    return total


# --- 2,000 idle connections with the API on the same event loop ---------------------------------


@pytest.fixture
def descriptor_budget() -> Iterator[int]:
    """The soft RLIMIT_NOFILE set to what the test needs (2,000 client sockets, the server's
    capped share and some slack), so a listener without caps runs out of descriptors as a
    production process would; restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    wanted = in_use + 2000 + 200 + 300
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted} needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield wanted
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_2000_idle_connections_leave_the_api_answering(
    descriptor_budget: int,
    settings: Settings,
    store: Store,
    clock: ManualClock,
    seed: Seed,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As ``serve`` runs them (uvicorn and the bounce server on one event loop, default caps):
    2,000 idle connections from 100 addresses leave 200 sessions open and get ``421 4.7.0``
    for the other 1,800; the API answers within 1 s meanwhile; the refusals take at most three
    log lines; once the idle connections are gone a real DSN is accepted and recorded."""
    caplog.set_level(logging.WARNING, logger="sendpost_platform.bounces")
    settings = dataclasses.replace(settings, bounce_cname_target="bounce.test")
    app = create_app(settings, clock=clock, store=store, run_worker=True)
    port = free_port()
    api = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    api_task = asyncio.create_task(api.serve())
    bounce = build_bounce_server(settings, store, clock)
    await bounce.start("127.0.0.1", 0)
    writers: list[asyncio.StreamWriter] = []
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5)
    try:
        await until(lambda: api.started)
        assert 200 == (await http.get("/health")).status_code  # connected before the flood
        first_lines: list[bytes] = []
        for start in range(0, 2000, 50):

            async def one(i: int) -> None:
                reader, writer = await connect(bounce, f"127.0.0.{2 + i % 100}")
                writers.append(writer)
                first_lines.append(await line(reader))

            await asyncio.gather(*(one(i) for i in range(start, start + 50)))
        refused = b"421 4.7.0 bounce.test too many connections, try later\r\n"
        assert {GREETING: 200, refused: 1800} == {
            text: first_lines.count(text) for text in set(first_lines)
        }
        assert 200 == bounce.gate.total
        slowest = 0.0
        for _ in range(5):
            began = time.monotonic()
            response = await http.get("/health")
            slowest = max(slowest, time.monotonic() - began)
            assert 200 == response.status_code
        assert slowest < 1.0
        for writer in writers:
            writer.close()
        writers.clear()
        await until(lambda: bounce.gate.total == 0)
        message = seed.message()
        raw = corpus_dsn("sisimai-lhost-sendmail-01.eml", recipient=message.recipient)
        code, text = await send_bounce(bounce, [return_path(message)], raw)
        assert (250, "2.0.0 Ok: 1 recorded, 0 ignored") == (code, text)
        assert 1 == len(timeline(store, message.uuid))
    finally:
        await http.aclose()
        for writer in writers:
            writer.close()
        await bounce.stop()
        api.should_exit = True
        await api_task
    ours = [r for r in caplog.records if r.name == "sendpost_platform.bounces"]
    refusal_lines = [r for r in ours if r.getMessage().startswith("refused")]
    assert 1800 == refusal_count(refusal_lines)
    assert len(refusal_lines) <= 3


# --- per-address cap, idle timeout, session limit -----------------------------------------------


async def test_one_address_gets_at_most_its_share(
    store: Store, clock: ManualClock, server_with: list[BounceServer]
) -> None:
    """With 3 sessions per address: the 4th from one address gets 421 4.7.0 and is closed at
    once, another address still gets in, and a closed session frees its slot."""
    server = await limited(store, clock, dataclasses.replace(LOOSE, max_per_address=3))
    server_with.append(server)
    held = [await connect(server) for _ in range(3)]
    assert [GREETING] * 3 == [await line(r) for r, _ in held]
    reader, _writer = await connect(server)
    expected = b"421 4.7.0 bounce.test too many connections from your address, try later\r\n"
    assert (expected, b"") == (await line(reader), await reader.read())
    other, _ = await connect(server, "127.0.0.3")
    assert GREETING == await line(other)
    held[0][1].close()
    await until(lambda: server.gate.by_key["127.0.0.2"] == 2)
    again, _ = await connect(server)
    assert GREETING == await line(again)
    for _, writer in held[1:]:
        writer.close()


def test_ipv6_clients_are_counted_per_64() -> None:
    """The per-address cap counts an IPv6 /64 as one client; IPv4-mapped IPv6 as its IPv4."""
    assert "2001:db8:1:2::/64" == client_key(("2001:db8:1:2::7", 25, 0, 0))
    assert "2001:db8:1:2::/64" == client_key(("2001:db8:1:2:ffff::1", 25, 0, 0))
    assert "192.0.2.1" == client_key(("::ffff:192.0.2.1", 25, 0, 0))
    assert "192.0.2.1" == client_key(("192.0.2.1", 25))


async def test_an_idle_session_is_closed(
    store: Store, clock: ManualClock, server_with: list[BounceServer]
) -> None:
    """A client that sends nothing for the idle timeout gets 421 4.4.2 and is disconnected, and
    its slot is freed."""
    server = await limited(store, clock, dataclasses.replace(LOOSE, idle_timeout=0.5))
    server_with.append(server)
    reader, _ = await connect(server)
    began = time.monotonic()
    assert GREETING == await line(reader)
    farewell = await line(reader)
    assert (b"421 4.4.2 Idle timeout, closing connection\r\n", b"") == (
        farewell,
        await reader.read(),
    )
    assert time.monotonic() - began >= 0.4
    await until(lambda: server.gate.total == 0)


async def test_a_slow_but_moving_transfer_is_not_idle(
    store: Store, clock: ManualClock, seed: Seed, server_with: list[BounceServer]
) -> None:
    """The idle timer restarts on every byte received: a DATA transfer lasting twice the idle
    timeout, with no pause as long as one, is accepted."""
    server = await limited(store, clock, dataclasses.replace(LOOSE, idle_timeout=2.0))
    server_with.append(server)
    message = seed.message()
    reader, writer = await connect(server)
    assert GREETING == await line(reader)
    for command in (b"HELO mta.example", b"MAIL FROM:<>", f"RCPT TO:<{return_path(message)}>"):
        writer.write((command if isinstance(command, bytes) else command.encode()) + b"\r\n")
        assert (await line(reader)).startswith(b"250")
    writer.write(b"DATA\r\n")
    assert (await line(reader)).startswith(b"354")
    raw = corpus_dsn("sisimai-lhost-sendmail-01.eml", recipient=message.recipient)
    raw = b"\r\n".join(b"." + x if x.startswith(b".") else x for x in raw.splitlines())
    size = len(raw) // 8 + 1
    began = time.monotonic()
    for chunk in (raw[i : i + size] for i in range(0, len(raw), size)):
        writer.write(chunk)
        await asyncio.sleep(0.5)
    writer.write(b"\r\n.\r\n")
    assert b"250 2.0.0 Ok: 1 recorded, 0 ignored\r\n" == await line(reader)
    assert time.monotonic() - began > 3.5
    writer.close()


async def test_a_session_cannot_outlast_the_session_limit(
    store: Store, clock: ManualClock, server_with: list[BounceServer]
) -> None:
    """A client that keeps busy (NOOP every 0.2 s, never idle) is still disconnected with
    421 4.4.2 once the session limit has passed."""
    server = await limited(store, clock, dataclasses.replace(LOOSE, session_limit=1.0))
    server_with.append(server)
    reader, writer = await connect(server)
    began = time.monotonic()
    assert GREETING == await line(reader)
    replies: list[bytes] = []
    while time.monotonic() - began < 10:
        writer.write(b"NOOP\r\n")
        reply = await line(reader)
        replies.append(reply)
        if not reply.startswith(b"250"):
            break
        await asyncio.sleep(0.2)
    assert b"421 4.4.2 Session time limit exceeded, closing connection\r\n" == replies[-1]
    assert len(replies) >= 2
    assert time.monotonic() - began >= 0.9
    assert b"" == await reader.read()


async def test_store_calls_are_paced_for_the_whole_process(
    store: Store, clock: ManualClock, server_with: list[BounceServer]
) -> None:
    """At 20 store calls a second, 30 recipient checks spread over three sessions (each answered
    550, unknown message) take at least 1.4 s however they are spread."""
    server = await limited(store, clock, dataclasses.replace(LOOSE, store_rate=20))
    server_with.append(server)

    async def checks(source: str) -> list[bytes]:
        reader, writer = await connect(server, source)
        assert GREETING == await line(reader)
        writer.write(b"HELO mta.example\r\nMAIL FROM:<>\r\n")
        assert [b"250"] * 2 == [(await line(reader))[:3] for _ in range(2)]
        codes = []
        for _ in range(10):
            address = f"bounces+{uuid.uuid4()}+1@sp-bounce.sender.example"
            writer.write(f"RCPT TO:<{address}>\r\n".encode())
            codes.append((await line(reader))[:3])
        writer.close()
        return codes

    began = time.monotonic()
    replies = await asyncio.gather(*(checks(f"127.0.0.{n}") for n in (2, 3, 4)))
    assert [[b"550"] * 10] * 3 == replies
    assert time.monotonic() - began >= 1.4


# --- quiet logs ----------------------------------------------------------------------------------


async def test_refusals_are_summarised_not_logged_one_by_one(
    store: Store, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """60 connections over the per-address cap of 1 make one log line at once and one summary
    when the server stops, naming the count, the reason and the address."""
    caplog.set_level(logging.WARNING, logger="sendpost_platform.bounces")
    server = await limited(store, clock, dataclasses.replace(LOOSE, max_per_address=1))
    try:
        reader, _writer = await connect(server)
        assert GREETING == await line(reader)
        for _ in range(60):
            refused, _ = await connect(server)
            assert (await line(refused)).startswith(b"421 4.7.0")
    finally:
        await server.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "sendpost_platform.bounces"]
    assert [
        "refused a connection from 127.0.0.2: too many connections from your address "
        "(further refusals are summarised every 60 s)",
        "refused 59 more connections: 59 too many connections from your address; "
        "most from 127.0.0.2 (59)",
    ] == [m for m in messages if m.startswith("refused")]


def test_log_budget_lets_through_a_few_lines_and_counts_the_rest() -> None:
    """A LogBudget of 3 lines per 60 s passes 3 of 10 records; the first record of the next
    window says 7 were suppressed."""
    now = [0.0]
    budget = LogBudget(lines=3, interval=60, now=lambda: now[0])

    def record(i: int) -> logging.LogRecord:
        return logging.LogRecord("mail.log", logging.WARNING, __file__, 1, f"line {i}", (), None)

    passed = [r.getMessage() for r in map(record, range(10)) if budget.filter(r)]
    assert ["line 0", "line 1", "line 2"] == passed
    now[0] = 61.0
    later = record(10)
    assert budget.filter(later)
    assert "(7 log lines suppressed before this one) line 10" == later.getMessage()


# --- internal errors never become permanent refusals ----------------------------------------------


def nested_dsn(depth: int, recipient: str) -> bytes:
    """A bounce whose failure text sits ``depth`` multipart levels deep."""
    head = [b"From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n"]
    tail = []
    for i in range(depth):
        head.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i))
        tail.append(b"\r\n--b%d--\r\n" % i)
    head.append(
        b"Content-Type: text/plain\r\n\r\n%s: 550 5.1.1 no such user\r\n" % recipient.encode()
    )
    return b"".join(head) + b"".join(reversed(tail))


async def test_a_dsn_nested_1500_levels_deep_is_kept_not_refused(
    store: Store, clock: ManualClock, seed: Seed, server_with: list[BounceServer]
) -> None:
    """A DSN nested 1,500 MIME levels deep (the parser's recursion gives up) is answered 250 and
    kept whole as unparsed, never refused with a 5xx that would lose the bounce."""
    server = await limited(store, clock, LOOSE)
    server_with.append(server)
    message = seed.message()
    raw = nested_dsn(1500, message.recipient)
    code, text = await send_bounce(server, [return_path(message)], raw)
    assert (250, True) == (code, text.startswith("2.0.0 Ok: kept as unparsed #"))
    with store.read() as conn:
        [kept] = bounce_store.list_unparsed(conn)
    assert (message.uuid, len(raw)) == (kept["message_uuid"], kept["size"])


async def test_an_internal_error_answers_451_and_names_nothing(
    store: Store, clock: ManualClock, seed: Seed, server_with: list[BounceServer]
) -> None:
    """A fault inside processing (here the classifier raises KeyError) is answered
    ``451 4.3.0`` so the sending MTA retries, without the exception's name or text, and
    nothing is stored."""

    def broken_classifier(**_: object) -> Classification:
        raise KeyError("internal-detail-42")

    server = await limited(store, clock, LOOSE, classifier=broken_classifier)
    server_with.append(server)
    message = seed.message()
    raw = corpus_dsn("sisimai-lhost-sendmail-01.eml", recipient=message.recipient)
    reply = await send_bounce_expecting_error(server, return_path(message), raw)
    assert (451, "4.3.0 Internal error, please try again later") == reply
    assert [] == timeline(store, message.uuid)
    assert 1 == server.stats.failures


async def test_a_recipient_that_is_not_utf8_is_refused_not_an_error(
    store: Store, clock: ManualClock, server_with: list[BounceServer]
) -> None:
    """``RCPT TO`` with a byte that is not UTF-8 gets the usual 550 (showing U+FFFD for that
    byte), not aiosmtpd's ``500 Error: (UnicodeEncodeError) ...``; the session goes on."""
    server = await limited(store, clock, LOOSE)
    server_with.append(server)
    reader, writer = await connect(server)
    assert GREETING == await line(reader)
    writer.write(b"HELO mta.example\r\nMAIL FROM:<>\r\nRCPT TO:<\xff@x.example>\r\nNOOP\r\n")
    replies = [await line(reader) for _ in range(4)]
    expected = "550 5.1.1 <\ufffd@x.example>: Recipient address rejected: not a bounce address"
    assert [
        b"250 bounce.test\r\n",
        b"250 OK\r\n",
        f"{expected} of this server\r\n".encode(),
        b"250 OK\r\n",
    ] == replies
    writer.close()


# --- quota on unparsed messages ------------------------------------------------------------------


async def test_unparsed_messages_have_a_quota_per_provider(
    store: Store, clock: ManualClock, seed: Seed, server_with: list[BounceServer]
) -> None:
    """With 2,500 bytes of unparsed messages per provider per 24 h: two 1,000-byte junk
    messages are kept, the third gets 452 4.3.1 (retry later) and is counted, not stored;
    another provider's junk is still kept; 24 h later the first provider's is kept again."""
    server = await limited(store, clock, LOOSE, unparsed_quota=2500)
    server_with.append(server)
    message = seed.message()
    junk = b"Subject: hello\r\n\r\n" + b"x" * (1000 - 20) + b"\r\n"
    assert 1000 == len(junk)
    address = return_path(message)
    assert [250, 250] == [(await send_bounce(server, [address], junk))[0] for _ in range(2)]
    over = await send_bounce_expecting_error(server, return_path(message), junk)
    expected = "4.3.1 Storage quota for unrecognised bounces exceeded, please try again later"
    assert (452, expected) == over
    other_provider, _ = seed.other_provider()
    other = seed.message(provider_id=other_provider.id)
    assert 250 == (await send_bounce(server, [return_path(other)], junk))[0]
    with store.read() as conn:
        assert 3 == bounce_store.unparsed_count(conn)
    assert {"bounce.unparsed": 2, "bounce.unparsed_over_quota": 1} == provider_counters(
        store, seed.provider.id
    )
    clock.advance(86401)
    assert 250 == (await send_bounce(server, [return_path(message)], junk))[0]


def test_the_quota_cannot_be_below_the_message_size_limit() -> None:
    """A quota smaller than the largest message would refuse such a message for ever: the
    setting is refused naming it."""
    from sendpost_platform.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SENDPOST_BOUNCE_UNPARSED_QUOTA": "1000"})
    assert ("SENDPOST_BOUNCE_UNPARSED_QUOTA", "1000") == (
        caught.value.variable,
        caught.value.value,
    )
