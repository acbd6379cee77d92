"""An unnamed MTA (Sisimai's "X6"): "We had trouble delivering your message."

**Detects** a line starting ``The following recipients returned permanent errors:``.
**Extracts** the address after that phrase and, as its diagnostic, the text after ``Reason:``
("SMTP Server <...> refused to accept your message (DATA), with the following error message:
[554 5.4.6 Hop count exceeded - possible mail loop]"); the parenthesised step gives the command.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "The following recipients returned permanent errors:"
_COMMANDS = {"(rcpt to)": "RCPT TO", "(mail from)": "MAIL FROM", "(data)": "DATA"}


class X6(Reader):
    name = "x6"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        records: list[DsnRecipient] = []
        for line in bounce.lines:
            stripped = line.strip()
            if not stripped.startswith(_START) or len(records) == _text.MAX_RECIPIENTS:
                continue
            named, _, reason = stripped[len(_START) :].partition("Reason:")
            addresses = _text.addresses(named)
            lowered = reason.lower()
            command = next((c for m, c in _COMMANDS.items() if m in lowered), None)
            records.extend(record(a, reason, command=command) for a in addresses[:1])
        return records
