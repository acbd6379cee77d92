"""MailFoundry notices.

**Detects** a line starting ``Unable to deliver message to:`` followed by ``Delivery failed for
the following reason:``. **Extracts** the address of the first line and, as its diagnostic, the
lines after the second up to a blank line ("Server ...[192.0.2.222] failed with: 550 <rcpt> No
such user here").
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_TO = "Unable to deliver message to:"
_REASON = "Delivery failed for the following reason:"


class MailFoundry(Reader):
    name = "mailfoundry"

    def detect(self, bounce: Bounce) -> bool:
        start = bounce.find_line(_TO)
        return start is not None and _text.starts_with(bounce.lines[start:], _REASON) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        records: list[DsnRecipient] = []
        for number, line in enumerate(lines):
            if not line.strip().startswith(_TO) or len(records) == _text.MAX_RECIPIENTS:
                continue
            addresses = _text.addresses(line.strip()[len(_TO) :])
            reason: list[str] = []
            for later in lines[number + 1 : number + 1 + _text.MAX_LINES]:
                if later.strip().startswith(_TO):
                    break
                if later.strip() and not later.strip().startswith(_REASON):
                    reason.append(later.strip())
            records.extend(record(a, "\n".join(reason)) for a in addresses[:1])
        return records
