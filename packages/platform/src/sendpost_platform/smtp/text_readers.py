"""Readers for bounces that carry no ``message/delivery-status`` part (issue 14).

Each reader takes a :class:`Bounce` (the parsed message, its text, the notification part of the
text and the returned message) and gives the per-recipient records it finds, or an empty list
when the format is not its own. ``dsn.parse_report`` tries them in :data:`READERS` order after
RFC 3464 and the Exim and qmail readers of ``dsn.py``; the first that finds a recipient wins.

1. :func:`embedded_fields` — RFC 3464 fields pasted into a text part (``Final-Recipient:``,
   ``Action:``, ``Status:``, ``Diagnostic-Code:``), as Amazon WorkMail and others write them.
2. :func:`dragonfly` — DragonFly Mail Agent: ``There was an error delivering your mail to
   <rcpt>.``, then the remote reply, up to ``Message headers follow.``
3. :func:`gmail_text` — Gmail's and Google Groups' old text notices: ``Delivery to the following
   recipient failed permanently:`` and the address on its own line, ``Technical details of
   permanent failure:`` then the reply.
4. :func:`notification_addresses` — the last resort for a message that announces itself as a
   bounce (sender ``MAILER-DAEMON``/``postmaster`` or a Subject about a failed delivery): every
   address in the notification text (before the returned copy) other than the bounce's and the
   returned message's senders is a recipient, its diagnostic the line naming it (and the lines
   after it when that line holds no reply); when the text names none, the returned message's
   ``To:`` is the recipient and the whole notification its diagnostic. A Subject saying
   delayed/warning marks the records ``delayed`` (not stored). Sendmail V5 transcripts, Exchange
   2003, Zoho, Domino, IMail, X1–X6, Google Groups, ezweb ... fall here.

Cost: every reader walks the text line by line with ``str`` methods; the few patterns have one
bounded or unbounded quantifier each, nothing that can backtrack over the text.
"""

from __future__ import annotations

import dataclasses
import email.message
import email.policy
import email.utils
import re
from collections.abc import Callable

from sendpost_platform.smtp.dsn import DsnRecipient

_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_REPLY_CODE = re.compile(r"(?:^|[\s:;(\[])([245]\d\d)(?=[\s-]|$)")
_MAX_DIAGNOSTIC = 1500
_MAX_LINES = 12
_MAX_RECIPIENTS = 100
"""A text reader keeps at most this many recipients (a platform message has one)."""

# Lines that start the returned copy of the message (compared lower-case, a line at a time).
_COPY_MARKERS = (
    "original message",
    "copy of the message",
    "copy of your message",
    "unsent message",
    "message headers follow",
    "header of the original message",
    "returned message",
    "original mail",
    "undelivered message",
    "headers of your message",
)
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster", "mail delivery", "mdaemon", "mailerdaemon")
_BOUNCE_SUBJECTS = (
    "undeliver",
    "deliver",
    "failure",
    "failed",
    "returned",
    "rejected",
    "could not",
    "bounce",
    "error",
    "not be sent",
    "unable to",
)
_BOUNCE_PHRASES = (
    "could not be delivered",
    "undeliverable",
    "delivery failed",
    "delivery has failed",
    "permanent error",
    "unable to deliver",
    "not be delivered",
)
_GMAIL_START = "Delivery to the following recipient"
_DELAY_SUBJECTS = ("delay", "warning:", "delivery status notification (delay)")


@dataclasses.dataclass(frozen=True)
class Bounce:
    """What the readers look at."""

    message: email.message.Message
    text: str
    """Every text part, CRLF turned to LF."""
    notification: str
    """The text parts outside the returned message, cut at the returned copy's separator."""
    returned: email.message.Message | None


Reader = Callable[[Bounce], list[DsnRecipient]]


def _separator(line: str) -> bool:
    """A short line that looks like it introduces something: ``--- ... ---``, ``... follows.``"""
    stripped = line.strip().lower()
    return len(stripped) < 100 and (
        stripped[:1] in ("-", "=", "*", "_", ">")
        or stripped.endswith(("follows", "follows.", "follow.", "follow", "below", "below:", ":"))
    )


def notification_text(text: str) -> str:
    """``text`` up to the first line that introduces the returned copy of the message."""
    kept: list[str] = []
    seen_text = False
    for line in text.split("\n"):
        lowered = line.lower()
        if seen_text and _separator(line) and any(m in lowered for m in _COPY_MARKERS):
            break
        seen_text = seen_text or bool(line.strip())
        kept.append(line)
    return "\n".join(kept)


def copied_message(text: str, notification: str) -> email.message.Message | None:
    """The returned copy written into the text after the notification (headers first), or None
    when the text has no copy or the copy starts with no header."""
    if not text.startswith(notification) or len(text) == len(notification):
        return None
    copy = text[len(notification) :].lstrip("\n")
    copy = copy[copy.find("\n") + 1 :].lstrip("\n")
    head = copy.split("\n", 1)[0]
    name = head.partition(":")[0]
    if not name or name != name.strip() or " " in name or ":" not in head:
        return None
    return email.message_from_string(copy, policy=email.policy.compat32)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _clean_address(token: str) -> str | None:
    """A token as an address: ``<a@b>``, ``"a@b":``, ``(a@b)``, ``To:<a@b>``... → ``a@b``."""
    start = token.rfind("<")
    if start >= 0:
        end = token.find(">", start)
        token = token[start + 1 : end if end > start else len(token)]
    token = token.strip("\"'()[]{},;:.!?")
    if token.lower().startswith("mailto:"):
        token = token[7:]
    at = token.rfind("@")
    if at <= 0 or at >= len(token) - 3 or token.count("@") != 1:
        return None
    domain = token[at + 1 :]
    if (
        "." not in domain
        or domain.startswith(".")
        or not all(c.isalnum() or c in ".-" for c in domain)
    ):
        return None
    if any(c.isspace() or c in '<>"(),;:[]' for c in token):
        return None
    return token


def _addresses(line: str) -> list[str]:
    found: list[str] = []
    for token in line.replace("<", " <").split():
        if "@" in token:
            address = _clean_address(token)
            if address:
                found.append(address)
    return found


def _record(address: str, diagnostic: str, action: str = "failed") -> DsnRecipient:
    text = _squash(diagnostic[: 4 * _MAX_DIAGNOSTIC])[:_MAX_DIAGNOSTIC]
    status = _STATUS.search(text)
    code = _REPLY_CODE.search(text[:200])
    lowered = text.lower()
    after_data = any(m in lowered for m in ("smtp command data", "after end of data"))
    return DsnRecipient(
        final_recipient=address,
        original_recipient=None,
        action=action,
        status=status.group(1) if status else None,
        diagnostic_type="smtp" if code else None,
        diagnostic=text or None,
        smtp_code=int(code.group(1)) if code else None,
        smtp_command="DATA" if after_data else None,
        remote_mta=None,
    )


def with_human_diagnostics(
    recipients: tuple[DsnRecipient, ...], notification: str
) -> tuple[DsnRecipient, ...]:
    """RFC 3464 blocks without a Diagnostic-Code get the line of the human-readable part that
    names their address ("<rcpt>: Domain does not exist", "wasn't delivered to <rcpt> because
    the address couldn't be found"), when there is one."""
    lines: dict[str, str] = {}
    for line in notification.split("\n"):
        if "@" in line:
            for address in _addresses(line):
                lines.setdefault(address.lower(), line)
    filled = []
    for recipient in recipients:
        named = lines.get((recipient.address or "").lower()) or lines.get(
            (recipient.final_recipient or "").lower()
        )
        if recipient.diagnostic or named is None:
            filled.append(recipient)
        else:
            diagnostic = _squash(named[: 4 * _MAX_DIAGNOSTIC])[:_MAX_DIAGNOSTIC]
            filled.append(dataclasses.replace(recipient, diagnostic=diagnostic))
    return tuple(filled)


def _header_address(message: email.message.Message | None, name: str) -> str | None:
    if message is None:
        return None
    value = message.get(name)
    if value is None:
        return None
    address = email.utils.parseaddr(str(value))[1]
    return address.lower() if "@" in address else None


def _field(line: str, name: str) -> str | None:
    if line[: len(name) + 1].lower() == name.lower() + ":":
        return line[len(name) + 1 :].strip()
    return None


def embedded_fields(bounce: Bounce) -> list[DsnRecipient]:
    """RFC 3464 per-recipient fields written into a text part."""
    records: list[DsnRecipient] = []
    fields: dict[str, str] = {}

    def flush() -> None:
        recipient = fields.get("final-recipient") or fields.get("original-recipient")
        if recipient:
            address = _clean_address(recipient.rpartition(";")[2].strip())
            if address:
                diagnostic = fields.get("diagnostic-code", "").partition(";")
                text = diagnostic[2].strip() if diagnostic[1] else diagnostic[0].strip()
                record = _record(address, text, fields.get("action", "failed").split(" ")[0])
                status = _STATUS.search(fields.get("status", ""))
                if status:
                    record = dataclasses.replace(record, status=status.group(1))
                records.append(record)
        fields.clear()

    names = ("final-recipient", "original-recipient", "action", "status", "diagnostic-code")
    for line in bounce.notification.split("\n"):
        stripped = line.strip()
        for name in names:
            value = _field(stripped, name)
            if value is not None:
                if name in fields and name in ("final-recipient", "action"):
                    flush()
                fields[name] = value
                break
        else:
            if not stripped and ("action" in fields or "status" in fields):
                flush()
    flush()
    return [r for r in records if r.action][:_MAX_RECIPIENTS]


def dragonfly(bounce: Bounce) -> list[DsnRecipient]:
    """DragonFly Mail Agent's notice."""
    marker = "There was an error delivering your mail to "
    start = bounce.notification.find(marker)
    if start < 0 or "DragonFly Mail Agent" not in bounce.notification[:start]:
        return []
    rest = bounce.notification[start + len(marker) :]
    line, _, after = rest.partition("\n")
    address = _clean_address(line.strip())
    if address is None:
        return []
    record = _record(address, after)
    if "final DATA" in after[:300]:
        record = dataclasses.replace(record, smtp_command="DATA")
    elif "RCPT TO" in after[:300]:
        record = dataclasses.replace(record, smtp_command="RCPT TO")
    return [record]


def gmail_text(bounce: Bounce) -> list[DsnRecipient]:
    """Gmail's old text-only notice (also Google Groups')."""
    lines = bounce.notification.split("\n")
    starts = [n for n, text in enumerate(lines) if text.strip().startswith(_GMAIL_START)]
    if not starts:
        return []
    number = starts[0]
    line = lines[number]
    action = "failed" if "failed" in line else "delayed"
    rest = lines[number + 1 :]
    addresses: list[str] = []
    details_from = len(rest)
    for index, candidate in enumerate(rest):
        if not candidate.strip():
            if addresses:
                details_from = index
                break
            continue
        address = _clean_address(candidate.strip())
        if address is None:
            details_from = index
            break
        if len(addresses) < _MAX_RECIPIENTS:
            addresses.append(address)
    details = "\n".join(rest[details_from:])
    return [_record(address, details, action) for address in addresses]


def _is_bounce(bounce: Bounce) -> bool:
    sender = str(bounce.message.get("From") or "").lower()
    subject = _squash(str(bounce.message.get("Subject") or "")).lower()
    if bounce.message.get_content_type() == "multipart/report":
        kind = (bounce.message.get_param("report-type") or "").__str__().lower()
        if kind == "feedback-report":
            return False
    if any(s in sender for s in _BOUNCE_SENDERS) or any(s in subject for s in _BOUNCE_SUBJECTS):
        return True
    opening = bounce.notification[:5000].lower()
    return any(phrase in opening for phrase in _BOUNCE_PHRASES)


def _received_for(message: email.message.Message | None) -> str | None:
    """The address of the first ``Received: ... for <rcpt>;`` clause of the returned copy."""
    if message is None:
        return None
    for received in message.get_all("Received") or []:
        words = str(received).split()
        for number, word in enumerate(words[:-1]):
            if word.lower() == "for":
                address = _clean_address(words[number + 1])
                if address:
                    return address.lower()
    return None


def notification_addresses(bounce: Bounce) -> list[DsnRecipient]:
    """The last resort: addresses named by a bounce's notification text (module docstring)."""
    if not _is_bounce(bounce):
        return []
    subject = _squash(str(bounce.message.get("Subject") or "")).lower()
    action = "delayed" if any(s in subject for s in _DELAY_SUBJECTS) else "failed"
    ignored = {
        a
        for a in (
            _header_address(bounce.message, "From"),
            _header_address(bounce.message, "To"),
            _header_address(bounce.returned, "From"),
            _header_address(bounce.returned, "Return-Path"),
            _header_address(bounce.returned, "Sender"),
        )
        if a
    }
    lines = bounce.notification.split("\n")
    named: list[tuple[str, int]] = []
    seen = set(ignored)
    naming: set[int] = set()
    for number, line in enumerate(lines):
        for address in _addresses(line):
            naming.add(number)
            if address.lower() not in seen and len(named) < _MAX_RECIPIENTS:
                seen.add(address.lower())
                named.append((address, number))
    records: list[DsnRecipient] = []
    address_lines = {n for _, n in named}
    for address, number in named:
        line = lines[number]
        diagnostic = [line]
        rest = line[: 4 * _MAX_DIAGNOSTIC].replace(address, " ")
        if not _REPLY_CODE.search(rest) and sum(c.isalpha() for c in rest) < 25:
            # The line only names the address: the reason is around it. Lotus Notes writes it
            # on the line before; most others after.
            before = lines[number - 1] if number > 0 and number - 1 not in naming else ""
            diagnostic.insert(0, before[: 4 * _MAX_DIAGNOSTIC])
            for later in range(number + 1, min(len(lines), number + 1 + _MAX_LINES)):
                if later in address_lines:
                    break
                diagnostic.append(lines[later])
        records.append(_record(address, "\n".join(diagnostic), action))
    if records:
        return records
    to = _header_address(bounce.returned, "To") or _received_for(bounce.returned)
    if to is None:
        return []
    return [_record(to, bounce.notification, action)]


READERS: tuple[tuple[str, Reader], ...] = (
    ("embedded-rfc3464", embedded_fields),
    ("dragonfly", dragonfly),
    ("gmail-text", gmail_text),
    ("notification", notification_addresses),
)
