"""SMTP sinks on loopback that answer like real receiving MTAs, for tests, benchmarks and the demo.

API (stable, used by other test suites)::

    from devtools.sinks import SmtpSink

    with SmtpSink() as sink:                 # binds 127.0.0.1 on a free port
        sink.host, sink.port                 # where to send
        sink.nexthop                         # "[127.0.0.1]:PORT", a Postfix next hop
        ...                                  # relay mail to it
        sink.wait_for_messages(2, timeout=10)
        sink.messages()                      # list[ReceivedMessage], a snapshot (thread-safe)
        sink.rejections()                    # list[Rejection]: every non-2xx reply it gave
        sink.clear()

What the sink answers is chosen per recipient by the start of its local part (case-insensitive),
see ``DEFAULT_RULES``:

    accept…    250 at RCPT and DATA (also anything that matches no rule)
    reject…    550 5.1.1 at RCPT (unknown user: a hard bounce)
    defer…     450 4.2.0 at RCPT (mailbox temporarily unavailable)
    greylist…  451 4.7.1 at RCPT (greylisting)
    full…      552 5.2.2 at RCPT (mailbox full: a soft bounce by the platform's classification)
    dataerr…   accepted at RCPT, then 554 5.7.1 after DATA (content rejected); SMTP has one DATA
               reply for all recipients, so give such messages a single recipient

Pass ``rules=`` to change the table; ``controller_kwargs`` go to aiosmtpd's ``Controller`` (e.g.
``tls_context``, ``require_starttls``, ``authenticator``) so TLS and AUTH can be layered on later.
Accepted messages get ``250 2.0.0 OK id=SINKnnnnnn accepted for delivery``; never Postfix's
``queued as ID``, which the agent holds as a possible hop (for the hop window) when the relay is
on loopback (as these sinks are). The server runs in aiosmtpd's own thread; every accessor here is
safe to call from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devtools.service import Service


@dataclass(frozen=True)
class Reply:
    """An SMTP reply; ``{rcpt}`` in the text is replaced by the recipient address."""

    code: int
    text: str

    def render(self, rcpt: str) -> str:
        return f"{self.code} {self.text.format(rcpt=rcpt)}"


@dataclass(frozen=True)
class Rule:
    """What the sink does for recipients whose local part starts with a prefix."""

    at_rcpt: Reply | None = None  # None: accept the recipient
    after_data: Reply | None = None  # None: accept the message


DEFAULT_RULES: Mapping[str, Rule] = {
    "reject": Rule(at_rcpt=Reply(550, "5.1.1 <{rcpt}>: Recipient address rejected: User unknown")),
    "defer": Rule(at_rcpt=Reply(450, "4.2.0 <{rcpt}>: Mailbox temporarily unavailable")),
    "greylist": Rule(
        at_rcpt=Reply(451, "4.7.1 <{rcpt}>: Recipient address rejected: Greylisted, try later")
    ),
    "full": Rule(at_rcpt=Reply(552, "5.2.2 <{rcpt}>: Mailbox full, quota exceeded")),
    "dataerr": Rule(after_data=Reply(554, "5.7.1 Message rejected: content looks like spam")),
}


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    received_at: float = field(default=0.0)


@dataclass(frozen=True)
class Rejection:
    stage: str  # "RCPT" or "DATA"
    recipients: tuple[str, ...]
    reply: str


def rule_for(rules: Mapping[str, Rule], address: str) -> Rule | None:
    """The rule for ``address``: the longest prefix of its local part that has one."""
    local = address.rsplit("@", 1)[0].lower().strip('"')
    matches = [prefix for prefix in rules if local.startswith(prefix.lower())]
    return rules[max(matches, key=len)] if matches else None


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        rule = rule_for(self._sink.rules, address)
        if rule is not None and rule.at_rcpt is not None:
            reply = rule.at_rcpt.render(address)
            self._sink._record_rejection(Rejection("RCPT", (address,), reply))
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for address in envelope.rcpt_tos:
            rule = rule_for(self._sink.rules, address)
            if rule is not None and rule.after_data is not None:
                reply = rule.after_data.render(address)
                self._sink._record_rejection(Rejection("DATA", tuple(envelope.rcpt_tos), reply))
                return reply
        content = envelope.original_content or b""
        message = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(content),
            received_at=time.time(),
        )
        number = self._sink._record_message(message)
        # Worded like Gmail's reply, not Postfix's "queued as ID": the agent holds "queued as" from
        # a loopback relay as a possible hop for its window, and these sinks live on loopback.
        return f"250 2.0.0 OK id=SINK{number:06d} accepted for delivery"


class _AnyPortController(Controller):
    """aiosmtpd's Controller, able to bind port 0 and report the port the kernel chose."""

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            sockets = self.server.sockets  # type: ignore[attr-defined]
            self.port = sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class ControllerService(Service):
    """A Service around one aiosmtpd controller (set ``_controller`` in ``__init__``)."""

    _controller: Controller
    _running = False

    def start(self) -> Self:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self._controller.stop()
            self._running = False


class SmtpSink(ControllerService):
    """An SMTP server on loopback that records what it receives and rejects by recipient prefix."""

    def __init__(
        self,
        rules: Mapping[str, Rule] = DEFAULT_RULES,
        host: str = "127.0.0.1",
        port: int = 0,
        **controller_kwargs: Any,
    ) -> None:
        self.rules = dict(rules)
        self.host = host
        self._lock = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._rejections: list[Rejection] = []
        controller_kwargs.setdefault("enable_SMTPUTF8", True)
        self._controller = _AnyPortController(
            _Handler(self), hostname=host, port=port, **controller_kwargs
        )
        self._running = False

    @property
    def port(self) -> int:
        if not self._running:
            raise RuntimeError("the sink is not running: call start() first")
        return int(self._controller.port)

    @property
    def nexthop(self) -> str:
        """The Postfix next-hop form of this sink's address, without MX lookup."""
        return f"[{self.host}]:{self.port}"

    def _record_message(self, message: ReceivedMessage) -> int:
        with self._lock:
            self._messages.append(message)
            self._lock.notify_all()
            return len(self._messages)

    def _record_rejection(self, rejection: Rejection) -> None:
        with self._lock:
            self._rejections.append(rejection)
            self._lock.notify_all()

    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    def rejections(self) -> list[Rejection]:
        with self._lock:
            return list(self._rejections)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._rejections.clear()

    def wait_until(
        self, predicate: Callable[[list[ReceivedMessage]], bool], timeout: float
    ) -> None:
        """Block until ``predicate(messages)`` holds; TimeoutError after ``timeout`` seconds."""
        with self._lock:
            if not self._lock.wait_for(lambda: predicate(self._messages), timeout=timeout):
                raise TimeoutError(
                    f"sink {self.host}:{self._controller.port}: condition not met within "
                    f"{timeout}s; {len(self._messages)} message(s) received"
                )

    def wait_for_messages(self, count: int, timeout: float) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages have arrived and return them all."""
        self.wait_until(lambda messages: len(messages) >= count, timeout)
        return self.messages()
