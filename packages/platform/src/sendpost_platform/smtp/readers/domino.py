"""IBM (Lotus) Domino notices.

**Detects** a line ``was not delivered to:`` followed later by a line ``because:``.
**Extracts** the addresses between the two lines, and as their diagnostic the text after
``because:`` ("User ... not listed in Domino Directory"). The notice gives no reply code or
status; Domino's RFC 3464 reports (with ``X-Notes`` diagnostics) are read by the RFC 3464 reader.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "was not delivered to:"
_BECAUSE = "because:"


def _markers(lines: list[str]) -> tuple[int, int] | None:
    start = _text.starts_with(lines, _START)
    if start is None:
        return None
    because = _text.starts_with(lines[start + 1 :], _BECAUSE)
    return None if because is None else (start, start + 1 + because)


class Domino(Reader):
    name = "domino"

    def detect(self, bounce: Bounce) -> bool:
        return _START in bounce.lowered and _markers(bounce.lines) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        found = _markers(lines)
        if found is None:
            return []
        start, because = found
        addresses = [a for line in lines[start + 1 : because] for a in _text.addresses(line)][
            : _text.MAX_RECIPIENTS
        ]
        reason = "\n".join(lines[because + 1 : because + 1 + _text.MAX_LINES])
        return [record(address, reason) for address in addresses]
