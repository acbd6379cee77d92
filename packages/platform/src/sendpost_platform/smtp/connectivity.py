"""The live SMTP connectivity test run before a Custom SMTP provider is created or changed.

``run_smtp_test`` performs one complete SMTP transaction against the customer's server with
aiosmtplib and reports how far it got. Stages, in order::

    connect   resolving the host and checking its addresses (``egress.EgressPolicy``: a refused
              address raises ``EgressRefused`` before anything is sent), the TCP connection to
              the checked address (and, unless implicit TLS, the 220 greeting)
    tls       security "tls": the TLS handshake and the greeting over it;
              security "starttls": STARTTLS after EHLO (fails if the server does not offer it)
    ehlo      EHLO (again after STARTTLS); HELO if the server refuses EHLO
    auth      only with a username: AUTH PLAIN, else AUTH LOGIN (fails if neither is offered)
    mail      MAIL FROM:<test_from>
    rcpt      RCPT TO:<test_to>
    data      DATA with a minimal message (Date, From, To, Subject, Message-ID)
    quit      QUIT — best effort: a failure here is recorded but does not fail the test

The first failure ends the test: ``stage`` names it, ``smtpCode``/``reply`` carry the server's
answer (or the local error), and ``stage`` is ``"timeout"`` when a stage took longer than the
timeout (the stage's own entry in ``stages`` still names where it stalled). Certificates are
verified against the system trust store (or the given CA file / SSL context), for the host
name (not the address connected to), unless ``verify_certificate`` is false. The transcript
has ``C:``/``S:`` lines and ``*`` notes; AUTH lines are written without credentials and the
password (plain or base64) never appears in it.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal

import aiosmtplib

from sendpost_platform.egress import CheckedTarget, EgressPolicy, open_socket

Security = Literal["none", "starttls", "tls"]
SECURITY_MODES: tuple[str, ...] = ("none", "starttls", "tls")
DEFAULT_TIMEOUT = 15.0
_REDACTED = "********"
_STRICT = EgressPolicy()


@dataclass(frozen=True)
class SmtpTestSettings:
    """Where and how to connect; ``ca_file``/``ssl_context`` replace the system trust store."""

    host: str
    port: int
    security: Security
    test_from: str
    test_to: str
    username: str | None = None
    password: str | None = None
    verify_certificate: bool = True
    ca_file: str | None = None
    ssl_context: ssl.SSLContext | None = None
    helo_name: str | None = None


@dataclass(frozen=True)
class StageResult:
    stage: str
    ok: bool
    smtp_code: int | None
    reply: str | None
    ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "ok": self.ok,
            "smtpCode": self.smtp_code,
            "reply": self.reply,
            "ms": self.ms,
        }


@dataclass(frozen=True)
class SmtpTestResult:
    ok: bool
    stage: str | None
    smtp_code: int | None
    reply: str | None
    stages: tuple[StageResult, ...]
    transcript: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The SPEC's JSON shape: ok, stage, smtpCode, reply, stages, transcript."""
        return {
            "ok": self.ok,
            "stage": self.stage,
            "smtpCode": self.smtp_code,
            "reply": self.reply,
            "stages": [s.to_json() for s in self.stages],
            "transcript": list(self.transcript),
        }


class _StageFailed(Exception):
    def __init__(self, code: int | None, reply: str, *, stage: str | None = None) -> None:
        super().__init__(reply)
        self.code = code
        self.reply = reply
        self.stage = stage  # overrides the running stage (a TLS error seen while connecting)


@dataclass
class _Run:
    settings: SmtpTestSettings
    timeout: float
    clock: Callable[[], float]
    stages: list[StageResult] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    def redact(self, text: str) -> str:
        secrets = [self.settings.password or ""]
        if self.settings.password:
            plain = f"\0{self.settings.username or ''}\0{self.settings.password}"
            secrets += [
                base64.b64encode(self.settings.password.encode()).decode(),
                base64.b64encode(plain.encode()).decode(),
            ]
        for secret in secrets:
            if len(secret) >= 1 and secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    def client(self, line: str) -> None:
        self.transcript.append(self.redact(f"C: {line}"))

    def note(self, line: str) -> None:
        self.transcript.append(self.redact(f"* {line}"))

    def server(self, response: aiosmtplib.SMTPResponse | tuple[int, str]) -> tuple[int, str]:
        code, message = (
            (response.code, response.message)
            if isinstance(response, aiosmtplib.SMTPResponse)
            else response
        )
        lines = message.splitlines() or [""]
        for index, line in enumerate(lines):
            sep = " " if index == len(lines) - 1 else "-"
            self.transcript.append(self.redact(f"S: {code}{sep}{line}"))
        return code, self.redact(" ".join(lines))

    async def stage(
        self, name: str, action: Callable[[], Awaitable[tuple[int, str] | None]]
    ) -> None:
        started = self.clock()
        try:
            async with asyncio.timeout(self.timeout):
                outcome = await action()
        except TimeoutError:
            reply = f"no answer within {self.timeout:g} s during {name}"
            self.note(reply)
            self._record(name, False, None, reply, started)
            raise _StageFailed(None, reply, stage="timeout") from None
        except _StageFailed as failed:
            self._record(name, False, failed.code, failed.reply, started)
            raise
        except aiosmtplib.SMTPResponseException as exc:
            code, reply = self.server((exc.code, exc.message))
            self._record(name, False, code, reply, started)
            raise _StageFailed(code, reply) from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            reply = self.redact(f"TLS failure: {exc}")
            self.note(reply)
            self._record(name, False, None, reply, started)
            raise _StageFailed(None, reply, stage="tls") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError | ssl.CertificateError):
                reply = self.redact(f"TLS failure: {cause}")
                stage = "tls"
            else:
                reply = self.redact(str(exc) or type(exc).__name__)
                stage = None
            if isinstance(exc, aiosmtplib.SMTPTimeoutError):
                stage = "timeout"
            self.note(reply)
            self._record(name, False, None, reply, started)
            raise _StageFailed(None, reply, stage=stage) from None
        except (ValueError, UnicodeError) as exc:
            # Input the SMTP client refuses to send (e.g. a non-ASCII address without SMTPUTF8).
            reply = self.redact(f"cannot send: {exc}")
            self.note(reply)
            self._record(name, False, None, reply, started)
            raise _StageFailed(None, reply) from None
        if outcome is None:
            self._record(name, True, None, None, started)
        else:
            self._record(name, True, outcome[0], outcome[1], started)

    def _record(
        self, name: str, ok: bool, code: int | None, reply: str | None, started: float
    ) -> None:
        ms = round((self.clock() - started) * 1000, 1)
        self.stages.append(StageResult(name, ok, code, reply, ms))


def _tls_context(settings: SmtpTestSettings) -> ssl.SSLContext:
    if settings.ssl_context is not None:
        return settings.ssl_context
    context = ssl.create_default_context(cafile=settings.ca_file)
    if not settings.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def build_test_message(settings: SmtpTestSettings) -> bytes:
    """The minimal message sent in the DATA stage."""
    message = EmailMessage()
    domain = settings.test_from.rpartition("@")[2] or "localhost"
    message["Date"] = email.utils.formatdate(usegmt=True)
    message["From"] = settings.test_from
    message["To"] = settings.test_to
    message["Subject"] = "SendPost Custom SMTP connectivity test"
    message["Message-ID"] = f"<{uuid.uuid4()}@{domain}>"
    message.set_content("This message tests the SMTP connection from SendPost. No action needed.\n")
    return message.as_bytes()


async def _transaction(run: _Run, settings: SmtpTestSettings, target: CheckedTarget) -> None:
    sock: socket.socket | None = None
    client: aiosmtplib.SMTP | None = None
    implicit = settings.security == "tls"
    tls_context = _tls_context(settings) if settings.security != "none" else None

    async def connect() -> tuple[int, str] | None:
        nonlocal sock, client
        run.note(f"connecting to {settings.host}:{settings.port}")
        sock = await open_socket(target, run.timeout)
        run.note(f"connected to {sock.getpeername()[0]}")
        client = aiosmtplib.SMTP(
            hostname=target.tls_name,
            sock=sock,
            use_tls=implicit,
            start_tls=False,
            tls_context=tls_context if implicit else None,
            timeout=run.timeout,
            local_hostname=settings.helo_name or socket.gethostname(),
        )
        if implicit:
            return None
        return run.server(await client.connect())

    async def implicit_tls() -> tuple[int, str]:
        assert client is not None
        greeting = await client.connect()
        run.note(f"TLS established ({client.get_transport_info('ssl_object').version()})")
        return run.server(greeting)

    async def ehlo() -> tuple[int, str]:
        assert client is not None
        run.client(f"EHLO {client.local_hostname}")
        try:
            return run.server(await client.ehlo())
        except aiosmtplib.SMTPHeloError as exc:
            run.server((exc.code, exc.message))
            run.client(f"HELO {client.local_hostname}")
            return run.server(await client.helo())

    async def starttls() -> tuple[int, str]:
        assert client is not None
        if not client.supports_extension("starttls"):
            raise _StageFailed(None, "the server does not offer STARTTLS")
        run.client("STARTTLS")
        response = await client.starttls(tls_context=tls_context)
        reply = run.server(response)
        run.note(f"TLS established ({client.get_transport_info('ssl_object').version()})")
        return reply

    async def auth() -> tuple[int, str]:
        assert client is not None
        username, password = settings.username or "", settings.password or ""
        methods = [m.upper() for m in client.server_auth_methods]
        if "PLAIN" in methods:
            run.client(f"AUTH PLAIN {_REDACTED}")
            return run.server(await client.auth_plain(username, password))
        if "LOGIN" in methods:
            run.client(f"AUTH LOGIN (username and password {_REDACTED})")
            return run.server(await client.auth_login(username, password))
        offered = " ".join(methods) or "no AUTH at all"
        raise _StageFailed(None, f"the server offers neither AUTH PLAIN nor LOGIN ({offered})")

    async def mail() -> tuple[int, str]:
        assert client is not None
        run.client(f"MAIL FROM:<{settings.test_from}>")
        return run.server(await client.mail(settings.test_from))

    async def rcpt() -> tuple[int, str]:
        assert client is not None
        run.client(f"RCPT TO:<{settings.test_to}>")
        return run.server(await client.rcpt(settings.test_to))

    async def data() -> tuple[int, str]:
        assert client is not None
        body = build_test_message(settings)
        run.client("DATA")
        run.client(f"(test message, {len(body)} bytes)")
        return run.server(await client.data(body))

    try:
        await run.stage("connect", connect)
        if implicit:
            await run.stage("tls", implicit_tls)
        await run.stage("ehlo", ehlo)
        if settings.security == "starttls":
            await run.stage("tls", starttls)
            await run.stage("ehlo", ehlo)
        if settings.username:
            await run.stage("auth", auth)
        await run.stage("mail", mail)
        await run.stage("rcpt", rcpt)
        await run.stage("data", data)
        try:

            async def quit_() -> tuple[int, str]:
                assert client is not None
                run.client("QUIT")
                return run.server(await client.quit())

            await run.stage("quit", quit_)
        except _StageFailed:
            pass  # QUIT is best effort: the transaction already succeeded
    finally:
        if client is not None:
            client.close()
        elif sock is not None:
            sock.close()


async def _resolve(run: _Run, settings: SmtpTestSettings, egress: EgressPolicy) -> CheckedTarget:
    """Resolve and check the host; a resolver failure is a failed ``connect`` stage."""
    started = run.clock()
    try:
        async with asyncio.timeout(run.timeout):
            return await egress.resolve(settings.host, settings.port)
    except TimeoutError:
        reply = f"no DNS answer for {settings.host} within {run.timeout:g} s"
        run.note(reply)
        run._record("connect", False, None, reply, started)
        raise _StageFailed(None, reply, stage="timeout") from None
    except OSError as exc:
        reply = run.redact(str(exc))
        run.note(reply)
        run._record("connect", False, None, reply, started)
        raise _StageFailed(None, reply) from None


async def run_smtp_test(
    settings: SmtpTestSettings,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a per-stage limit, not an overall one
    clock: Callable[[], float] = time.perf_counter,
    egress: EgressPolicy = _STRICT,
) -> SmtpTestResult:
    """Run the test transaction; never raises for anything the server or network does.

    The host is resolved and checked once by ``egress`` (strict unless told otherwise) and the
    connection goes to the checked address. Raises :class:`EgressRefused` before connecting when
    the host is, or resolves to, a refused address; a host that does not resolve fails the
    ``connect`` stage."""
    run = _Run(settings=settings, timeout=timeout, clock=clock)
    try:
        target = await _resolve(run, settings, egress)
        await _transaction(run, settings, target)
    except _StageFailed as failed:
        stage = failed.stage or (run.stages[-1].stage if run.stages else "connect")
        return SmtpTestResult(
            ok=False,
            stage=stage,
            smtp_code=failed.code,
            reply=failed.reply,
            stages=tuple(run.stages),
            transcript=tuple(run.transcript),
        )
    last = next((s for s in reversed(run.stages) if s.stage == "data"), None)
    return SmtpTestResult(
        ok=True,
        stage=None,
        smtp_code=last.smtp_code if last else None,
        reply=last.reply if last else None,
        stages=tuple(run.stages),
        transcript=tuple(run.transcript),
    )
