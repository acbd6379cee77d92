"""Yahoo's "Failure Notice" (a qmail-derived text bounce).

**Detects** a line starting ``Sorry, we were unable to deliver your message to the following
address``. **Extracts** each ``<address>:`` line after it and, as its diagnostic, the lines that
follow up to a blank line ("Remote host said: 550 5.1.1 ... User Unknown [RCPT_TO]"); the
bracketed step at the end gives the command (``[RCPT_TO]``, ``[MAIL_FROM]``, ``[DATA]``).
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "Sorry, we were unable to deliver your message to the following address"
_COMMANDS = {
    "[rcpt_to]": "RCPT TO",
    "[mail_from]": "MAIL FROM",
    "[data]": "DATA",
    "[body]": "DATA",
    "[helo]": "HELO",
    "[ehlo]": "EHLO",
}


def bracketed_command(text: str) -> str | None:
    """The command of a bracketed step (``[RCPT_TO]``...) in ``text``."""
    lowered = text.lower()
    for marker, command in _COMMANDS.items():
        if marker in lowered:
            return command
    return None


class Yahoo(Reader):
    name = "yahoo"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        start = _text.starts_with(lines, _START)
        if start is None:
            return []
        found = _text.address_blocks(lines[start + 1 :])
        records = []
        for address, details in found:
            text = "\n".join(details)
            records.append(record(address, text, command=bracketed_command(text)))
        return records
