"""RFC 3464 delivery status notifications: ``message/delivery-status`` parts.

**Detects** a ``message/delivery-status`` part anywhere in the MIME tree (also when mislabelled
``text/delivery-status``). **Extracts** per recipient: Final-/Original-Recipient (rfc822
addresses only), Action, Status (a trailing comment is kept as text), Diagnostic-Code (its reply
code when the type is smtp), Remote-MTA. The SMTP command comes from Postfix's human-readable
part (``<rcpt>: host ... said: ... (in reply to RCPT TO command)``) when present. A paragraph
holding several recipients without blank lines between them (AOL) is split per recipient; a
block without Diagnostic-Code takes the human-readable line that names its address
("<rcpt>: Domain does not exist").
"""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.policy
import re

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import (
    Bounce,
    DsnRecipient,
    DsnReport,
    Reader,
    attached_message,
    body_text,
    smtp_code,
)

_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9.+-]*$")
_IN_REPLY = re.compile(r"in reply to (.{1,30}?) command", re.I | re.S)


def _squash(text: str | None) -> str | None:
    if text is None:
        return None
    return _text.squash(str(text)) or None


def _typed(value: str | None) -> tuple[str | None, str | None]:
    """``"rfc822; a@b"`` → ``("rfc822", "a@b")``; no type → ``(None, value)``."""
    text = _squash(value)
    if text is None:
        return None, None
    kind, sep, rest = text.partition(";")
    if not sep or not _TYPE.match(kind.strip()):
        return None, text
    return kind.strip().lower() or None, rest.strip() or None


def _quoted_local(address: str) -> str | None:
    """``"local part"@domain`` (RFC 5321 quoted string, no whitespace) as written."""
    close = address.find('"@', 1)
    if not address.startswith('"') or close < 0:
        return None
    whole = address.split(None, 1)[0].rstrip(">.,")
    domain = whole[close + 2 :]
    if len(whole) <= close + 2 or any(c in '<>"@' for c in domain):
        return None
    return whole


def _rfc822(value: str | None) -> str | None:
    kind, address = _typed(value)
    if address is None or (kind is not None and kind != "rfc822"):
        return None
    return _quoted_local(address.lstrip("<")) or _text.address_token(address, anchored=False)


def _status(value: str | None) -> tuple[str | None, str | None]:
    text = _squash(value)
    if text is None:
        return None, None
    match = _text.STATUS.search(text)
    comment = None
    if "(" in text:
        comment = text.partition("(")[2].rstrip()
        comment = (comment[:-1] if comment.endswith(")") else comment).strip()
    return (match.group(1) if match else None), (comment or None)


def postfix_paragraph(paragraph: str) -> tuple[str, str] | None:
    """``<rcpt> (comment): text`` → ``(rcpt, text)``, Postfix's paragraph for one recipient."""
    found = _text.bracketed(paragraph)
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


def postfix_command(text: str | None) -> str | None:
    """The command of Postfix's \"(in reply to RCPT TO command)\" (any DATA step is DATA)."""
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
        for paragraph in _text.paragraphs(text):
            found = postfix_paragraph(paragraph.strip())
            if found:
                command = postfix_command(found[1])
                if command:
                    commands[found[0].lower()] = command
    return commands


def _field_line(line: str) -> bool:
    """``Name: value`` with a field name of letters, digits and hyphens."""
    name, colon, _ = line.partition(":")
    return bool(colon and name and not name[0].isspace()) and all(
        c.isalnum() or c == "-" for c in name
    )


def _unfolded(text: str) -> str:
    """A block's text with every line that is no field and not indented made a continuation
    of the field before it: MessageLabs wraps a multi-line reply in Diagnostic-Code without
    indenting it, which would end the fields early."""
    lines = text.split("\n")
    return "\n".join(
        line
        if number == 0 or not line.strip() or line[0].isspace() or _field_line(line)
        else " " + line
        for number, line in enumerate(lines)
    )


def _block(text: str) -> email.message.Message:
    return email.message_from_string(_unfolded(text) + "\n\n", policy=email.policy.compat32)


def _repaired(block: email.message.Message) -> email.message.Message:
    """A block parsed by the email package whose fields ended early (a line that is no field
    started its "body"), parsed again with those lines as continuations."""
    body = block.get_payload()
    if not isinstance(body, str) or not body.strip():
        return block
    fields = "".join(f"{name}: {value}\n" for name, value in block.items())
    return _block(fields + body.replace("\r\n", "\n").strip("\n"))


def _status_blocks(part: email.message.Message) -> list[email.message.Message]:
    payload = part.get_payload()
    if isinstance(payload, list) and all(isinstance(p, email.message.Message) for p in payload):
        return [_repaired(block) for block in payload if isinstance(block, email.message.Message)]
    text = body_text(part).replace("\r\n", "\n")
    return [_block(b) for b in _text.paragraphs(text.strip())]


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


def with_human_diagnostics(recipients: list[DsnRecipient], notification: str) -> list[DsnRecipient]:
    """Blocks without a Diagnostic-Code get the line of the human-readable part that names
    their address ("<rcpt>: Domain does not exist", "wasn't delivered to <rcpt> because the
    address couldn't be found"), when there is one."""
    lines: dict[str, str] = {}
    for line in notification.split("\n"):
        if "@" in line:
            for address in _text.addresses(line):
                lines.setdefault(address.lower(), line)
    filled = []
    for recipient in recipients:
        named = lines.get((recipient.address or "").lower()) or lines.get(
            (recipient.final_recipient or "").lower()
        )
        if recipient.diagnostic or named is None:
            filled.append(recipient)
        else:
            diagnostic = _text.squash(named[: 4 * _text.MAX_DIAGNOSTIC])[: _text.MAX_DIAGNOSTIC]
            filled.append(dataclasses.replace(recipient, diagnostic=diagnostic))
    return filled


def _named_by_header(recipients: list[DsnRecipient], failed: list[str]) -> list[DsnRecipient]:
    """Blocks whose recipient fields hold no address (Exim's pipe or file deliveries,
    ``rfc822;|/usr/bin/prog ...``) take the ``X-Failed-Recipients`` addresses that no block
    names, in order, when there are as many of each."""
    nameless = [n for n, r in enumerate(recipients) if r.address is None and r.terminal]
    if not nameless or not failed:
        return recipients
    named = {(r.address or "").lower() for r in recipients}
    unclaimed = [a for a in failed if a.lower() not in named]
    if len(unclaimed) != len(nameless):
        return recipients
    filled = list(recipients)
    for number, address in zip(nameless, unclaimed, strict=True):
        filled[number] = dataclasses.replace(filled[number], final_recipient=address)
    return filled


class Rfc3464(Reader):
    name = "rfc3464"

    def detect(self, bounce: Bounce) -> bool:
        return bool(bounce.status_parts)

    def _read(self, bounce: Bounce) -> tuple[list[DsnRecipient], str | None, str | None]:
        texts = [
            body_text(p)
            for p in bounce.message.walk()
            if p.get_content_type() == "text/plain" and not p.is_multipart()
        ]
        commands = _postfix_commands(texts)
        recipients: list[DsnRecipient] = []
        reporting_mta = envelope_id = None
        for part in bounce.status_parts:
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
                        smtp_code=smtp_code(diagnostic) if diag_type in (None, "smtp") else None,
                        smtp_command=commands.get(address) or commands.get((final or "").lower()),
                        remote_mta=_typed(block.get("Remote-MTA"))[1],
                    )
                )
        recipients = _named_by_header(recipients, bounce.failed_recipients)
        if recipients and not all(r.diagnostic for r in recipients):
            recipients = with_human_diagnostics(recipients, bounce.notification)
        return recipients, reporting_mta, envelope_id

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        return self._read(bounce)[0]

    def report(self, bounce: Bounce) -> DsnReport:
        recipients, reporting_mta, envelope_id = self._read(bounce)
        return DsnReport(
            format=self.name,
            recipients=tuple(recipients),
            reporting_mta=reporting_mta,
            original_envelope_id=envelope_id,
            returned_headers=attached_message(bounce.message),
        )
