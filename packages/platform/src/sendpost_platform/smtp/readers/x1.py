"""An unnamed MTA (Sisimai's "X1", Mail2000): "---The following addresses had delivery
errors---".

**Detects** a line starting ``---The following addresses had delivery errors``. **Extracts**
each following line ``rcpt [reason]`` up to a blank line or a MIME boundary.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "---The following addresses had delivery errors"


class X1(Reader):
    name = "x1"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        start = bounce.find_line(_START)
        if start is None:
            return []
        records: list[DsnRecipient] = []
        for line in bounce.lines[start + 1 :]:
            stripped = line.strip()
            if not stripped or stripped.startswith("--"):
                if records:
                    break
                continue
            address, _, reason = stripped.partition(" ")
            found = _text.clean_address(address)
            if found and len(records) < _text.MAX_RECIPIENTS:
                records.append(record(found, reason))
        return records
