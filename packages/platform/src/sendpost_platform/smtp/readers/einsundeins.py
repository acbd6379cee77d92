"""1&1 (IONOS, kundenserver.de) notices: Exim's wording with unindented addresses.

**Detects** a line ``For the following reason:`` after a line ending ``address failed:`` or
``addresses failed:``. **Extracts** the addresses between the two lines and, as their diagnostic,
the lines after ``For the following reason:`` up to a blank line.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_FAILED = ("address failed:", "addresses failed:", "address(es) failed:")
_REASON = "For the following reason:"


def _markers(lines: list[str]) -> tuple[int, int] | None:
    for number, line in enumerate(lines):
        if line.strip().lower().endswith(_FAILED):
            reason = _text.starts_with(lines[number + 1 : number + 2 + _text.MAX_LINES], _REASON)
            return None if reason is None else (number, number + 1 + reason)
    return None


class EinsUndEins(Reader):
    name = "einsundeins"

    def detect(self, bounce: Bounce) -> bool:
        return _REASON.lower() in bounce.lowered and _markers(bounce.lines) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        found = _markers(lines)
        if found is None:
            return []
        failed, reason_at = found
        addresses = [a for line in lines[failed + 1 : reason_at] for a in _text.addresses(line)]
        reason: list[str] = []
        for line in lines[reason_at + 1 : reason_at + 1 + _text.MAX_LINES]:
            if not line.strip():
                break
            reason.append(line.strip())
        return [record(a, "\n".join(reason)) for a in addresses[: _text.MAX_RECIPIENTS]]
