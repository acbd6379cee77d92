"""The SMTP relay client: one transaction per prepared message, connections reused per provider.

:class:`RelayClient` keeps, per provider, a few open aiosmtplib connections (security and AUTH as
the provider is configured: ``none``, ``starttls`` or implicit ``tls``; AUTH PLAIN/LOGIN chosen by
aiosmtplib from the server's EHLO). :meth:`RelayClient.send` never raises for an SMTP or network
failure: it returns a :class:`RelayResult` with the stage (``connect``, ``MAIL``, ``RCPT``,
``DATA``), the server's code and reply, so the worker has one place that maps outcomes to events.

Data written only when allowed: :meth:`RelayClient.send` takes ``may_send_data``, awaited after
the server's ``354``, right before the message is written. It may wait (the worker waits there
for the previous message's outcome to be committed); its answer counts at the moment it returns,
and the data is written without the event loop running in between. If it answers no (the
caller's claim on the message is about to end, e.g. the process was paused, or the previous
commit failed), the connection is closed instead, which makes the server discard the
transaction, and the result has ``stage="lease"``: the message was not sent. This is why DATA
is driven here (the ``DATA`` command, then the content through the protocol's ``write`` and
``read_response``, dot-stuffed as aiosmtplib does) rather than with
:meth:`aiosmtplib.SMTP.data`, which writes the content as soon as ``354`` arrives.

Reuse: after a completed transaction (accepted or refused after MAIL) the connection is reset with
RSET and returned to the provider's idle list; after a network failure it is closed. A reused
connection the server has meanwhile closed is detected before MAIL and replaced once, so an idle
timeout on the far side never costs a retry.

Egress: each new connection resolves the provider's host once through the client's
:class:`~sendpost_platform.egress.EgressPolicy` (strict unless given), connects to the checked
address (TLS still verifies the host name), and a refused address is a ``connect`` failure whose
reply names it (``refused: 127.0.0.1 is a loopback address; ...``); nothing is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from sendpost_platform.egress import CheckedTarget, EgressPolicy, EgressRefused, open_socket
from sendpost_platform.smtp.prepare import PreparedMessage


@dataclass(frozen=True)
class ProviderEndpoint:
    """How to reach one Custom SMTP provider."""

    provider_id: str
    host: str
    port: int
    security: str = "none"
    username: str | None = None
    password: str | None = None
    verify_certificate: bool = True
    timeout_seconds: float = 30.0


LEASE_STAGE = "lease"
"""The stage of a result whose message was not sent because ``may_send_data`` said no."""


@dataclass(frozen=True)
class RelayResult:
    ok: bool
    stage: str
    code: int | None
    reply: str

    @property
    def withheld(self) -> bool:
        """True if the message data was never written (the caller's claim was ending)."""
        return self.stage == LEASE_STAGE

    def summary(self) -> str:
        code = "" if self.code is None else f"{self.code} "
        return f"{self.stage}: {code}{self.reply}".strip()


@dataclass
class _Idle:
    connections: list[aiosmtplib.SMTP] = field(default_factory=list)
    slots: asyncio.Semaphore | None = None


class RelayClient:
    """Relays prepared messages; at most ``max_connections`` open connections per provider."""

    def __init__(
        self,
        *,
        max_connections: int = 4,
        local_hostname: str | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._local_hostname = local_hostname
        self._egress = egress or EgressPolicy()
        self._idle: dict[ProviderEndpoint, _Idle] = {}

    def _pool(self, endpoint: ProviderEndpoint) -> _Idle:
        pool = self._idle.get(endpoint)
        if pool is None:
            pool = _Idle(slots=asyncio.Semaphore(self._max_connections))
            self._idle[endpoint] = pool
        return pool

    async def _connect(self, endpoint: ProviderEndpoint) -> aiosmtplib.SMTP | RelayResult:
        """A connected client, or the failure: resolve and check the host once
        (``egress.EgressPolicy``), connect to the checked address, TLS for the host name."""
        try:
            async with asyncio.timeout(endpoint.timeout_seconds):
                target = await self._egress.resolve(endpoint.host, endpoint.port)
            sock = await open_socket(target, endpoint.timeout_seconds)
        except EgressRefused as refused:
            return RelayResult(False, "connect", None, f"refused: {refused}")
        except OSError as exc:  # TimeoutError included
            return RelayResult(False, "connect", None, _describe(exc))
        smtp = self._new_connection(endpoint, target, sock)
        try:
            await smtp.connect()
        except aiosmtplib.SMTPResponseException as exc:
            # The socket belongs to the client's transport now: closing the client closes it.
            await _close(smtp)
            return RelayResult(False, "connect", exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await _close(smtp)
            return RelayResult(False, "connect", None, _describe(exc))
        return smtp

    def _new_connection(
        self, endpoint: ProviderEndpoint, target: CheckedTarget, sock: socket.socket
    ) -> aiosmtplib.SMTP:
        tls_context = None
        if endpoint.security in ("tls", "starttls") and not endpoint.verify_certificate:
            tls_context = ssl.create_default_context()
            tls_context.check_hostname = False
            tls_context.verify_mode = ssl.CERT_NONE
        return aiosmtplib.SMTP(
            hostname=target.tls_name,
            sock=sock,
            username=endpoint.username or None,
            password=endpoint.password if endpoint.username else None,
            use_tls=endpoint.security == "tls",
            start_tls=endpoint.security == "starttls",
            validate_certs=endpoint.verify_certificate,
            tls_context=tls_context,
            timeout=endpoint.timeout_seconds,
            local_hostname=self._local_hostname,
        )

    async def send(
        self,
        endpoint: ProviderEndpoint,
        message: PreparedMessage,
        *,
        may_send_data: Callable[[], Awaitable[bool]] | None = None,
    ) -> RelayResult:
        pool = self._pool(endpoint)
        assert pool.slots is not None
        allowed = may_send_data or _always
        async with pool.slots:
            reused = pool.connections.pop() if pool.connections else None
            if reused is not None and reused.is_connected:
                result, keep = await self._transaction(reused, message, allowed, reused=True)
                if result is not None:
                    self._release(pool, reused, keep)
                    return result
            smtp = await self._connect(endpoint)
            if isinstance(smtp, RelayResult):
                return smtp
            result, keep = await self._transaction(smtp, message, allowed, reused=False)
            assert result is not None
            self._release(pool, smtp, keep)
            return result

    async def _transaction(
        self,
        smtp: aiosmtplib.SMTP,
        message: PreparedMessage,
        may_send_data: Callable[[], Awaitable[bool]],
        *,
        reused: bool,
    ) -> tuple[RelayResult | None, bool]:
        """Run MAIL/RCPT/DATA. Returns (None, False) when a reused connection turned out dead
        before MAIL was accepted, so the caller may retry on a fresh one."""
        stage = "MAIL"
        try:
            await smtp.mail(message.envelope_from)
            stage = "RCPT"
            for recipient in message.recipients:
                await smtp.rcpt(recipient)
            stage = "DATA"
            response = await _data(smtp, message.data, may_send_data)
        except _Withheld:
            await _close(smtp)
            return RelayResult(False, LEASE_STAGE, None, "claim ending: data not sent"), False
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code < 0 or isinstance(exc, aiosmtplib.SMTPServerDisconnected):
                await _close(smtp)
                if reused and stage == "MAIL":
                    return None, False
                return RelayResult(False, stage, None, _describe(exc)), False
            keep = await _reset(smtp)
            return RelayResult(False, stage, exc.code, exc.message), keep
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await _close(smtp)
            if reused and stage == "MAIL":
                return None, False
            return RelayResult(False, stage, None, _describe(exc)), False
        return RelayResult(True, "DATA", response.code, response.message), True

    def _release(self, pool: _Idle, smtp: aiosmtplib.SMTP, keep: bool) -> None:
        if keep and smtp.is_connected:
            pool.connections.append(smtp)

    async def close(self) -> None:
        """QUIT every idle connection."""
        pools, self._idle = list(self._idle.values()), {}
        for pool in pools:
            for smtp in pool.connections:
                with contextlib.suppress(Exception):
                    await smtp.quit()
                await _close(smtp)


class _Withheld(Exception):
    """``may_send_data`` said no after ``354``."""


async def _always() -> bool:
    return True


async def _data(
    smtp: aiosmtplib.SMTP, data: bytes, may_send_data: Callable[[], Awaitable[bool]]
) -> aiosmtplib.SMTPResponse:
    """DATA, then the content unless ``await may_send_data()`` is false; the reply to the
    content. Errors as :meth:`aiosmtplib.SMTP.data` raises them."""
    start = await smtp.execute_command(b"DATA")
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    content = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"
    if not await may_send_data():
        raise _Withheld
    # The event loop does not run between may_send_data's last check and this write, and
    # read_response is called before it runs again, so the reply cannot arrive unexpected
    # (aiosmtplib would drop it).
    protocol.write(content)
    try:
        response = await protocol.read_response(timeout=smtp.timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        smtp.close()
        raise
    if response.code != 250:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response


async def _reset(smtp: aiosmtplib.SMTP) -> bool:
    try:
        await smtp.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        await _close(smtp)
        return False
    return True


async def _close(smtp: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        smtp.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
