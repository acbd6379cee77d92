"""An after-queue content filter on loopback that re-injects each message into Postfix.

It plays the part amavisd-new plays on real MTAs: Postfix's ``content_filter`` hands it every
message over SMTP; it passes the message unchanged to Postfix's re-injection smtpd and answers
Postfix with that smtpd's reply wrapped the way amavis does it::

    250 2.0.0 from MTA(smtp:[127.0.0.1]:PORT): 250 2.0.0 Ok: queued as NEWID

so the parent's ``status=sent`` line names the child queue ID. It also speaks XFORWARD (as amavis
does) so the re-injection smtpd logs ``orig_queue_id=PARENT`` for the child.

    with ReinjectingFilter(reinject_port=10025) as flt:   # binds 127.0.0.1 on a free port
        flt.port, flt.forwarded_count()

``before_reply(child_queue_id)``, when given, runs (in a worker thread) before the filter answers
Postfix: ``PostfixInstance`` uses it for ``content_filter_late_reply`` to hold the answer until
the child has been delivered and removed, so the parent's ``status=sent (... queued as CHILD)``
line comes after every line of the child, the worst order a log reader must handle.

``PostfixInstance(PostfixSettings(content_filter=True))`` starts and stops one of these itself.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from devtools.sinks import ControllerService, _AnyPortController

_QUEUED_AS = re.compile(r"queued as (\w+)")
_XFORWARD_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")


class _XforwardSMTP(SMTP):
    """aiosmtpd's SMTP server plus the XFORWARD command Postfix sends to content filters."""

    @syntax("XFORWARD attribute=value ...")
    async def smtp_XFORWARD(self, arg: str) -> None:
        attrs = self.session.__dict__.setdefault("xforward", {})
        for item in (arg or "").split():
            name, _, value = item.partition("=")
            if name.upper() in _XFORWARD_ATTRS:
                attrs[name.upper()] = value
        await self.push("250 2.0.0 Ok")


class _ForwardingHandler:
    def __init__(self, owner: ReinjectingFilter) -> None:
        self._owner = owner

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        # Advertise XFORWARD just before the final line of the EHLO reply.
        last = responses[-1]
        return [
            *responses[:-1],
            f"250-XFORWARD {' '.join(_XFORWARD_ATTRS)}",
            last if last.startswith("250 ") else "250 " + last[4:],
        ]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        host, port = "127.0.0.1", self._owner.reinject_port
        xforward: dict[str, str] = session.__dict__.get("xforward", {})
        try:
            async with aiosmtplib.SMTP(
                hostname=host, port=port, timeout=30, local_hostname="content-filter.localhost"
            ) as client:
                await client.ehlo()
                if xforward and client.supports_extension("xforward"):
                    attrs = " ".join(f"{k}={v}" for k, v in xforward.items())
                    await client.execute_command(b"XFORWARD " + attrs.encode())
                _, reply = await client.sendmail(
                    envelope.mail_from or "",
                    envelope.rcpt_tos,
                    envelope.original_content or b"",
                    mail_options=["SMTPUTF8"] if envelope.smtp_utf8 else [],
                )
        except aiosmtplib.SMTPException as error:
            return f"451 4.3.0 re-injection into [{host}]:{port} failed: {error}"
        self._owner._count()
        child = _QUEUED_AS.search(reply)
        if self._owner.before_reply is not None and child is not None:
            await asyncio.to_thread(self._owner.before_reply, child.group(1))
        return f"250 2.0.0 from MTA(smtp:[{host}]:{port}): 250 {reply}"


class _FilterController(_AnyPortController):
    def factory(self) -> SMTP:
        return _XforwardSMTP(self.handler, **self.SMTP_kwargs)


class ReinjectingFilter(ControllerService):
    """The loopback content filter; see the module docstring."""

    def __init__(
        self,
        reinject_port: int,
        host: str = "127.0.0.1",
        before_reply: Callable[[str], None] | None = None,
    ) -> None:
        self.reinject_port = reinject_port
        self.host = host
        self.before_reply = before_reply
        self._lock = threading.Lock()
        self._forwarded = 0
        self._controller = _FilterController(
            _ForwardingHandler(self), hostname=host, port=0, enable_SMTPUTF8=True
        )
        self._running = False

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def _count(self) -> None:
        with self._lock:
            self._forwarded += 1

    def forwarded_count(self) -> int:
        with self._lock:
            return self._forwarded
