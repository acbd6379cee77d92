"""Ipswitch IMail Server notices.

**Detects** a line ``Original message follows.`` or ``Body of message generated response:``
with a line that starts with one of IMail's reasons naming the recipient (``Unknown user:
rcpt``, ``Invalid final delivery userid: rcpt``, ``undeliverable to rcpt``). **Extracts** each
such line's address and, as its diagnostic, that line and the lines after it ("Body of message
generated response:" and the remote reply) up to the next reason or the returned copy.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_REASONS = ("unknown user:", "invalid final delivery userid:", "undeliverable to ")
_END = "original message follows"


def _reason(line: str) -> str | None:
    lowered = line.strip().lower()
    for reason in _REASONS:
        if lowered.startswith(reason):
            found = _text.addresses(line.strip()[len(reason) :])
            return found[0] if found else None
    return None


class IMailServer(Reader):
    name = "imailserver"

    def detect(self, bounce: Bounce) -> bool:
        text = bounce.text.lower()
        if _END not in text and "body of message generated response:" not in text:
            return False
        return any(_reason(line) for line in bounce.lines)

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        found: list[tuple[str, list[str]]] = []
        for line in bounce.lines:
            if line.strip().lower().startswith(_END):
                break
            address = _reason(line)
            if address is not None and len(found) < _text.MAX_RECIPIENTS:
                found.append((address, [line]))
            elif found and line.strip() and len(found[-1][1]) < _text.MAX_LINES:
                found[-1][1].append(line)
        return [record(address, "\n".join(lines)) for address, lines in found]
