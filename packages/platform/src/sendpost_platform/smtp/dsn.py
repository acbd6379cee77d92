"""Delivery status notifications (bounce messages) parsed into per-recipient records.

Pure functions over the raw message bytes: ``parse_report(raw)`` returns every recipient the
report mentions with its Action; ``parse_dsn(raw)`` returns only the terminal ones (``Action:
failed``): ``delayed`` (a warning), ``delivered``, ``relayed`` and ``expanded`` are ignored, as
SPEC.md asks of the bounce processor. Neither raises on arbitrary input; a message that is no
recognisable bounce gives an empty report (``format == "unknown"``).

Formats:

- **RFC 3464** ``message/delivery-status`` parts (anywhere in the MIME tree, also when mislabelled
  ``text/delivery-status``). Per recipient: Final-/Original-Recipient (rfc822 addresses only),
  Action, Status (a trailing comment is kept as text), Diagnostic-Code, Remote-MTA. The SMTP
  command comes from Postfix's human-readable part (``<rcpt>: host ... said: ... (in reply to
  RCPT TO command)``) when present.
- **Exim** plain-text bounces: ``The following address(es) failed:`` then each address with
  its indented ``SMTP error from remote mail server after RCPT TO:...: host ...: 550 ...``.
- **qmail** plain-text bounces: ``This is the qmail-send program``, then ``<address>:`` blocks
  with ``... said: 550 ...`` and ``(#5.1.1)``.
- then the readers of ``smtp/text_readers.py``, in its ``READERS`` order (issue 14): RFC 3464
  fields pasted into text, DragonFly, old Gmail/Google Groups text, and the last-resort reader
  for any message that announces itself as a bounce. The first reader that finds a recipient
  wins (``DsnReport.format`` names it).

A delivery-status paragraph holding several recipients without blank lines between them is split
per recipient; a block without Diagnostic-Code takes the human-readable line naming its address.

The returned original message (``message/rfc822``, ``text/rfc822-headers`` or the copy after a
text bounce's separator) is exposed as ``returned_headers`` so the caller can read e.g.
``X-Sendpost-Message-UUID``. The envelope address the bounce was sent to (``bounces+uuid+sub@``)
is the caller's: it is not part of the message.

Cost: linear in the message's size whatever it holds (the sender may be anyone who knows a
bounce address). Addresses, recipient paragraphs and status comments are read with str methods
and paragraphs split line by line; no remaining pattern has two unbounded quantifiers that can
trade characters (tests/platform/dsn/test_linear_time.py).
"""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.policy
import re
from dataclasses import dataclass, field

TERMINAL_ACTIONS = frozenset({"failed", "expired"})
"""``failed`` (RFC 3464), and SendGrid's non-standard ``expired`` (it gave up: also final)."""

_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_CODE = re.compile(r"(?:^|[\s:;])([245]\d\d)(?=[\s-]|$)")
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9.+-]*$")
_IN_REPLY = re.compile(r"in reply to (.{1,30}?) command", re.I | re.S)
_REPLY = re.compile(r"(?:said|\]):\s*[245]\d\d\b")
_QMAIL_STATUS = re.compile(r"\(#([245]\.\d{1,3}\.\d{1,3})\)")
_QMAIL_PROGRESS = re.compile(r"most progress was (RCPT TO|MAIL FROM|DATA)", re.I)
_EXIM_AFTER = re.compile(r"after (RCPT TO|MAIL FROM|end of data|DATA)", re.I)

# Characters that end an address token (besides whitespace).
_NOT_IN_ADDRESS = frozenset('<>;:"')


def _paragraphs(text: str) -> list[str]:
    """The paragraphs of ``text``: runs of lines separated by whitespace-only lines.

    The same pieces as splitting at ``\\n\\s*\\n`` (leading and trailing blank pieces dropped),
    found line by line so the cost is linear whatever the text holds.
    """
    paragraphs: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    return paragraphs


def _address_token(text: str, *, anchored: bool) -> str | None:
    """The address that ends ``text``: ``user@host``, ``<user@host>``, ``user@host.`` ...

    Gives what ``<?([^\\s<>;:"]+@[^\\s<>;:"]+?)>?[.,]?$`` captures (``search``, or ``match``
    when ``anchored``) in linear time, for text without a trailing newline (callers strip it):
    the address is the run of characters other than whitespace and ``<>;:"`` that ends the text
    (before a closing ``>`` and one ``.`` or ``,`` after it, or before one trailing ``.`` or
    ``,`` that the address can spare); it holds an ``@`` with something on each side.
    """
    closed = text.endswith((">", ">.", ">,"))
    core = text[: text.rfind(">")] if closed else text
    if not core or core[-1].isspace():
        return None
    word = core.rsplit(None, 1)[-1]
    run = word[max(word.rfind(c) for c in _NOT_IN_ADDRESS) + 1 :]
    if anchored and len(core) - len(run) != (1 if text.startswith("<") else 0):
        return None
    at = run.rfind("@", 1, len(run) - 1)
    if at < 0:
        return None
    if not closed and run[-1] in ".," and at <= len(run) - 3:
        return run[:-1]
    return run


def _bracketed(text: str) -> tuple[str, str] | None:
    """``<user@host>rest`` → ``(user@host, rest)``: no whitespace in the address, ``@`` inside."""
    if not text.startswith("<"):
        return None
    close = text.find(">")
    address = text[1:close] if close > 0 else ""
    if "@" not in address[1:-1] or address.split() != [address]:
        return None
    return address, text[close + 1 :]


def _postfix_paragraph(paragraph: str) -> tuple[str, str] | None:
    """``<rcpt> (comment): text`` → ``(rcpt, text)``, Postfix's paragraph for one recipient."""
    found = _bracketed(paragraph)
    if found is None:
        return None
    address, rest = found
    if rest.startswith(" ("):
        comment_end = rest.find(")", 2)
        if comment_end < 0:
            return None
        rest = rest[comment_end + 1 :]
    if len(rest) < 2 or rest[0] != ":" or not rest[1].isspace():
        return None
    return address, rest[2:]


def _qmail_block(block: str) -> tuple[str, str] | None:
    """``<rcpt>:``, then on the next line qmail's details → ``(rcpt, details)``."""
    found = _bracketed(block.lstrip())
    if found is None or not found[1].startswith(":"):
        return None
    address, rest = found[0], found[1][1:]
    newline = rest[: len(rest) - len(rest.lstrip())].rfind("\n")
    if newline < 0:
        return None
    return address, rest[newline + 1 :]


@dataclass(frozen=True)
class DsnRecipient:
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


def _squash(text: str | None) -> str | None:
    if text is None:
        return None
    squashed = " ".join(str(text).split())
    return squashed or None


def _typed(value: str | None) -> tuple[str | None, str | None]:
    """``"rfc822; a@b"`` → ``("rfc822", "a@b")``; no type → ``(None, value)``."""
    text = _squash(value)
    if text is None:
        return None, None
    kind, sep, rest = text.partition(";")
    if not sep or not _TYPE.match(kind.strip()):
        return None, text
    return kind.strip().lower() or None, rest.strip() or None


def _rfc822(value: str | None) -> str | None:
    kind, address = _typed(value)
    if address is None or (kind is not None and kind != "rfc822"):
        return None
    return _address_token(address, anchored=False)


def _smtp_code(diagnostic: str | None) -> int | None:
    if not diagnostic:
        return None
    match = _CODE.search(diagnostic[:40])
    return int(match.group(1)) if match else None


def _status(value: str | None) -> tuple[str | None, str | None]:
    text = _squash(value)
    if text is None:
        return None, None
    match = _STATUS.search(text)
    comment = None
    if "(" in text:
        comment = text.partition("(")[2].rstrip()
        comment = (comment[:-1] if comment.endswith(")") else comment).strip()
    return (match.group(1) if match else None), (comment or None)


def _command(text: str | None) -> str | None:
    if not text:
        return None
    match = _IN_REPLY.search(text)
    if match is None:
        return None
    words = " ".join(match.group(1).split()).upper()
    return "DATA" if "DATA" in words else words


def _postfix_commands(parts: list[str]) -> dict[str, str]:
    """Per-recipient SMTP command from Postfix's human-readable notification."""
    commands: dict[str, str] = {}
    for text in parts:
        for paragraph in _paragraphs(text):
            found = _postfix_paragraph(paragraph.strip())
            if found:
                command = _command(found[1])
                if command:
                    commands[found[0].lower()] = command
    return commands


def _body_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, errors="replace")
        except LookupError:
            return payload.decode("utf-8", errors="replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _status_blocks(part: email.message.Message) -> list[email.message.Message]:
    payload = part.get_payload()
    if isinstance(payload, list) and all(isinstance(p, email.message.Message) for p in payload):
        return list(payload)
    text = _body_text(part).replace("\r\n", "\n")
    blocks = _paragraphs(text.strip())
    return [email.message_from_string(b + "\n\n", policy=email.policy.compat32) for b in blocks]


def _split_block(block: email.message.Message) -> list[email.message.Message]:
    """A paragraph holding several recipients' fields (no blank line between them, as AOL writes
    them) → one block per recipient: a new one starts at a Final- or Original-Recipient field
    that the current block already has."""
    if len(block.get_all("Final-Recipient") or []) < 2:
        return [block]
    pieces: list[email.message.Message] = []
    current: email.message.Message | None = None
    for name, value in block.items():
        starts = name.lower() in ("final-recipient", "original-recipient")
        if current is None or (starts and current.get(name) is not None):
            current = email.message.Message()
            pieces.append(current)
        current[name] = value
    return pieces


def _from_delivery_status(
    message: email.message.Message, status_parts: list[email.message.Message]
) -> DsnReport:
    texts = [
        _body_text(p)
        for p in message.walk()
        if p.get_content_type() == "text/plain" and not p.is_multipart()
    ]
    commands = _postfix_commands(texts)
    recipients: list[DsnRecipient] = []
    reporting_mta = envelope_id = None
    for part in status_parts:
        blocks = _status_blocks(part)
        if not blocks:
            continue
        head, rest = blocks[0], blocks[1:]
        if head.get("Action") is not None or head.get("Final-Recipient") is not None:
            head, rest = email.message.Message(), blocks
        reporting_mta = reporting_mta or _typed(head.get("Reporting-MTA"))[1]
        envelope_id = envelope_id or _squash(head.get("Original-Envelope-Id"))
        for block in [piece for paragraph in rest for piece in _split_block(paragraph)]:
            action = (_squash(block.get("Action")) or "").split(" ")[0].lower()
            if not action and block.get("Final-Recipient") is None:
                continue
            final = _rfc822(block.get("Final-Recipient"))
            original = _rfc822(block.get("Original-Recipient"))
            status, comment = _status(block.get("Status"))
            diag_type, diagnostic = _typed(block.get("Diagnostic-Code"))
            address = (original or final or "").lower()
            recipients.append(
                DsnRecipient(
                    final_recipient=final,
                    original_recipient=original,
                    action=action,
                    status=status,
                    diagnostic_type=diag_type,
                    diagnostic=diagnostic or comment,
                    smtp_code=_smtp_code(diagnostic) if diag_type in (None, "smtp") else None,
                    smtp_command=commands.get(address) or commands.get((final or "").lower()),
                    remote_mta=_typed(block.get("Remote-MTA"))[1],
                )
            )
    return DsnReport(
        format="rfc3464",
        recipients=tuple(recipients),
        reporting_mta=reporting_mta,
        original_envelope_id=envelope_id,
        returned_headers=_returned(message),
    )


def _returned(message: email.message.Message) -> email.message.Message | None:
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                inner = payload[0]
                return inner if isinstance(inner, email.message.Message) else None
        if kind in ("text/rfc822-headers", "message/rfc822-headers"):
            return email.message_from_string(_body_text(part), policy=email.policy.compat32)
    return None


_EXIM_START = re.compile(r"following address(?:\(es\))? failed:\s*\n", re.I)
_EXIM_COPY = re.compile(r"^-+ This is a copy of (?:the|your) message.*$", re.M | re.I)
_QMAIL_START = re.compile(r"This is the qmail-send program", re.I)
_QMAIL_COPY = re.compile(r"^--- Below this line is a copy of the message\.?$", re.M)


def _text_recipient(address: str, diagnostic: str, command: str | None) -> DsnRecipient:
    diagnostic = _squash(diagnostic) or ""
    reply = _REPLY.search(diagnostic)
    text = diagnostic[reply.end() - 3 :] if reply else diagnostic
    status = _STATUS.search(diagnostic)
    return DsnRecipient(
        final_recipient=address,
        original_recipient=None,
        action="failed",
        status=status.group(1) if status else "5.0.0",
        diagnostic_type="smtp" if reply else None,
        diagnostic=text or None,
        smtp_code=_smtp_code(text) if reply else None,
        smtp_command=command,
        remote_mta=None,
    )


def _copy_headers(text: str, separator: re.Pattern[str]) -> email.message.Message | None:
    match = separator.search(text)
    if match is None:
        return None
    return email.message_from_string(text[match.end() :].lstrip("\n"), policy=email.policy.compat32)


def _from_exim(text: str) -> DsnReport | None:
    start = _EXIM_START.search(text)
    if start is None:
        return None
    copy = _EXIM_COPY.search(text, start.end())
    section = text[start.end() : copy.start() if copy else len(text)]
    recipients: list[DsnRecipient] = []
    current: str | None = None
    lines: list[str] = []
    for line in [*section.splitlines(), ""]:
        indent = len(line) - len(line.lstrip(" "))
        address = _address_token(line.strip(), anchored=True) if 0 < indent <= 2 else None
        if address or (not line.strip() and current and lines):
            if current is not None:
                detail = " ".join(lines)
                after = _EXIM_AFTER.search(detail)
                command = None if after is None else after.group(1).upper()
                command = "DATA" if command and "DATA" in command else command
                recipients.append(_text_recipient(current, detail, command))
            current, lines = address, []
        elif current is not None and line.strip():
            lines.append(line.strip())
    return DsnReport("exim", tuple(recipients), returned_headers=_copy_headers(text, _EXIM_COPY))


def _from_qmail(text: str) -> DsnReport | None:
    start = _QMAIL_START.search(text)
    if start is None:
        return None
    copy = _QMAIL_COPY.search(text, start.end())
    section = text[start.end() : copy.start() if copy else len(text)]
    recipients = []
    for block in _paragraphs(section):
        found = _qmail_block(block)
        if found is None:
            continue
        address, detail = found
        status = _QMAIL_STATUS.search(detail)
        progress = _QMAIL_PROGRESS.search(detail)
        command = progress.group(1).upper() if progress else None
        if "my name was rejected" in detail:  # the remote refused our HELO name
            command = "HELO"
        recipient = _text_recipient(address, detail, command)
        if status is not None:
            recipient = DsnRecipient(**{**recipient.__dict__, "status": status.group(1)})
        recipients.append(recipient)
    return DsnReport("qmail", tuple(recipients), returned_headers=_copy_headers(text, _QMAIL_COPY))


def _is_text(part: email.message.Message) -> bool:
    """A text part, or a multipart whose boundary never occurs (read as one text)."""
    kind = part.get_content_maintype()
    return kind == "text" or (kind == "multipart" and isinstance(part.get_payload(), str))


def _notification_parts(message: email.message.Message) -> str:
    """The text parts of ``message`` outside any attached message (the returned copy)."""
    texts: list[str] = []
    pending = [message]
    while pending:
        part = pending.pop(0)
        if part.get_content_maintype() == "message" and part is not message:
            continue
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            pending[0:0] = [p for p in payload if isinstance(p, email.message.Message)]
        elif _is_text(part):
            texts.append(_body_text(part))
    return "\n".join(texts).replace("\r\n", "\n")


def parse_report(raw: bytes) -> DsnReport:
    """Every recipient of the bounce, whatever its Action."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        status_parts = [
            p
            for p in message.walk()
            if p.get_content_type() in ("message/delivery-status", "text/delivery-status")
        ]
        if status_parts:
            report = _from_delivery_status(message, status_parts)
            if report.recipients and all(r.diagnostic for r in report.recipients):
                return report
            if report.recipients:
                from sendpost_platform.smtp import text_readers

                notes = text_readers.notification_text(_notification_parts(message))
                filled = text_readers.with_human_diagnostics(report.recipients, notes)
                return dataclasses.replace(report, recipients=filled)
        text = "\n".join(
            _body_text(p) for p in message.walk() if not p.is_multipart() and _is_text(p)
        ).replace("\r\n", "\n")
        for parser in (_from_exim, _from_qmail):
            found = parser(text)
            if found is not None and found.recipients:
                return found
        from sendpost_platform.smtp import text_readers

        notification = text_readers.notification_text(_notification_parts(message))
        returned = _returned(message) or text_readers.copied_message(text, notification)
        bounce = text_readers.Bounce(
            message=message, text=text, notification=notification, returned=returned
        )
        for name, reader in text_readers.READERS:
            recipients = reader(bounce)
            if recipients:
                return DsnReport(name, tuple(recipients), returned_headers=returned)
    except (ValueError, LookupError, TypeError, AttributeError, IndexError):
        pass
    return DsnReport("unknown", ())


def parse_dsn(raw: bytes) -> list[DsnRecipient]:
    """The terminal (``Action: failed``) recipients of a bounce; delayed warnings give none."""
    return [r for r in parse_report(raw).recipients if r.terminal]
