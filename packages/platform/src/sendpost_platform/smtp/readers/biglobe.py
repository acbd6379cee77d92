"""BIGLOBE notices.

**Detects** a line starting ``----- The following addresses had delivery problems -----``.
**Extracts** the addresses listed after it and, as their diagnostic, the text after ``-----
Non-delivered information -----``.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "----- The following addresses had delivery problems -----"
_INFO = "----- Non-delivered information -----"


class Biglobe(Reader):
    name = "biglobe"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        start = _text.starts_with(lines, _START)
        if start is None:
            return []
        addresses: list[str] = []
        reason: list[str] = []
        in_info = False
        for line in lines[start + 1 :]:
            stripped = line.strip()
            if stripped.startswith(_INFO):
                in_info = True
            elif in_info and stripped and len(reason) < _text.MAX_LINES:
                reason.append(stripped)
            elif not in_info:
                addresses.extend(_text.addresses(stripped))
        return [record(a, "\n".join(reason)) for a in addresses[: _text.MAX_RECIPIENTS]]
