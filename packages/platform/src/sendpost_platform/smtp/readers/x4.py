"""An unnamed qmail-based MTA (Sisimai's "X4"): "Your mail message to the following
address(es) could not be delivered."

**Detects** a line starting ``Your mail message to the following address(es) could not be
delivered``. **Extracts** each ``<rcpt>:`` line after it and, as its diagnostic, the lines that
follow up to a blank line ("child status 100...The e-mail message could not be delivered because
the user's mailfolder is full.").
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "Your mail message to the following address(es) could not be delivered"


class X4(Reader):
    name = "x4"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        start = bounce.find_line(_START)
        if start is None:
            return []
        blocks = _text.address_blocks(bounce.lines[start + 1 :])
        return [record(address, "\n".join(details)) for address, details in blocks]
