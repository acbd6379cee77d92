"""The live SMTP connectivity test against real aiosmtpd servers on loopback."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import pytest
from sendpost_platform.egress import EgressPolicy
from sendpost_platform.smtp.connectivity import SmtpTestResult, SmtpTestSettings, run_smtp_test

from devtools.smtp_servers import TestServer, TlsMaterial, refusing_port, stalling_port

FAST = 3.0  # seconds per stage: loopback servers answer in milliseconds
LOOPBACK_ALLOWED = EgressPolicy(allow_private=True)  # the development switch: servers are local


async def _run(settings: SmtpTestSettings, **options: Any) -> SmtpTestResult:
    """``run_smtp_test`` with the development switch on, for the loopback servers."""
    return await run_smtp_test(settings, egress=LOOPBACK_ALLOWED, **options)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return TlsMaterial.create(tmp_path_factory.mktemp("tls"))


def _settings(port: int, **overrides: object) -> SmtpTestSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "test_from": "probe@sender.example",
        "test_to": "postmaster@receiver.example",
        "helo_name": "platform.test",
    }
    values.update(overrides)
    return SmtpTestSettings(**values)  # type: ignore[arg-type]


def _stages(result: SmtpTestResult) -> list[tuple[str, bool]]:
    return [(s.stage, s.ok) for s in result.stages]


async def test_plain_transaction_succeeds_and_delivers_the_test_message() -> None:
    """security none: every stage passes, the server receives a message with the test headers."""
    with TestServer() as server:
        result = await _run(_settings(server.port), timeout=FAST)
        received = list(server.messages)
    assert (result.ok, result.stage) == (True, None)
    assert _stages(result) == [
        ("connect", True),
        ("ehlo", True),
        ("mail", True),
        ("rcpt", True),
        ("data", True),
        ("quit", True),
    ]
    assert len(received) == 1
    headers = received[0].split(b"\r\n\r\n")[0]
    for name in (b"Date:", b"From: probe@sender.example", b"To:", b"Subject:", b"Message-ID:"):
        assert name in headers
    assert "C: MAIL FROM:<probe@sender.example>" in result.transcript
    assert result.smtp_code == 250


async def test_json_shape_matches_the_spec() -> None:
    """to_json has exactly the SPEC's keys, and so has each stage entry."""
    with TestServer() as server:
        payload = (await _run(_settings(server.port), timeout=FAST)).to_json()
    assert {"ok", "stage", "smtpCode", "reply", "stages", "transcript"} == set(payload)
    assert {"stage", "ok", "smtpCode", "reply", "ms"} == set(payload["stages"][0])
    assert all(isinstance(line, str) for line in payload["transcript"])


async def test_starttls_with_trusted_certificate_succeeds(tls: TlsMaterial) -> None:
    """starttls: STARTTLS is issued after EHLO, then EHLO again, with the certificate verified."""
    with TestServer(starttls=tls) as server:
        result = await _run(
            _settings(server.port, security="starttls", ca_file=str(tls.ca_file)), timeout=FAST
        )
    assert (result.ok, result.stage) == (True, None)
    assert [s.stage for s in result.stages] == [
        "connect",
        "ehlo",
        "tls",
        "ehlo",
        "mail",
        "rcpt",
        "data",
        "quit",
    ]
    assert "C: STARTTLS" in result.transcript


async def test_starttls_with_untrusted_certificate_fails_at_tls(tls: TlsMaterial) -> None:
    """A self-signed chain unknown to the trust store fails at stage tls (verification is on)."""
    with TestServer(starttls=tls) as server:
        result = await _run(_settings(server.port, security="starttls"), timeout=FAST)
    assert (result.ok, result.stage) == (False, "tls")
    assert result.reply is not None
    assert "certificate" in result.reply.lower()


async def test_starttls_untrusted_certificate_accepted_when_verification_is_off(
    tls: TlsMaterial,
) -> None:
    """verifyCertificate false: the same untrusted certificate is accepted."""
    with TestServer(starttls=tls) as server:
        result = await _run(
            _settings(server.port, security="starttls", verify_certificate=False), timeout=FAST
        )
    assert (result.ok, result.stage) == (True, None)


async def test_starttls_not_offered_fails_at_tls() -> None:
    """security starttls against a server without STARTTLS fails at stage tls."""
    with TestServer() as server:
        result = await _run(_settings(server.port, security="starttls"), timeout=FAST)
    assert (result.ok, result.stage, result.smtp_code) == (False, "tls", None)
    assert result.reply == "the server does not offer STARTTLS"


async def test_implicit_tls_succeeds_with_a_given_ssl_context(tls: TlsMaterial) -> None:
    """security tls: TLS from the first byte; trust comes from the SSL context passed in."""
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    with TestServer(implicit_tls=tls) as server:
        result = await _run(
            _settings(server.port, security="tls", ssl_context=context), timeout=FAST
        )
    assert (result.ok, result.stage) == (True, None)
    assert [s.stage for s in result.stages] == [
        "connect",
        "tls",
        "ehlo",
        "mail",
        "rcpt",
        "data",
        "quit",
    ]


async def test_implicit_tls_untrusted_certificate_fails_at_tls(tls: TlsMaterial) -> None:
    """security tls with an unknown CA fails at stage tls, not connect."""
    with TestServer(implicit_tls=tls) as server:
        result = await _run(_settings(server.port, security="tls"), timeout=FAST)
    assert (result.ok, result.stage) == (False, "tls")
    assert _stages(result) == [("connect", True), ("tls", False)]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_succeeds_and_transcript_hides_the_password(mechanism: str) -> None:
    """AUTH PLAIN or LOGIN (whichever is offered) succeeds; no form of the password is logged."""
    password = "s3cret-Pa55"
    with TestServer(users={"alice": password}, auth_mechanisms=(mechanism,)) as server:
        result = await _run(
            _settings(server.port, username="alice", password=password), timeout=FAST
        )
    assert (result.ok, result.stage) == (True, None)
    assert any(line.startswith(f"C: AUTH {mechanism}") for line in result.transcript)
    text = "\n".join(result.transcript)
    for secret in (
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(b"\0alice\0" + password.encode()).decode(),
    ):
        assert secret not in text


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_rejected_fails_at_auth_with_535(mechanism: str) -> None:
    """Wrong credentials: stage auth with the server's 535 reply."""
    with TestServer(users={"alice": "right"}, auth_mechanisms=(mechanism,)) as server:
        result = await _run(
            _settings(server.port, username="alice", password="wrong"), timeout=FAST
        )
    assert (result.ok, result.stage, result.smtp_code) == (False, "auth", 535)
    assert "wrong" not in "\n".join(result.transcript)


async def test_auth_not_offered_fails_at_auth() -> None:
    """Credentials given but the server offers no AUTH: stage auth."""
    with TestServer() as server:
        result = await _run(_settings(server.port, username="alice", password="pw"), timeout=FAST)
    assert (result.ok, result.stage, result.smtp_code) == (False, "auth", None)


async def test_connection_refused_fails_at_connect() -> None:
    """A closed port: stage connect, no SMTP code."""
    with refusing_port() as port:
        result = await _run(_settings(port), timeout=FAST)
    assert (result.ok, result.stage, result.smtp_code) == (False, "connect", None)
    assert _stages(result) == [("connect", False)]


async def test_stalling_server_fails_with_timeout() -> None:
    """A server that accepts TCP and never greets: stage timeout, the entry names connect."""
    with stalling_port() as port:
        result = await _run(_settings(port), timeout=0.3)
    assert (result.ok, result.stage) == (False, "timeout")
    assert _stages(result) == [("connect", False)]


@pytest.mark.parametrize(
    ("command", "reply", "stage", "code"),
    [
        ("MAIL", "553 5.7.1 Sender address rejected: not owned by user", "mail", 553),
        (
            "RCPT",
            "550 5.1.1 <postmaster@receiver.example>: Recipient address rejected",
            "rcpt",
            550,
        ),
        ("DATA", "554 5.7.1 Message rejected as spam", "data", 554),
    ],
)
async def test_rejection_fails_at_that_stage_with_the_server_reply(
    command: str, reply: str, stage: str, code: int
) -> None:
    """MAIL, RCPT or DATA rejected: that stage, with the server's code and text."""
    with TestServer(reject={command: reply}) as server:
        result = await _run(_settings(server.port), timeout=FAST)
    assert (False, stage, code, reply[4:]) == (
        result.ok,
        result.stage,
        result.smtp_code,
        result.reply,
    )
    assert f"S: {reply}" == result.transcript[-1]


async def test_stage_timings_come_from_the_injected_clock() -> None:
    """ms per stage is measured with the clock passed in."""
    ticks = iter(float(n) for n in range(1000))
    with TestServer() as server:
        result = await _run(_settings(server.port), timeout=FAST, clock=lambda: next(ticks))
    assert [1000.0] * len(result.stages) == [s.ms for s in result.stages]


def test_tls_material_ca_loads_into_a_standard_context(tmp_path: Path) -> None:
    """TlsMaterial writes PEM files a standard SSL context can load."""
    material = TlsMaterial.create(tmp_path)
    context = ssl.create_default_context(cafile=str(material.ca_file))
    assert context.cert_store_stats()["x509_ca"] == 1


async def test_address_the_client_cannot_send_fails_at_that_stage() -> None:
    """A non-ASCII sender to a server without SMTPUTF8 handling fails at mail, never raises."""
    with TestServer() as server:
        result = await _run(_settings(server.port, test_from="prüfer@sender.example"), timeout=FAST)
    assert (result.ok, result.stage) == (False, "mail")
