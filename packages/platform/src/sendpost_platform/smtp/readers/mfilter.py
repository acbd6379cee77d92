"""m-FILTER (Digital Arts) notices.

**Detects** the line ``-------server message`` in the notification. **Extracts** the addresses
listed before it and, as their diagnostic, the lines between it and ``-------SMTP command``
(the remote reply); the command is the line after ``-------SMTP command`` (``DATA``, ``RCPT TO``).
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record
from sendpost_platform.smtp.readers.notification import own_addresses

_SERVER = "-------server message"
_COMMAND = "-------smtp command"
_COMMANDS = (("rcpt", "RCPT TO"), ("mail", "MAIL FROM"), ("data", "DATA"), ("helo", "HELO"))


class MFilter(Reader):
    name = "mfilter"

    def detect(self, bounce: Bounce) -> bool:
        return bounce.find_line(_SERVER) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        server = _text.starts_with(lines, _SERVER)
        if server is None:
            return []
        addresses = [a for line in lines[:server] for a in _text.addresses(line.strip())]
        own = own_addresses(bounce)
        addresses = [a for a in addresses if a.lower() not in own]
        reply: list[str] = []
        command = None
        for number, line in enumerate(lines[server + 1 :], server + 1):
            stripped = line.strip()
            if stripped.lower().startswith(_COMMAND):
                verb = lines[number + 1].strip().lower() if number + 1 < len(lines) else ""
                command = next((c for p, c in _COMMANDS if verb.startswith(p)), None)
                break
            if stripped.startswith("-------"):
                break
            if stripped and len(reply) < _text.MAX_LINES:
                reply.append(stripped)
        text = "\n".join(reply)
        return [record(a, text, command=command) for a in addresses[: _text.MAX_RECIPIENTS]]
