"""DragonFly Mail Agent (dma)'s notice.

**Detects** ``DragonFly Mail Agent`` before ``There was an error delivering your mail to``.
**Extracts** the address after that phrase and the remote reply that follows, up to
``Message headers follow.``; the command from "final DATA" or "RCPT TO".
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_MARKER = "There was an error delivering your mail to "


class DragonFly(Reader):
    name = "dragonfly"

    def detect(self, bounce: Bounce) -> bool:
        start = bounce.notification.find(_MARKER)
        return start >= 0 and "DragonFly Mail Agent" in bounce.notification[:start]

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        start = bounce.notification.find(_MARKER)
        rest = bounce.notification[start + len(_MARKER) :]
        line, _, after = rest.partition("\n")
        address = _text.clean_address(line.strip())
        if address is None:
            return []
        command = None
        if "final DATA" in after[:300]:
            command = "DATA"
        elif "RCPT TO" in after[:300]:
            command = "RCPT TO"
        return [record(address, after, command=command)]
