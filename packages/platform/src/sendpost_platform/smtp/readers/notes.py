"""Lotus Notes (Lotus SMTP MTA) notices.

**Detects** a line starting ``------- Failure Reasons``. **Extracts** every address of the lines
after it (up to the returned message) and, as its diagnostic, the non-address lines of that
section written before it since the previous address (Notes puts the reason above the
address: "User not listed in public Name & Address Book"). No reply code or status is given.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "------- Failure Reasons"


class Notes(Reader):
    name = "notes"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        start = _text.starts_with(lines, _START)
        if start is None:
            return []
        records: list[DsnRecipient] = []
        reason: list[str] = []
        for line in lines[start + 1 :]:
            if line.strip().startswith("-------"):
                break
            addresses = _text.addresses(line)
            if not addresses:
                if line.strip():
                    reason = [*reason[-_text.MAX_LINES + 1 :], line]
                continue
            for address in addresses:
                if len(records) < _text.MAX_RECIPIENTS:
                    records.append(record(address, "\n".join([*reason, line])))
            reason = []
        return records
