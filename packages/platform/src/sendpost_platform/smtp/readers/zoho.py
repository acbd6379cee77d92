"""Zoho Mail notices.

**Detects** a line of the notification that starts with an address and holds ``ERROR_CODE :``.
**Extracts** each such line (with the line after it when the reason wraps): the address, the
reply code of the first ``ERROR_CODE :NNN``, the status and reason text after it.
"""

from __future__ import annotations

import dataclasses

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_MARKER = "ERROR_CODE :"


def _recipient(line: str) -> str | None:
    if _MARKER not in line:
        return None
    return _text.clean_address(line.strip().split(" ", 1)[0])


def _code(line: str) -> int | None:
    value = line.partition(_MARKER)[2][:3]
    return int(value) if value.isdigit() and value[0] in "245" else None


class Zoho(Reader):
    name = "zoho"

    def detect(self, bounce: Bounce) -> bool:
        return _MARKER in bounce.notification and any(_recipient(line) for line in bounce.lines)

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = bounce.lines
        records: list[DsnRecipient] = []
        for number, line in enumerate(lines):
            address = _recipient(line)
            if address is None or len(records) == _text.MAX_RECIPIENTS:
                continue
            following = lines[number + 1] if number + 1 < len(lines) else ""
            reason = line.strip()[len(address) :]
            if following.strip() and _recipient(following) is None:
                reason += " " + following.strip()
            found = record(address, reason)
            code = _code(line)
            if code is not None:
                found = dataclasses.replace(found, smtp_code=code, diagnostic_type="smtp")
            records.append(found)
        return records
