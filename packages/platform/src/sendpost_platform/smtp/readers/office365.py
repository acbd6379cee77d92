"""Exchange Online / Office 365 notices without a delivery-status part.

**Detects** the line ``Delivery has failed to these recipients or groups:``. **Extracts** the
addresses listed after it (``rcpt<mailto:rcpt>``, up to a blank line) and, as their diagnostic,
the ``Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; ...'`` lines of the
administrators' part, then the explanation paragraph ("The email address wasn't found at the
destination domain").
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "Delivery has failed to these recipients or groups:"
_REMOTE = "Remote Server returned"


class Office365(Reader):
    name = "office365"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        start = _text.starts_with(lines, _START)
        if start is None:
            return []
        addresses: list[str] = []
        explanation: list[str] = []
        for line in lines[start + 1 :]:
            stripped = line.strip()
            found = _text.addresses(stripped) if not explanation else []
            if found:
                for address in found:
                    if address not in addresses and len(addresses) < _text.MAX_RECIPIENTS:
                        addresses.append(address)
            elif stripped and addresses and len(explanation) < _text.MAX_LINES:
                explanation.append(stripped)
            elif not stripped and explanation:
                break
        remote: list[str] = []
        at = _text.starts_with(lines, _REMOTE)
        if at is not None:
            for line in lines[at : at + 4]:
                if not line.strip():
                    break
                remote.append(line.strip())
        diagnostic = "\n".join([*remote, *explanation])
        return [record(a, diagnostic) for a in addresses[: _text.MAX_RECIPIENTS]]
