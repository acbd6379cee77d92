"""Verizon Wireless MMS gateway (vzwpix.com) notices.

**Detects** the line ``Message could not be delivered to mobile.``. **Extracts** the ``To:``
addresses of the ``Original Message:`` quoted below it and, as their diagnostic, the ``Error:``
line ("No valid recipients for this MM").
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "Message could not be delivered to mobile"
_ORIGINAL = "Original Message:"


class Verizon(Reader):
    name = "verizon"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.text.split("\n")
        start = _text.starts_with(lines, _START)
        if start is None:
            return []
        errors: list[str] = []
        addresses: list[str] = []
        original = False
        for line in lines[start:]:
            stripped = line.strip()
            if stripped.startswith(_ORIGINAL):
                original = True
            elif not original and stripped.lower().startswith("error:"):
                errors.append(stripped)
            elif original and stripped.lower().startswith("to:"):
                addresses = _text.addresses(stripped[3:])
                break
            elif original and not stripped:
                break
        return [record(a, "\n".join(errors[: _text.MAX_LINES])) for a in addresses[:1]]
