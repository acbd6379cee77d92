"""fml (a mailing-list manager) refusals: the sender is not a member of the list.

**Detects** a line starting ``You are not a member of this mailing list``. **Extracts** the
list's address on that line (the address the message was sent to) with the line as its
diagnostic: a policy refusal, not a wrong address.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_START = "You are not a member of this mailing list"


class Fml(Reader):
    name = "fml"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_START) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        start = bounce.find_line(_START)
        if start is None:
            return []
        line = bounce.lines[start].strip()
        return [record(a, line) for a in _text.addresses(line)[:1]]
