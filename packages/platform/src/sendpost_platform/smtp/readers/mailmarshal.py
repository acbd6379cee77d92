"""Trustwave (Marshal) MailMarshal notices.

**Detects** a line ``Could not be delivered because of`` followed by ``The following recipients
were affected:``. **Extracts** the addresses listed after the latter (up to a blank line or
``Additional Information``) and, as their diagnostic, the lines between the two markers ("550
5.1.1 User unknown").
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_BECAUSE = "Could not be delivered because of"
_AFFECTED = "The following recipients were affected:"


def _markers(lines: list[str]) -> tuple[int, int] | None:
    because = _text.starts_with(lines, _BECAUSE)
    if because is None:
        return None
    affected = _text.starts_with(lines[because:], _AFFECTED)
    return None if affected is None else (because, because + affected)


class MailMarshal(Reader):
    name = "mailmarshal"

    def detect(self, bounce: Bounce) -> bool:
        return _AFFECTED.lower() in bounce.lowered and _markers(bounce.lines) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        found = _markers(lines)
        if found is None:
            return []
        because, affected = found
        reason = "\n".join(lines[because + 1 : affected][: _text.MAX_LINES])
        addresses: list[str] = []
        for line in lines[affected + 1 :]:
            stripped = line.strip()
            if (not stripped and addresses) or stripped.lower().startswith("additional info"):
                break
            addresses.extend(_text.addresses(stripped))
        return [record(a, reason) for a in addresses[: _text.MAX_RECIPIENTS]]
