"""An unnamed MTA (Sisimai's "X3"): "This is an automatically generated Delivery Status
Notification." in plain text.

**Detects** a line starting ``Delivery to the following recipients failed`` (also spelt
``Delevery``) after that opening. **Extracts** each ``* rcpt`` line and, as its diagnostic, the
text after ``Technical details:`` ("SMTP:RCPT host 192.0.2.8: 553 5.3.0 ... No such user
here"); the command from ``SMTP:RCPT``/``SMTP:MAIL``/``SMTP:DATA``.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_OPENING = "This is an automatically generated Delivery Status Notification"
_STARTS = ("Delivery to the following recipients failed", "Delevery to the following recipients")
_COMMANDS = {"smtp:rcpt": "RCPT TO", "smtp:mail": "MAIL FROM", "smtp:data": "DATA"}


def _start(lines: list[str]) -> int | None:
    opening = _text.starts_with(lines, _OPENING)
    if opening is None:
        return None
    for marker in _STARTS:
        found = _text.starts_with(lines[opening:], marker)
        if found is not None:
            return opening + found
    return None


class X3(Reader):
    name = "x3"

    def detect(self, bounce: Bounce) -> bool:
        return _OPENING.lower() in bounce.lowered and _start(bounce.lines) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        start = _start(lines)
        if start is None:
            return []
        addresses: list[str] = []
        details: list[str] = []
        for line in lines[start + 1 :]:
            stripped = line.strip()
            if stripped.startswith("* "):
                address = _text.clean_address(stripped[2:].strip())
                if address and len(addresses) < _text.MAX_RECIPIENTS:
                    addresses.append(address)
            elif stripped and len(details) < _text.MAX_LINES:
                details.append(stripped)
        text = "\n".join(details)
        lowered = text.lower()
        command = next((c for m, c in _COMMANDS.items() if m in lowered), None)
        return [record(address, text, command=command) for address in addresses]
