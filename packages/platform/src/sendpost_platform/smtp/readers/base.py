"""What every bounce reader shares: the records, the bounce as the readers see it, the interface.

- :class:`DsnRecipient` — one recipient as a reader extracts it: address (Final-/Original-
  Recipient), action, status, reply code, command and diagnostic text (and the RFC 3464 extras).
- :class:`DsnReport` — the recipients of one bounce and the name of the reader that found them.
- :class:`Bounce` — the parsed message and the views of it readers look at (all text parts, the
  notification before the returned copy, the returned copy, the delivery-status parts), each
  computed once, on first use.
- :class:`Reader` — the interface: ``detect(bounce)`` (is this the reader's format?) then
  ``extract(bounce)`` (the per-recipient records); ``report`` gives them as a :class:`DsnReport`.
"""

from __future__ import annotations

import abc
import email.message
import email.policy
import functools
import re
from dataclasses import dataclass, field
from typing import ClassVar

from sendpost_platform.smtp.readers import text as _text

TERMINAL_ACTIONS = frozenset({"failed", "expired"})
"""``failed`` (RFC 3464), and SendGrid's non-standard ``expired`` (it gave up: also final)."""


@dataclass(frozen=True)
class DsnRecipient:
    """One recipient of a bounce, as a reader extracts it."""

    final_recipient: str | None
    original_recipient: str | None
    action: str
    status: str | None
    diagnostic_type: str | None
    diagnostic: str | None
    smtp_code: int | None
    smtp_command: str | None
    remote_mta: str | None

    @property
    def address(self) -> str | None:
        """The address we sent to: Original-Recipient when given, else Final-Recipient."""
        return self.original_recipient or self.final_recipient

    @property
    def terminal(self) -> bool:
        return self.action in TERMINAL_ACTIONS


@dataclass(frozen=True)
class DsnReport:
    format: str
    recipients: tuple[DsnRecipient, ...]
    reporting_mta: str | None = None
    original_envelope_id: str | None = None
    returned_headers: email.message.Message | None = field(default=None, compare=False)

    def returned_header(self, name: str) -> str | None:
        if self.returned_headers is None:
            return None
        value = self.returned_headers.get(name)
        return None if value is None else str(value).strip()


def body_text(part: email.message.Message) -> str:
    """A leaf part's decoded text (its charset, else UTF-8; undecodable bytes replaced)."""
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, errors="replace")
        except LookupError:
            return payload.decode("utf-8", errors="replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _is_text(part: email.message.Message) -> bool:
    """A text part, or a multipart whose boundary never occurs (read as one text)."""
    kind = part.get_content_maintype()
    return kind == "text" or (kind == "multipart" and isinstance(part.get_payload(), str))


def attached_message(message: email.message.Message) -> email.message.Message | None:
    """The returned message attached as ``message/rfc822`` (or its headers as
    ``text/rfc822-headers``), the first one of the MIME tree."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                inner = payload[0]
                return inner if isinstance(inner, email.message.Message) else None
        if kind in ("text/rfc822-headers", "message/rfc822-headers"):
            return email.message_from_string(body_text(part), policy=email.policy.compat32)
    return None


class Bounce:
    """A bounce message and the views of it the readers use (each computed once)."""

    def __init__(self, message: email.message.Message) -> None:
        self.message = message

    @classmethod
    def parse(cls, raw: bytes) -> Bounce:
        return cls(email.message_from_bytes(raw, policy=email.policy.compat32))

    @functools.cached_property
    def status_parts(self) -> list[email.message.Message]:
        """The ``message/delivery-status`` parts (also when mislabelled ``text/...``)."""
        return [
            p
            for p in self.message.walk()
            if p.get_content_type() in ("message/delivery-status", "text/delivery-status")
        ]

    @functools.cached_property
    def text(self) -> str:
        """Every text part (the returned copy's too), CRLF turned to LF."""
        return "\n".join(
            body_text(p) for p in self.message.walk() if not p.is_multipart() and _is_text(p)
        ).replace("\r\n", "\n")

    @functools.cached_property
    def notification_parts(self) -> str:
        """The text parts outside any attached message (the returned copy)."""
        texts: list[str] = []
        pending = [self.message]
        while pending:
            part = pending.pop(0)
            if part.get_content_maintype() == "message" and part is not self.message:
                continue
            payload = part.get_payload()
            if part.is_multipart() and isinstance(payload, list):
                pending[0:0] = [p for p in payload if isinstance(p, email.message.Message)]
            elif _is_text(part):
                texts.append(body_text(part))
        return "\n".join(texts).replace("\r\n", "\n")

    @functools.cached_property
    def notification(self) -> str:
        """:attr:`notification_parts` cut at the line that introduces the returned copy."""
        return _text.notification_text(self.notification_parts)

    @functools.cached_property
    def lines(self) -> list[str]:
        """:attr:`notification` split into lines."""
        return self.notification.split("\n")

    @functools.cached_property
    def lowered(self) -> str:
        """:attr:`notification` in lower case (for a quick "is the marker anywhere" test)."""
        return self.notification.lower()

    def find_line(self, marker: str) -> int | None:
        """The index of the first notification line whose stripped text starts with ``marker``
        (case ignored); a substring search over the whole text first, so a reader whose marker
        is absent costs one ``str`` scan, not one per line."""
        if marker.lower() not in self.lowered:
            return None
        return _text.starts_with(self.lines, marker)

    @functools.cached_property
    def returned(self) -> email.message.Message | None:
        """The returned message: attached, else the copy written after the notification."""
        return attached_message(self.message) or _text.copied_message(self.text, self.notification)

    @functools.cached_property
    def failed_recipients(self) -> list[str]:
        """The addresses of the ``X-Failed-Recipients`` headers (Exim, Google), in order."""
        found: list[str] = []
        for value in self.message.get_all("X-Failed-Recipients") or []:
            for token in str(value).replace(",", " ").split()[: _text.MAX_RECIPIENTS]:
                address = _text.clean_address(token)
                if address and address not in found:
                    found.append(address)
                if len(found) == _text.MAX_RECIPIENTS:
                    return found
        return found

    @functools.cached_property
    def subject(self) -> str:
        """The bounce's Subject, whitespace squashed, lower-case."""
        return _text.squash(str(self.message.get("Subject") or "")).lower()

    @functools.cached_property
    def sender(self) -> str:
        """The bounce's From, lower-case."""
        return str(self.message.get("From") or "").lower()


class Reader(abc.ABC):
    """One bounce format: ``detect`` says whether a bounce is in it, ``extract`` reads it.

    ``extract`` is called only when ``detect`` is true and gives one record per recipient (at
    most :data:`~sendpost_platform.smtp.readers.text.MAX_RECIPIENTS`), or none when the bounce
    turns out to name no recipient (the next reader is then tried). Both must cost time linear
    in the message's size: ``str`` methods and patterns without two unbounded quantifiers.
    """

    name: ClassVar[str]
    """The reader's name, given as ``DsnReport.format``."""

    @abc.abstractmethod
    def detect(self, bounce: Bounce) -> bool:
        """Whether ``bounce`` carries this reader's markers."""

    @abc.abstractmethod
    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        """Per recipient: address, action, status, reply code, command, diagnostic text."""

    def report(self, bounce: Bounce) -> DsnReport:
        """``extract``'s records as a report, with the returned message's headers (what
        ``dsn.parse_report`` calls after ``detect``)."""
        return DsnReport(self.name, tuple(self.extract(bounce)), returned_headers=bounce.returned)


_REPLY = re.compile(r"(?:said|\]):\s*[245]\d\d\b")
_CODE_AT_START = re.compile(r"(?:^|[\s:;])([245]\d\d)(?=[\s-]|$)")


def smtp_code(diagnostic: str | None) -> int | None:
    """The reply code at the start (first 40 characters) of a remote server's reply."""
    if not diagnostic:
        return None
    match = _CODE_AT_START.search(diagnostic[:40])
    return int(match.group(1)) if match else None


def record(
    address: str, diagnostic: str, action: str = "failed", command: str | None = None
) -> DsnRecipient:
    """A recipient read from free text: the status and reply code the text holds (the reply
    code only in its first 200 characters), DATA as the command when the text says so."""
    text = _text.squash(diagnostic[: 4 * _text.MAX_DIAGNOSTIC])[: _text.MAX_DIAGNOSTIC]
    status = _text.STATUS.search(text)
    code = _text.REPLY_CODE.search(text[:200])
    lowered = text.lower()
    if command is None and any(m in lowered for m in ("smtp command data", "after end of data")):
        command = "DATA"
    return DsnRecipient(
        final_recipient=address,
        original_recipient=None,
        action=action,
        status=status.group(1) if status else None,
        diagnostic_type="smtp" if code else None,
        diagnostic=text or None,
        smtp_code=int(code.group(1)) if code else None,
        smtp_command=command,
        remote_mta=None,
    )


def reply_record(address: str, diagnostic: str, command: str | None) -> DsnRecipient:
    """A failed recipient whose text quotes the remote reply after ``said:`` or ``]:`` (Exim,
    qmail): the diagnostic starts at the reply; status 5.0.0 when the text holds none."""
    diagnostic = _text.squash(diagnostic)
    reply = _REPLY.search(diagnostic)
    text = diagnostic[reply.end() - 3 :] if reply else diagnostic
    status = _text.STATUS.search(diagnostic)
    return DsnRecipient(
        final_recipient=address,
        original_recipient=None,
        action="failed",
        status=status.group(1) if status else "5.0.0",
        diagnostic_type="smtp" if reply else None,
        diagnostic=text or None,
        smtp_code=smtp_code(text) if reply else None,
        smtp_command=command,
        remote_mta=None,
    )
