"""Trend Micro InterScan Messaging Security Suite notices.

**Detects** "InterScan" in the sender or a line starting ``****** Message from InterScan``.
**Extracts** each ``Sent <<< RCPT TO:<rcpt>`` line with the ``Received >>>`` reply after it
(command RCPT TO), else each ``Unable to deliver message to <rcpt>`` line with its text.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_SENT = "sent <<< rcpt to:"
_RECEIVED = "received >>>"
_UNABLE = "unable to deliver message to"


class TrendMicro(Reader):
    name = "trendmicro"

    def detect(self, bounce: Bounce) -> bool:
        if "interscan" in bounce.sender:
            return True
        return bounce.find_line("****** Message from InterScan") is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        records: list[DsnRecipient] = []
        for number, line in enumerate(lines):
            stripped = line.strip()
            lowered = stripped.lower()
            if len(records) == _text.MAX_RECIPIENTS:
                break
            if lowered.startswith(_SENT):
                addresses = _text.addresses(stripped[len(_SENT) :])
                reply = lines[number + 1].strip() if number + 1 < len(lines) else ""
                if reply.lower().startswith(_RECEIVED):
                    reply = reply[len(_RECEIVED) :].strip()
                records.extend(record(a, reply, command="RCPT TO") for a in addresses[:1])
            elif _UNABLE in lowered:
                after = stripped[lowered.find(_UNABLE) + len(_UNABLE) :]
                records.extend(record(a, stripped) for a in _text.addresses(after)[:1])
        return records
