"""Exim's plain-text bounces and delay warnings.

**Detects** a line ending ``address(es) failed:`` (also ``address failed:``, ``addresses
failed:``, and those words wrapped over two lines: ``The following`` / ``address(es) failed:``),
or a delay warning's ``... has not yet been delivered is:`` / ``... are:``. **Extracts** each
address line after it (indented one or two spaces; ``<a@b>``, ``a@b``, ``a@b:``, ``<a@b>:
reply`` as MXLogic writes it, or a bare local part completed from the returned copy's
``Received: ... for``) and the indented lines after
it: the remote reply after ``host ...:`` or ``said:`` (reply code, status), the command from
``after RCPT TO``/``MAIL FROM``/``end of data``. The section ends at ``------ This is a copy of
the message``, whose headers are the returned copy. A delay warning's records are ``delayed``.
"""

from __future__ import annotations

import dataclasses
import email.message
import email.policy
import re

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import (
    Bounce,
    DsnRecipient,
    DsnReport,
    Reader,
    reply_record,
)
from sendpost_platform.smtp.readers.notification import received_for

_COPY = re.compile(r"^-+ This is a copy of (?:the|your) message.*$", re.M | re.I)
_AFTER = re.compile(r"after (RCPT TO|MAIL FROM|end of data|DATA)", re.I)
_FAILED_ENDS = ("address(es) failed:", "addresses failed:", "address failed:")
_DELAYED_ENDS = ("not yet been delivered is:", "not yet been delivered are:")


def copy_headers(text: str, separator: re.Pattern[str]) -> email.message.Message | None:
    """The returned copy that follows ``separator``'s line in ``text``."""
    match = separator.search(text)
    if match is None:
        return None
    return email.message_from_string(text[match.end() :].lstrip("\n"), policy=email.policy.compat32)


def _start(lines: list[str]) -> tuple[int, str] | None:
    """The index of the line that opens the address list, and the records' action."""
    for number, line in enumerate(lines):
        lowered = line.strip().lower()
        if lowered.endswith(_FAILED_ENDS) and "follow" in lowered + (
            lines[number - 1].lower() if number else ""
        ):
            return number, "failed"
        if lowered.endswith(_DELAYED_ENDS):
            return number, "delayed"
    return None


def _address_line(line: str) -> tuple[str, str] | None:
    """An address line, indented one or two spaces: the address alone (``a@b``, ``<a@b>``,
    ``a@b:``), ``<a@b>: reply`` (MXLogic) or a bare local part (returned as is, without ``@``);
    with what follows the address on the line."""
    if not line.startswith(" ") or line.startswith("   "):  # indented by one or two spaces
        return None
    stripped = line.strip()
    head = _text.bracketed(stripped)
    if head is not None and head[1].startswith(": "):
        return head[0], head[1][2:].strip()
    address = _text.address_token(stripped.removesuffix(":"), anchored=True)
    if address is None and stripped.split() == [stripped] and stripped.isascii():
        local = stripped.removesuffix(":")
        if local and all(c.isalnum() or c in "._+-=" for c in local):
            return local, ""
    return None if address is None else (address, "")


def _completed(
    address: str, detail: str, command: str | None, action: str, copy_for: str | None
) -> DsnRecipient:
    if "@" not in address:
        # A local part: the returned copy's "Received: ... for <rcpt>" names the domain.
        address = copy_for if copy_for and copy_for.split("@")[0] == address.lower() else ""
    recipient = reply_record(address, detail, command)
    status = recipient.status
    if action == "delayed" and status == "5.0.0" and not _text.STATUS.search(detail):
        status = "4.0.0"  # a warning: the default status of a failure does not apply
    return dataclasses.replace(
        recipient, final_recipient=address or None, action=action, status=status
    )


class Exim(Reader):
    name = "exim"

    def detect(self, bounce: Bounce) -> bool:
        if "failed:" not in bounce.text and "not yet been delivered" not in bounce.text:
            return False
        return _start(bounce.text.split("\n")) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.text.split("\n")
        opening = _start(lines)
        if opening is None:
            return []
        start, action = opening
        section: list[str] = []
        for line in lines[start + 1 :]:
            if _COPY.match(line):
                break
            section.append(line)
        found: list[tuple[str, str, str | None]] = []
        current: str | None = None
        details: list[str] = []
        for line in [*section, ""]:
            found_line = _address_line(line)
            address = found_line[0] if found_line else None
            if address or (not line.strip() and current and details):
                if current is not None and len(found) < _text.MAX_RECIPIENTS:
                    detail = " ".join(details)
                    after = _AFTER.search(detail)
                    command = None if after is None else after.group(1).upper()
                    command = "DATA" if command and "DATA" in command else command
                    found.append((current, detail, command))
                current = address
                # MXLogic writes the reply on the address line: it is the remote's reply.
                details = [f"said: {found_line[1]}"] if found_line and found_line[1] else []
            elif current is not None and line.strip():
                details.append(line.strip())
        copy_for = None
        if any("@" not in address for address, _, _ in found):
            copy_for = received_for(copy_headers(bounce.text, _COPY))
        recipients = [_completed(*entry, action, copy_for) for entry in found]
        return [r for r in recipients if r.final_recipient]

    def report(self, bounce: Bounce) -> DsnReport:
        return DsnReport(
            self.name,
            tuple(self.extract(bounce)),
            returned_headers=copy_headers(bounce.text, _COPY),
        )
