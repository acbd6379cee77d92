"""Fixtures for the bounce processor: a real server on a loopback port, DSNs from the corpus.

- ``bounce_server``: a started :class:`BounceServer` on ``127.0.0.1:0`` over the test's store
  (SQLite and PostgreSQL via the shared ``store`` fixture) and ManualClock; stopped at the end.
- :func:`corpus_dsn`: a real bounce from ``tests/corpus/bounces/dsn`` with its failed
  recipient's address rewritten to the test message's recipient.
- :func:`return_path`: the envelope sender the platform gave a message (where its DSN goes).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from sendpost_platform.clock import ManualClock
from sendpost_platform.smtp.bounce_server import BounceProcessor, BounceServer
from sendpost_platform.smtp.prepare import envelope_sender, sender_domain_of
from sendpost_platform.store import Store, counters
from sendpost_platform.store import events as event_store
from sendpost_platform.store.messages import Message

from tests.support.corpus import BOUNCES

CORPUS = BOUNCES / "dsn"
MAX_BYTES = 64 * 1024


def manifest() -> dict[str, dict[str, Any]]:
    entries = (json.loads(line) for line in (CORPUS / "MANIFEST.jsonl").read_text().splitlines())
    return {Path(e["file"]).name: e for e in entries}


def corpus_dsn(name: str, *, recipient: str | None = None, address: str | None = None) -> bytes:
    """The corpus file ``name``; with ``recipient``, its first listed recipient's address (or
    ``address``) is replaced everywhere by ``recipient``."""
    raw = (CORPUS / name).read_bytes()
    if recipient is None:
        return raw
    if address is None:
        first = manifest()[name]["recipients"][0]
        address = first["original_recipient"] or first["final_recipient"]
    assert address is not None
    assert address.encode() in raw
    return raw.replace(address.encode(), recipient.encode())


def return_path(message: Message, *, subaccount_id: int | None = None) -> str:
    sub = message.subaccount_id if subaccount_id is None else subaccount_id
    return envelope_sender(message.uuid, str(sub), sender_domain_of(message.sender))


@pytest.fixture
async def bounce_server(store: Store, clock: ManualClock) -> AsyncIterator[BounceServer]:
    server = BounceServer(
        BounceProcessor(store, clock), hostname="bounce.test", max_message_bytes=MAX_BYTES
    )
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()


async def send_bounce(
    server: BounceServer, recipients: list[str], raw: bytes, *, sender: str = ""
) -> tuple[int, str]:
    """Deliver ``raw`` with a null (or given) envelope sender; returns the DATA reply."""
    async with aiosmtplib.SMTP(
        hostname=server.host, port=server.port, timeout=10, local_hostname="mta.example"
    ) as smtp:
        await smtp.mail(sender)
        for rcpt in recipients:
            await smtp.rcpt(rcpt)
        reply = await smtp.data(raw)
    return reply.code, reply.message


async def rcpt_reply(server: BounceServer, recipient: str) -> tuple[int, str]:
    """The server's answer to ``RCPT TO:<recipient>`` (after a null MAIL FROM)."""
    async with aiosmtplib.SMTP(
        hostname=server.host, port=server.port, timeout=10, local_hostname="mta.example"
    ) as smtp:
        await smtp.mail("")
        reply = await smtp.execute_command(f"RCPT TO:<{recipient}>".encode())
    return reply.code, reply.message


def timeline(store: Store, message_uuid: str) -> list[dict[str, Any]]:
    with store.read() as conn:
        return event_store.events_for_message(conn, message_uuid)


def provider_counters(store: Store, provider_id: int) -> dict[str, int]:
    with store.read() as conn:
        return counters.for_provider(conn, provider_id)
