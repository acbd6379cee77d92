"""GMX and mail.com notices (Exim-derived, addresses quoted and unindented).

**Detects** a line ``"rcpt":`` after the Exim wording wrapped as ``... The following address`` /
``failed:``. **Extracts** each ``"rcpt":`` line and, as its diagnostic, the lines after it up to
the next recipient or a blank line ("SMTP error from remote server after RCPT command:", "host:
...", "5.2.2 <rcpt>... Mailbox Full"); the command from "after RCPT/MAIL/DATA command".
"""

from __future__ import annotations

import re

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_AFTER = re.compile(r"after (RCPT|MAIL|DATA)\b", re.I)
_COMMANDS = {"RCPT": "RCPT TO", "MAIL": "MAIL FROM", "DATA": "DATA"}


def _quoted_address(line: str) -> str | None:
    """``"rcpt":`` → ``rcpt``."""
    stripped = line.strip()
    if not (stripped.startswith('"') and stripped.endswith('":')):
        return None
    return _text.clean_address(stripped[1:-2])


def _start(lines: list[str]) -> int | None:
    for number, line in enumerate(lines[1:], 1):
        if line.strip().lower() == "failed:" and lines[number - 1].rstrip().lower().endswith(
            ("address", "addresses", "address(es)")
        ):
            return number
    return None


class Gmx(Reader):
    name = "gmx"

    def detect(self, bounce: Bounce) -> bool:
        if '":' not in bounce.notification or "failed:" not in bounce.lowered:
            return False
        start = _start(bounce.lines)
        return start is not None and any(
            _quoted_address(line) for line in bounce.lines[start + 1 : start + 4]
        )

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        start = _start(lines)
        if start is None:
            return []
        found = _text.address_blocks(lines[start + 1 :], _quoted_address)
        records = []
        for address, details in found:
            text = "\n".join(details)
            after = _AFTER.search(text)
            command = _COMMANDS[after.group(1).upper()] if after else None
            records.append(record(address, text, command=command))
        return records
