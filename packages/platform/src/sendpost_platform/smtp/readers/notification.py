"""The last resort: any message that announces itself as a bounce.

**Detects** a bounce by its sender (``MAILER-DAEMON``, ``postmaster``, ``Mail Delivery``...), its
Subject (undeliverable, failure, returned...) or its opening text ("could not be delivered"); a
feedback report (``report-type=feedback-report``) is never one. **Extracts** every address of
the notification text (before the returned copy) other than the bounce's and the returned
message's senders, each with the line naming it as its diagnostic (and the line before and the
lines after it when that line holds no reply); when the text names none, the returned message's
``To:`` (or its ``Received: ... for``) with the whole notification. A Subject saying
delayed/warning marks the records ``delayed`` (not stored).
"""

from __future__ import annotations

import email.message
import email.utils

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_BOUNCE_SENDERS = ("mailer-daemon", "postmaster", "mail delivery", "mdaemon", "mailerdaemon")
_BOUNCE_SUBJECTS = (
    "undeliver",
    "deliver",
    "failure",
    "failed",
    "returned",
    "rejected",
    "could not",
    "bounce",
    "error",
    "not be sent",
    "unable to",
)
_BOUNCE_PHRASES = (
    "could not be delivered",
    "undeliverable",
    "delivery failed",
    "delivery has failed",
    "permanent error",
    "unable to deliver",
    "not be delivered",
)
_DELAY_SUBJECTS = ("delay", "warning:", "delivery status notification (delay)")


def header_address(message: email.message.Message | None, name: str) -> str | None:
    """The address of header ``name`` of ``message``, lower-case."""
    if message is None:
        return None
    value = message.get(name)
    if value is None:
        return None
    address = email.utils.parseaddr(str(value))[1]
    return address.lower() if "@" in address else None


def own_addresses(bounce: Bounce) -> set[str]:
    """Addresses a bounce names that are not a failed recipient: its own From and To, the
    returned message's From, Return-Path and Sender."""
    return {
        a
        for a in (
            header_address(bounce.message, "From"),
            header_address(bounce.message, "To"),
            header_address(bounce.returned, "From"),
            header_address(bounce.returned, "Return-Path"),
            header_address(bounce.returned, "Sender"),
        )
        if a
    }


def is_bounce(bounce: Bounce) -> bool:
    """The message says it is a bounce (sender, Subject or opening), and is no feedback report."""
    if bounce.message.get_content_type() == "multipart/report":
        kind = str(bounce.message.get_param("report-type") or "").lower()
        if kind == "feedback-report":
            return False
    if any(s in bounce.sender for s in _BOUNCE_SENDERS):
        return True
    if any(s in bounce.subject for s in _BOUNCE_SUBJECTS):
        return True
    opening = bounce.notification[:5000].lower()
    return any(phrase in opening for phrase in _BOUNCE_PHRASES)


def received_for(message: email.message.Message | None) -> str | None:
    """The address of the first ``Received: ... for <rcpt>;`` clause of the returned copy."""
    if message is None:
        return None
    for received in message.get_all("Received") or []:
        words = str(received).split()
        for number, word in enumerate(words[:-1]):
            if word.lower() == "for":
                address = _text.clean_address(words[number + 1])
                if address:
                    return address.lower()
    return None


def returned_recipient(bounce: Bounce) -> str | None:
    """The returned copy's ``To:``, else its ``Received: ... for`` address."""
    return header_address(bounce.returned, "To") or received_for(bounce.returned)


def delay_action(bounce: Bounce) -> str:
    """``delayed`` when the Subject says delayed/warning, else ``failed``."""
    return "delayed" if any(s in bounce.subject for s in _DELAY_SUBJECTS) else "failed"


class Notification(Reader):
    name = "notification"

    def detect(self, bounce: Bounce) -> bool:
        return is_bounce(bounce)

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        action = delay_action(bounce)
        lines = bounce.lines
        named: list[tuple[str, int]] = []
        seen = own_addresses(bounce)
        naming: set[int] = set()
        for number, line in enumerate(lines):
            for address in _text.addresses(line):
                naming.add(number)
                if address.lower() not in seen and len(named) < _text.MAX_RECIPIENTS:
                    seen.add(address.lower())
                    named.append((address, number))
        records: list[DsnRecipient] = []
        address_lines = {n for _, n in named}
        for address, number in named:
            line = lines[number]
            diagnostic = [line]
            rest = line[: 4 * _text.MAX_DIAGNOSTIC].replace(address, " ")
            if not _text.REPLY_CODE.search(rest) and sum(c.isalpha() for c in rest) < 25:
                # The line only names the address: the reason is around it. Lotus Notes writes
                # it on the line before; most others after.
                before = lines[number - 1] if number > 0 and number - 1 not in naming else ""
                diagnostic.insert(0, before[: 4 * _text.MAX_DIAGNOSTIC])
                for later in range(number + 1, min(len(lines), number + 1 + _text.MAX_LINES)):
                    if later in address_lines:
                        break
                    diagnostic.append(lines[later])
            records.append(record(address, "\n".join(diagnostic), action))
        if records:
            return records
        to = returned_recipient(bounce)
        if to is None:
            return []
        return [record(to, bounce.notification, action)]
