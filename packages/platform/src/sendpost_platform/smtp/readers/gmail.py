"""Gmail's and Google Groups' old text-only notices.

**Detects** a line starting ``Delivery to the following recipient`` (``failed permanently``, or
a delay: ``... has been delayed``). **Extracts** the addresses on their own lines after it, and
as their diagnostic the text after them (``Technical details of permanent failure:`` and the
remote reply). A delay marks the records ``delayed``.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "Delivery to the following recipient"


class GmailText(Reader):
    name = "gmail-text"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        number = _text.starts_with(lines, _START)
        if number is None:
            return []
        action = "failed" if "failed" in lines[number] else "delayed"
        rest = lines[number + 1 :]
        addresses: list[str] = []
        details_from = len(rest)
        for index, candidate in enumerate(rest):
            if not candidate.strip():
                if addresses:
                    details_from = index
                    break
                continue
            address = _text.clean_address(candidate.strip())
            if address is None:
                details_from = index
                break
            if len(addresses) < _text.MAX_RECIPIENTS:
                addresses.append(address)
        details = "\n".join(rest[details_from:])
        return [record(address, details, action) for address in addresses]
