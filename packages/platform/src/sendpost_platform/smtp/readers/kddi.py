"""KDDI (au one net, dion.ne.jp) notices.

**Detects** a line starting ``Could not be delivered to:`` after ``Your mail sent on:``.
**Extracts** the address of each such line and, as its diagnostic, the indented lines after it
("As their mailbox is full.") and the Japanese explanation before ``Your mail sent on:``.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_SENT = "Your mail sent on:"
_MARKER = "Could not be delivered to:"


class Kddi(Reader):
    name = "kddi"

    def detect(self, bounce: Bounce) -> bool:
        sent = bounce.find_line(_SENT)
        return sent is not None and _text.starts_with(bounce.lines[sent:], _MARKER) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        sent = _text.starts_with(lines, _SENT)
        if sent is None:
            return []
        found: list[tuple[str, list[str]]] = []
        for line in lines[sent + 1 :]:
            stripped = line.strip()
            if stripped.startswith(_MARKER):
                addresses = _text.addresses(stripped[len(_MARKER) :])
                if addresses and len(found) < _text.MAX_RECIPIENTS:
                    found.append((addresses[0], []))
            elif found and stripped and len(found[-1][1]) < _text.MAX_LINES:
                found[-1][1].append(stripped)
        return [record(address, "\n".join(reason)) for address, reason in found]
