"""An unnamed qmail-derived MTA (Sisimai's "X2"): "Message from example.co.jp."

**Detects** the line ``Unable to deliver message to the following address(es).``. **Extracts**
each ``<rcpt>:`` line after it and, as its diagnostic, the lines that follow up to a blank line
or ``--- Original message follows.``.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "Unable to deliver message to the following address(es)"


class X2(Reader):
    name = "x2"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        start = bounce.find_line(_START)
        if start is None:
            return []
        blocks = _text.address_blocks(bounce.lines[start + 1 :])
        return [record(address, "\n".join(details)) for address, details in blocks]
