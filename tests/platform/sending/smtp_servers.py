"""An aiosmtpd server for relay tests that answers 2xx/4xx/5xx per command.

- ``MAIL``: ``mail_reply`` (None accepts) — e.g. ``"451 4.3.0 Try later"``;
- ``RCPT``: by the recipient's local-part prefix: ``defer…`` 450, ``reject…`` 550, else 250;
- ``DATA``: ``dataerr…`` recipients get 554 after the data, else ``250 2.0.0 Ok: queued as N``.

``on_rcpt`` (None by default) is called with each RCPT address before the reply, in the server's
thread: tests use it to do something while the client waits (e.g. step the clock, as if the
client's process were paused there).

It records every accepted message (envelope, bytes, the connection it came on), so tests can
check DKIM on exactly the bytes received and count connections to prove reuse. Accessors are
thread-safe (the server runs in aiosmtpd's thread).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

RCPT_REPLIES = {
    "defer": "450 4.2.0 Mailbox temporarily unavailable",
    "reject": "550 5.1.1 User unknown",
}


@dataclasses.dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    session: int


class _Handler:
    def __init__(self, server: ScriptedSmtp) -> None:
        self.server = server

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.server._note_session(session)
        if self.server.mail_reply is not None:
            return self.server.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.server.on_rcpt is not None:
            self.server.on_rcpt(address)
        local = address.split("@", 1)[0].lower()
        for prefix, reply in RCPT_REPLIES.items():
            if local.startswith(prefix):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if any(r.split("@", 1)[0].lower().startswith("dataerr") for r in envelope.rcpt_tos):
            return "554 5.7.1 Message rejected as spam"
        number = self.server._record(
            Received(
                envelope.mail_from or "",
                tuple(envelope.rcpt_tos),
                bytes(envelope.original_content or b""),
                self.server._session_number(session),
            )
        )
        return f"250 2.0.0 Ok: queued as Q{number:05d}"


class _AnyPort(Controller):  # type: ignore[misc]
    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class ScriptedSmtp:
    def __init__(self, **controller_kwargs: Any) -> None:
        self.mail_reply: str | None = None
        self.on_rcpt: Callable[[str], None] | None = None
        self._lock = threading.Condition()
        self._received: list[Received] = []
        self._sessions: dict[int, int] = {}
        self._controller = _AnyPort(
            _Handler(self), hostname="127.0.0.1", port=0, **controller_kwargs
        )
        self.host = "127.0.0.1"
        self.port = 0

    def _note_session(self, session: Session) -> None:
        with self._lock:
            self._sessions.setdefault(id(session), len(self._sessions) + 1)

    def _session_number(self, session: Session) -> int:
        with self._lock:
            return self._sessions.setdefault(id(session), len(self._sessions) + 1)

    def _record(self, received: Received) -> int:
        with self._lock:
            self._received.append(received)
            self._lock.notify_all()
            return len(self._received)

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def wait_until(self, predicate: Callable[[list[Received]], bool], timeout: float) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: predicate(self._received), timeout=timeout):
                raise TimeoutError(f"{len(self._received)} message(s) after {timeout}s")

    def __enter__(self) -> ScriptedSmtp:
        self._controller.start()
        self.port = int(self._controller.port)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._controller.stop()
