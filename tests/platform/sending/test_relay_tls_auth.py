"""The relay honours the provider's security (STARTTLS, implicit TLS) and AUTH settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from sendpost_platform.crypto import SecretBox
from sendpost_platform.store import events, relay
from sendpost_wire import EventType

from devtools.smtp_servers import TestServer, TlsMaterial
from tests.platform.sending.conftest import SendingSetup


def sealed(setup: SendingSetup, password: str) -> str:
    return SecretBox(setup.settings.secret_key).seal(password)


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_tls_and_auth(sending: SendingSetup, tmp_path: Path, security: str) -> None:
    """With TLS and AUTH configured the message is relayed and CSSent recorded."""
    tls = TlsMaterial.create(tmp_path)
    options = {"starttls": tls} if security == "starttls" else {"implicit_tls": tls}
    with TestServer(users={"relay": "s3cret"}, **options) as server:
        sending.point_provider(
            host=server.host,
            port=server.port,
            security=security,
            username="relay",
            password_encrypted=sealed(sending, "s3cret"),
            verify_certificate=False,
        )
        [result] = await sending.send(to=["accept-1@example.org"])
        job = sending.relay_job()
        assert await job.run_once() == 1
        await job.close()
        assert len(server.messages) == 1
    with sending.store.read() as conn:
        timeline = events.events_for_message(conn, result["messageId"])
    assert [e["event_type"] for e in timeline] == [EventType.CSProcessed, EventType.CSSent]


async def test_rejected_auth_and_untrusted_certificate_are_retried(
    sending: SendingSetup, tmp_path: Path
) -> None:
    """A refused password (535) and a certificate that does not verify are relay failures."""
    tls = TlsMaterial.create(tmp_path)
    with TestServer(starttls=tls, users={"relay": "s3cret"}) as server:
        sending.point_provider(
            host=server.host,
            port=server.port,
            security="starttls",
            username="relay",
            password_encrypted=sealed(sending, "wrong"),
            verify_certificate=False,
        )
        [result] = await sending.send(to=["accept-1@example.org"])
        job = sending.relay_job(relay_retry_schedule=(1.0, 1.0))
        assert await job.run_once() == 1
        sending.point_provider(
            password_encrypted=sealed(sending, "s3cret"), verify_certificate=True
        )
        sending.clock.advance(seconds=1)
        assert await job.run_once() == 1
        await job.close()
        assert server.messages == []
    with sending.store.read() as conn:
        attempts = relay.attempts_of(conn, result["messageId"])
    assert [a["smtp_code"] for a in attempts] == [535, None]
    assert "certificate" in str(attempts[1]["reply"]).lower()
