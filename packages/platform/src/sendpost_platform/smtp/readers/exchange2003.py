"""Microsoft Exchange 5.5/2000/2003 (Internet Mail Service) notices.

**Detects** the line ``did not reach the following recipient(s):`` in the notification.
**Extracts** each line after it that starts (unindented) with an address (``rcpt on <date>``)
and, as its diagnostic, the lines that follow up to the next recipient or a blank line: the
reason ("The recipient name is not recognized") and the ``MSEXCH:IMS:...`` code line. The notice
gives no reply code or status.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "did not reach the following recipient"


def _recipient_line(line: str) -> str | None:
    """``rcpt on <date>`` or ``rcpt`` alone at the start of an unindented line."""
    if not line or line[0].isspace():
        return None
    words = line.split(None, 2)
    if len(words) > 1 and words[1].lower() != "on":
        return None
    return _text.clean_address(words[0])


class Exchange2003(Reader):
    name = "exchange2003"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        start = _text.starts_with(lines, _START)
        if start is None:
            return []
        found = _text.address_blocks(lines[start + 1 :], _recipient_line, strip=False)
        return [record(address, "\n".join(reason)) for address, reason in found]
