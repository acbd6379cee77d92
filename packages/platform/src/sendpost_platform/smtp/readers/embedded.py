"""RFC 3464 per-recipient fields written into a text part (Amazon WorkMail, some Sendmail and
Messaging Server notices).

**Detects** a ``Final-Recipient:`` or ``Original-Recipient:`` line in the notification.
**Extracts** each group of ``Final-Recipient``/``Original-Recipient``, ``Action``, ``Status``,
``Diagnostic-Code`` lines (a new group starts at a repeated Final-Recipient or Action, or at a
blank line after Action/Status).
"""

from __future__ import annotations

import dataclasses

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_NAMES = ("final-recipient", "original-recipient", "action", "status", "diagnostic-code")


def _field(line: str, name: str) -> str | None:
    if line[: len(name) + 1].lower() == name.lower() + ":":
        return line[len(name) + 1 :].strip()
    return None


class EmbeddedFields(Reader):
    name = "embedded-rfc3464"

    def detect(self, bounce: Bounce) -> bool:
        return "final-recipient:" in bounce.lowered or "original-recipient:" in bounce.lowered

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        records: list[DsnRecipient] = []
        fields: dict[str, str] = {}

        def flush() -> None:
            recipient = fields.get("final-recipient") or fields.get("original-recipient")
            if recipient:
                address = _text.clean_address(recipient.rpartition(";")[2].strip())
                if address:
                    diagnostic = fields.get("diagnostic-code", "").partition(";")
                    text = diagnostic[2].strip() if diagnostic[1] else diagnostic[0].strip()
                    found = record(address, text, fields.get("action", "failed").split(" ")[0])
                    status = _text.STATUS.search(fields.get("status", ""))
                    if status:
                        found = dataclasses.replace(found, status=status.group(1))
                    records.append(found)
            fields.clear()

        for line in bounce.lines:
            stripped = line.strip()
            for name in _NAMES:
                value = _field(stripped, name)
                if value is not None:
                    if name in fields and name in ("final-recipient", "action"):
                        flush()
                    fields[name] = value
                    break
            else:
                if not stripped and ("action" in fields or "status" in fields):
                    flush()
        flush()
        return [r for r in records if r.action][: _text.MAX_RECIPIENTS]
