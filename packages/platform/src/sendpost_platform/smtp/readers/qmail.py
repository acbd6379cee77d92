"""qmail's plain-text bounces (qmail-send; also qmail-based providers).

**Detects** ``This is the qmail-send program`` in the text. **Extracts** each ``<address>:``
paragraph: the remote reply after ``said:`` (reply code), the status from ``(#5.1.1)``, the
command from ``most progress was RCPT TO`` (HELO when "my name was rejected"). The section ends
at ``--- Below this line is a copy of the message.``, whose headers are the returned copy.
"""

from __future__ import annotations

import dataclasses
import re

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import (
    Bounce,
    DsnRecipient,
    DsnReport,
    Reader,
    reply_record,
)
from sendpost_platform.smtp.readers.exim import copy_headers

_START = re.compile(r"This is the qmail-send program", re.I)
_COPY = re.compile(r"^--- Below this line is a copy of the message\.?$", re.M)
_STATUS = re.compile(r"\(#([245]\.\d{1,3}\.\d{1,3})\)")
_PROGRESS = re.compile(r"most progress was (RCPT TO|MAIL FROM|DATA)", re.I)


def qmail_block(block: str) -> tuple[str, str] | None:
    """``<rcpt>:``, then on the next line qmail's details → ``(rcpt, details)``."""
    found = _text.bracketed(block.lstrip())
    if found is None or not found[1].startswith(":"):
        return None
    address, rest = found[0], found[1][1:]
    newline = rest[: len(rest) - len(rest.lstrip())].rfind("\n")
    if newline < 0:
        return None
    return address, rest[newline + 1 :]


class Qmail(Reader):
    name = "qmail"

    def detect(self, bounce: Bounce) -> bool:
        return _START.search(bounce.text) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        text = bounce.text
        start = _START.search(text)
        if start is None:
            return []
        copy = _COPY.search(text, start.end())
        section = text[start.end() : copy.start() if copy else len(text)]
        recipients = []
        for block in _text.paragraphs(section):
            found = qmail_block(block)
            if found is None:
                continue
            address, detail = found
            status = _STATUS.search(detail)
            progress = _PROGRESS.search(detail)
            command = progress.group(1).upper() if progress else None
            if "my name was rejected" in detail:  # the remote refused our HELO name
                command = "HELO"
            recipient = reply_record(address, detail, command)
            if status is not None:
                recipient = dataclasses.replace(recipient, status=status.group(1))
            recipients.append(recipient)
        return recipients

    def report(self, bounce: Bounce) -> DsnReport:
        return DsnReport(
            self.name,
            tuple(self.extract(bounce)),
            returned_headers=copy_headers(bounce.text, _COPY),
        )
