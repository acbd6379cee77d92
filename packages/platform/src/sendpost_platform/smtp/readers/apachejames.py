"""Apache James notices.

**Detects** a line ``Error message below:`` followed by ``Message details:``. **Extracts** the
addresses of the ``RCPT TO:`` lines of the message details and, as their diagnostic, the
``Error:`` line and the lines between the two markers ("550 - Requested action not taken: no
such user here").
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_BELOW = "Error message below:"
_DETAILS = "Message details:"


def _markers(lines: list[str]) -> tuple[int, int] | None:
    below = _text.starts_with(lines, _BELOW)
    if below is None:
        return None
    details = _text.starts_with(lines[below:], _DETAILS)
    return None if details is None else (below, below + details)


class ApacheJames(Reader):
    name = "apachejames"

    def detect(self, bounce: Bounce) -> bool:
        return _BELOW.lower() in bounce.lowered and _markers(bounce.lines) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        found = _markers(lines)
        if found is None:
            return []
        below, details = found
        errors = [line.strip() for line in lines[:below] if line.strip().startswith("Error:")]
        reason = "\n".join([*errors[-1:], *lines[below + 1 : details][: _text.MAX_LINES]])
        addresses: list[str] = []
        for line in lines[details + 1 :]:
            stripped = line.strip()
            if stripped.upper().startswith("RCPT TO:"):
                addresses.extend(_text.addresses(stripped[8:]))
        return [record(a, reason) for a in addresses[: _text.MAX_RECIPIENTS]]
