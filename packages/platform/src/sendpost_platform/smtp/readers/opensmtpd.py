"""OpenSMTPD's text notices (before it wrote RFC 3464 reports).

**Detects** the line ``the following list of recipients:`` (after "An error has occurred while
attempting to deliver a message for"). **Extracts** each following line ``rcpt: reason`` ("550
5.1.1 ...", "Domain does not exist", "Envelope expired") up to ``Below is a copy of the original
message:``.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "the following list of recipients:"
_END = "below is a copy of the original message"


class OpenSmtpd(Reader):
    name = "opensmtpd"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        start = _text.starts_with(lines, _START)
        if start is None:
            return []
        records: list[DsnRecipient] = []
        for line in lines[start + 1 :]:
            stripped = line.strip()
            if stripped.lower().startswith(_END) or len(records) == _text.MAX_RECIPIENTS:
                break
            head, colon, reason = stripped.partition(": ")
            address = _text.clean_address(head) if colon else None
            if address is not None:
                records.append(record(address, reason))
        return records
