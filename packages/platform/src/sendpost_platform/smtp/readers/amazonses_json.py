"""Amazon SES bounce notifications delivered as JSON (an SNS notification e-mailed as is).

**Detects** a text body that starts with ``{`` and holds ``"notificationType"`` or SNS's
``"Type" : "Notification"``. **Extracts**, from the JSON (SNS's ``Message`` is itself JSON),
each ``bounce.bouncedRecipients`` entry: ``emailAddress``, ``action``, ``status``,
``diagnosticCode`` (its reply code). A ``Transient`` bounce without an action is ``delayed``.

The body is parsed only up to :data:`MAX_JSON` characters (``json`` is linear in its input);
line breaks that mail transport inserted into long lines are removed first.
"""

from __future__ import annotations

import dataclasses
import json

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record, smtp_code

MAX_JSON = 512 * 1024
"""A JSON body longer than this is not read (an SES notification is a few KB)."""


def _loads(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _notification(body: str) -> dict[str, object] | None:
    """The SES notification: the body's JSON, or the JSON in its SNS ``Message`` field."""
    document = _loads(body)
    if not isinstance(document, dict):
        return None
    inner = document.get("Message")
    if isinstance(inner, str) and len(inner) <= MAX_JSON:
        document = _loads(inner)
    return document if isinstance(document, dict) else None


class AmazonSesJson(Reader):
    name = "amazonses-json"

    def detect(self, bounce: Bounce) -> bool:
        head = bounce.notification.lstrip()[:2000]
        return head.startswith("{") and ('"notificationType"' in head or '"Type"' in head)

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        body = bounce.notification.strip()
        if len(body) > MAX_JSON:
            return []
        notification = _notification(body.replace("\n", ""))
        if notification is None or notification.get("notificationType") != "Bounce":
            return []
        details = notification.get("bounce")
        if not isinstance(details, dict):
            return []
        transient = details.get("bounceType") == "Transient"
        entries = details.get("bouncedRecipients")
        records: list[DsnRecipient] = []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or len(records) == _text.MAX_RECIPIENTS:
                continue
            address = _text.clean_address(str(entry.get("emailAddress") or ""))
            if address is None:
                continue
            diagnostic = str(entry.get("diagnosticCode") or "").partition(";")
            text = (diagnostic[2] if diagnostic[1] else diagnostic[0]).strip()
            action = str(entry.get("action") or ("delayed" if transient else "failed"))
            found = record(address, text, action.lower())
            status = _text.STATUS.search(str(entry.get("status") or ""))
            code = smtp_code(text)
            found = dataclasses.replace(
                found,
                status=status.group(1) if status else found.status,
                smtp_code=code if code is not None else found.smtp_code,
            )
            records.append(found)
        return records
