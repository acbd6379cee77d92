"""Exim's plain-text bounces.

**Detects** ``The following address(es) failed:`` (also ``address failed:``) in the text.
**Extracts** each address line (indented one or two spaces; ``<a@b>``, ``a@b``, a trailing
colon) and the indented lines after it: the remote reply after ``host ...:`` or ``said:``
(reply code, status), the command from ``after RCPT TO``/``MAIL FROM``/``end of data``. The
section ends at ``------ This is a copy of the message``, whose headers are the returned copy.
"""

from __future__ import annotations

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

_START = re.compile(r"following address(?:\(es\))? failed:\s*\n", re.I)
_COPY = re.compile(r"^-+ This is a copy of (?:the|your) message.*$", re.M | re.I)
_AFTER = re.compile(r"after (RCPT TO|MAIL FROM|end of data|DATA)", re.I)


def copy_headers(text: str, separator: re.Pattern[str]) -> email.message.Message | None:
    """The returned copy that follows ``separator``'s line in ``text``."""
    match = separator.search(text)
    if match is None:
        return None
    return email.message_from_string(text[match.end() :].lstrip("\n"), policy=email.policy.compat32)


class Exim(Reader):
    name = "exim"

    def detect(self, bounce: Bounce) -> bool:
        return _START.search(bounce.text) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        text = bounce.text
        start = _START.search(text)
        if start is None:
            return []
        copy = _COPY.search(text, start.end())
        section = text[start.end() : copy.start() if copy else len(text)]
        recipients: list[DsnRecipient] = []
        current: str | None = None
        lines: list[str] = []
        for line in [*section.splitlines(), ""]:
            indent = len(line) - len(line.lstrip(" "))
            address = _text.address_token(line.strip(), anchored=True) if 0 < indent <= 2 else None
            if address or (not line.strip() and current and lines):
                if current is not None:
                    detail = " ".join(lines)
                    after = _AFTER.search(detail)
                    command = None if after is None else after.group(1).upper()
                    command = "DATA" if command and "DATA" in command else command
                    recipients.append(reply_record(current, detail, command))
                current, lines = address, []
            elif current is not None and line.strip():
                lines.append(line.strip())
        return recipients

    def report(self, bounce: Bounce) -> DsnReport:
        return DsnReport(
            self.name,
            tuple(self.extract(bounce)),
            returned_headers=copy_headers(bounce.text, _COPY),
        )
