"""The bounce server over real SMTP: recipient checks, DSN processing, dedup with agent events."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.errors import ConfigError
from sendpost_platform.smtp.bounce_server import BounceProcessor, BounceServer
from sendpost_platform.store import Store, suppressions
from sendpost_platform.store import bounces as bounce_store
from sendpost_platform.store.schema import events
from sendpost_platform.worker import Worker, build_jobs
from sendpost_wire import EventType

from tests.platform.bounces.conftest import (
    corpus_dsn,
    provider_counters,
    rcpt_reply,
    return_path,
    send_bounce,
    timeline,
)
from tests.platform.conftest import Seed
from tests.platform.core.helpers import agent_event, post_events

HARD = int(EventType.CSHardBounced)
SOFT = int(EventType.CSSoftBounced)
AGENT_SOFT = {
    "smtp_code": 452,
    "enhanced_status": "4.2.2",
    "smtp_command": "RCPT TO",
    "smtp_description": "452 4.2.2 The email account that you tried to reach is over quota",
}
AGENT_HARD = {
    "smtp_code": 550,
    "enhanced_status": "5.1.1",
    "smtp_command": "RCPT TO",
    "smtp_description": "550 5.1.1 <user@example.com>: Recipient address rejected: User unknown",
}


def suppressed(store: Store, seed: Seed) -> list[tuple[str, str]]:
    with store.read() as conn:
        rows = suppressions.list_suppressions(conn, subaccount_id=seed.account.subaccount_id)
    return [(r["recipient_key"], r["reason"]) for r in rows]


async def agent_reports(
    client: httpx.AsyncClient, settings: Settings, seed: Seed, event: dict[str, object]
) -> None:
    response = await post_events(client, seed.ingest_key, [event])
    assert response.status_code == 200, response.text
    await Worker(build_jobs(settings, seed.store, seed.clock)).drain()


# --- RCPT TO ------------------------------------------------------------------------------------


async def test_unknown_message_is_refused_at_rcpt(bounce_server: BounceServer, seed: Seed) -> None:
    """A well-formed bounce address naming no stored message: 550 5.1.1 naming the UUID."""
    ghost = str(uuid.uuid4())
    address = f"bounces+{ghost}+{seed.account.subaccount_id}@sp-bounce.sender.example"
    code, text = await rcpt_reply(bounce_server, address)
    assert (550, f"5.1.1 <{address}>: Recipient address rejected: unknown message {ghost}") == (
        code,
        text,
    )


async def test_other_subaccount_is_refused_at_rcpt(bounce_server: BounceServer, seed: Seed) -> None:
    """The message exists but the address names another sub-account: 550."""
    message = seed.message()
    other = seed.account.subaccount_id + 1
    address = return_path(message, subaccount_id=other)
    code, text = await rcpt_reply(bounce_server, address)
    expected = f"message {message.uuid} does not belong to sub-account {other}"
    assert (550, f"5.1.1 <{address}>: Recipient address rejected: {expected}") == (code, text)


async def test_other_domain_and_foreign_addresses_are_refused(
    bounce_server: BounceServer, seed: Seed
) -> None:
    """Another sender domain's return path, and non-bounce addresses, get 550 5.1.1."""
    message = seed.message()
    wrong_domain = return_path(message).replace("sender.example", "other.example")
    code, text = await rcpt_reply(bounce_server, wrong_domain)
    assert code == 550
    assert text.endswith(f"is not the return-path domain of message {message.uuid}")
    for address in ("postmaster@sp-bounce.sender.example", f"bounces+{message.uuid}@x.example"):
        code, text = await rcpt_reply(bounce_server, address)
        assert (code, text.rpartition(": ")[2]) == (550, "not a bounce address of this server")
    assert bounce_server.stats.rejected_recipients == 3


async def test_a_known_return_path_is_accepted(bounce_server: BounceServer, seed: Seed) -> None:
    """The message's own return path (any letter case) is accepted with 250."""
    message = seed.message()
    code, _ = await rcpt_reply(bounce_server, return_path(message).upper())
    assert code == 250


# --- DATA: DSNs ---------------------------------------------------------------------------------


async def test_hard_dsn_stores_cshardbounced_and_suppresses(
    bounce_server: BounceServer, seed: Seed, store: Store
) -> None:
    """Sendmail's 5.1.1 User unknown → CSHardBounced (source dsn, codes and text kept) and the
    recipient is suppressed for the sub-account."""
    message = seed.message()
    raw = corpus_dsn("sisimai-lhost-sendmail-01.eml", recipient=message.recipient)
    code, text = await send_bounce(bounce_server, [return_path(message)], raw)
    assert (code, text) == (250, "2.0.0 Ok: 1 recorded, 0 ignored")
    [event] = timeline(store, message.uuid)
    assert (HARD, "dsn", "user_unknown", "5.1.1", 550, message.recipient) == (
        event["event_type"],
        event["source"],
        event["reason"],
        event["enhanced_status"],
        event["smtp_code"],
        event["recipient"],
    )
    assert event["description"] == "550 5.1.1 <user@example.com>... User Unknown"
    assert seed.provider.id == event["provider_id"]
    assert event["details"]["dsnFormat"] == "rfc3464"
    assert message.recipient == event["details"]["finalRecipient"]
    assert [(message.recipient, "hard_bounce")] == suppressed(store, seed)
    assert provider_counters(store, seed.provider.id) == {"bounce.inserted": 1}


async def test_mailbox_full_dsn_is_soft_and_not_suppressed(
    bounce_server: BounceServer, seed: Seed, store: Store
) -> None:
    """Gmail's 552 5.2.2 out-of-storage → CSSoftBounced (mailbox_full); nothing suppressed."""
    message = seed.message()
    raw = corpus_dsn("sisimai-rhost-google-05.eml", recipient=message.recipient)
    code, _ = await send_bounce(bounce_server, [return_path(message)], raw)
    assert code == 250
    [event] = timeline(store, message.uuid)
    assert (
        event["event_type"],
        event["reason"],
        event["enhanced_status"],
        event["smtp_code"],
    ) == (SOFT, "mailbox_full", "5.2.2", 552)
    assert suppressed(store, seed) == []


async def test_expired_4xx_failure_is_soft(
    bounce_server: BounceServer, seed: Seed, store: Store
) -> None:
    """Postfix gave up (Action: failed, Status 4.4.1): a 4.x.x is never hard → CSSoftBounced."""
    message = seed.message()
    raw = corpus_dsn("sisimai-lhost-postfix-15.eml", recipient=message.recipient)
    await send_bounce(bounce_server, [return_path(message)], raw)
    [event] = timeline(store, message.uuid)
    assert (event["event_type"], event["enhanced_status"]) == (SOFT, "4.4.1")


async def test_delayed_dsn_stores_nothing(
    bounce_server: BounceServer, seed: Seed, store: Store
) -> None:
    """A warning (Action: delayed) is accepted, counted as bounce.delayed, and stores no event."""
    message = seed.message()
    raw = corpus_dsn("sisimai-rhost-gsuite-06.eml", recipient=message.recipient)
    code, text = await send_bounce(bounce_server, [return_path(message)], raw)
    assert (code, text) == (250, "2.0.0 Ok: 0 recorded, 1 ignored")
    assert timeline(store, message.uuid) == []
    assert provider_counters(store, seed.provider.id) == {"bounce.delayed": 1}


async def test_only_the_messages_recipient_is_taken_from_a_multi_recipient_dsn(
    bounce_server: BounceServer, seed: Seed, store: Store
) -> None:
    """Postfix DSN with two failed blocks: the one naming the message's recipient is stored,
    the other is counted as another recipient's."""
    message = seed.message(recipient="kijitora@example.jp")
    raw = corpus_dsn("sisimai-lhost-postfix-13.eml")
    code, text = await send_bounce(bounce_server, [return_path(message)], raw)
    assert (code, text) == (250, "2.0.0 Ok: 1 recorded, 1 ignored")
    [event] = timeline(store, message.uuid)
    assert (
        event["event_type"],
        event["enhanced_status"],
        event["smtp_command"],
    ) == (HARD, "5.2.1", "RCPT TO")
    assert provider_counters(store, seed.provider.id)["bounce.other_recipient"] == 1


async def test_exim_text_bounce_is_understood(
    bounce_server: BounceServer, seed: Seed, store: Store
) -> None:
    """A non-standard (Exim plain-text) bounce is parsed too: hard, with the remote reply."""
    message = seed.message()
    raw = corpus_dsn("sisimai-lhost-exim-02.eml", recipient=message.recipient)
    await send_bounce(bounce_server, [return_path(message)], raw)
    [event] = timeline(store, message.uuid)
    assert (event["event_type"], event["details"]["dsnFormat"]) == (HARD, "exim")


async def test_a_repeated_dsn_changes_nothing(
    bounce_server: BounceServer, seed: Seed, store: Store
) -> None:
    """The same DSN delivered twice: one event, the second counted as a duplicate."""
    message = seed.message()
    raw = corpus_dsn("sisimai-lhost-sendmail-01.eml", recipient=message.recipient)
    await send_bounce(bounce_server, [return_path(message)], raw)
    first = timeline(store, message.uuid)
    await send_bounce(bounce_server, [return_path(message)], raw)
    assert first == timeline(store, message.uuid)
    assert provider_counters(store, seed.provider.id)["bounce.duplicate"] == 1


# --- dedup with agent events --------------------------------------------------------------------


async def test_agent_bounce_then_dsn_is_one_bounce_with_the_dsn_merged(
    bounce_server: BounceServer,
    client: httpx.AsyncClient,
    settings: Settings,
    seed: Seed,
    store: Store,
) -> None:
    """Agent reports the hard bounce first (the recipient is suppressed then); the DSN for the
    same recipient is merged into it."""
    message = seed.message()
    await agent_reports(client, settings, seed, agent_event(message.uuid, "bounced", **AGENT_HARD))
    assert suppressed(store, seed) == [(message.recipient, "hard_bounce")]
    raw = corpus_dsn("sisimai-lhost-sendmail-01.eml", recipient=message.recipient)
    code, text = await send_bounce(bounce_server, [return_path(message)], raw)
    assert (code, text) == (250, "2.0.0 Ok: 1 recorded, 0 ignored")
    [event] = timeline(store, message.uuid)
    assert (HARD, "agent", AGENT_HARD["smtp_description"]) == (
        event["event_type"],
        event["source"],
        event["description"],
    )
    [merged] = event["details"]["merged"]
    assert (
        merged["source"],
        merged["event_type"],
        merged["description"],
    ) == ("dsn", HARD, "550 5.1.1 <user@example.com>... User Unknown")


async def test_dsn_hard_upgrades_an_agent_soft_bounce_and_suppresses(
    bounce_server: BounceServer,
    client: httpx.AsyncClient,
    settings: Settings,
    seed: Seed,
    store: Store,
) -> None:
    """Agent soft first, then a hard DSN: the event becomes hard (agent's report merged) and the
    recipient is suppressed."""
    message = seed.message()
    await agent_reports(client, settings, seed, agent_event(message.uuid, "bounced", **AGENT_SOFT))
    raw = corpus_dsn("sisimai-lhost-sendmail-01.eml", recipient=message.recipient)
    await send_bounce(bounce_server, [return_path(message)], raw)
    [event] = timeline(store, message.uuid)
    assert (event["event_type"], event["source"]) == (HARD, "dsn")
    assert [(m["source"], m["event_type"]) for m in event["details"]["merged"]] == [("agent", SOFT)]
    assert [(message.recipient, "hard_bounce")] == suppressed(store, seed)


async def test_soft_after_hard_never_overwrites(
    bounce_server: BounceServer,
    client: httpx.AsyncClient,
    settings: Settings,
    seed: Seed,
    store: Store,
) -> None:
    """A hard DSN first; a later soft DSN and a soft agent report are merged; it stays hard."""
    message = seed.message()
    hard = corpus_dsn("sisimai-lhost-sendmail-01.eml", recipient=message.recipient)
    soft = corpus_dsn("sisimai-rhost-google-05.eml", recipient=message.recipient)
    await send_bounce(bounce_server, [return_path(message)], hard)
    await send_bounce(bounce_server, [return_path(message)], soft)
    await agent_reports(client, settings, seed, agent_event(message.uuid, "bounced", **AGENT_SOFT))
    [event] = timeline(store, message.uuid)
    assert (event["event_type"], event["source"], event["reason"]) == (HARD, "dsn", "user_unknown")
    assert [(m["source"], m["event_type"]) for m in event["details"]["merged"]] == [
        ("dsn", SOFT),
        ("agent", SOFT),
    ]


# --- what is not a DSN, and limits --------------------------------------------------------------


async def test_unparseable_message_is_accepted_kept_and_counted(
    bounce_server: BounceServer, seed: Seed, store: Store
) -> None:
    """An auto-reply that is no bounce: 250, kept whole in unparsed_bounces, counted; no event."""
    message = seed.message()
    raw = (
        b"From: someone@example.com\r\nTo: news@sender.example\r\nSubject: Out of office\r\n"
        b"\r\nI am away until Monday.\r\n"
    )
    code, text = await send_bounce(bounce_server, [return_path(message)], raw)
    assert code == 250
    assert text.startswith("2.0.0 Ok: kept as unparsed #")
    with store.read() as conn:
        [kept] = bounce_store.list_unparsed(conn)
    assert (message.uuid, seed.provider.id, [return_path(message)], "") == (
        kept["message_uuid"],
        kept["provider_id"],
        kept["envelope_to"],
        kept["envelope_from"],
    )
    assert raw.replace(b"\r\n", b"\n") == bytes(kept["raw"]).replace(b"\r\n", b"\n")
    assert timeline(store, message.uuid) == []
    assert provider_counters(store, seed.provider.id) == {"bounce.unparsed": 1}
    assert bounce_server.stats.unparsed == 1


async def test_oversized_message_is_refused_with_552(
    bounce_server: BounceServer, seed: Seed, store: Store
) -> None:
    """A message over the size limit is refused (552) and nothing is stored."""
    message = seed.message()
    raw = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 80
    code, _ = await send_bounce_expecting_error(bounce_server, return_path(message), raw)
    assert code == 552
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 0
        assert bounce_store.unparsed_count(conn) == 0


async def send_bounce_expecting_error(
    server: BounceServer, recipient: str, raw: bytes
) -> tuple[int, str]:
    import aiosmtplib

    async with aiosmtplib.SMTP(
        hostname=server.host, port=server.port, timeout=10, local_hostname="mta.example"
    ) as smtp:
        await smtp.mail("")
        await smtp.rcpt(recipient)
        try:
            reply = await smtp.data(raw)
        except aiosmtplib.SMTPDataError as exc:
            return exc.code, exc.message
    return reply.code, reply.message


async def test_a_busy_port_is_reported_naming_the_setting(store: Store, clock: ManualClock) -> None:
    """Starting on a port already taken raises ConfigError naming SENDPOST_BOUNCE_LISTEN (the
    `bounce` role prints it as its one error line)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = BounceServer(BounceProcessor(store, clock), hostname="bounce.test")
        with pytest.raises(ConfigError) as caught:
            await server.start("127.0.0.1", port)
    assert (caught.value.variable, caught.value.value) == (
        "SENDPOST_BOUNCE_LISTEN",
        f"127.0.0.1:{port}",
    )


async def test_a_database_failure_answers_451_so_the_sender_retries(
    tmp_path: Path, clock: ManualClock
) -> None:
    """When the store cannot answer (here: no schema), RCPT gets 451 4.3.0, never a 5xx that
    would make the reporting MTA discard the bounce."""
    broken = Store.open(f"sqlite:///{tmp_path / 'empty.db'}", pool_size=1)
    server = BounceServer(BounceProcessor(broken, clock), hostname="bounce.test")
    await server.start("127.0.0.1", 0)
    try:
        address = f"bounces+{uuid.uuid4()}+1@sp-bounce.sender.example"
        code, text = await rcpt_reply(server, address)
    finally:
        await server.stop()
        broken.dispose()
    assert (code, text) == (451, "4.3.0 Temporary storage failure, please try again later")
