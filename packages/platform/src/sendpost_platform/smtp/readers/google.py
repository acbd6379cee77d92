"""Gmail's own notices without a delivery-status part ("** Message not delivered **",
"** Address not found **").

**Detects** an ``X-Failed-Recipients`` header on a message from ``mailer-daemon@googlemail.com``
(or ``@google.com``). **Extracts** the addresses of ``X-Failed-Recipients`` and, as their
diagnostic, the notification text (the explanation and "The response was: ...").
"""

from __future__ import annotations

from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record


class Google(Reader):
    name = "google"

    def detect(self, bounce: Bounce) -> bool:
        if bounce.message.get("X-Failed-Recipients") is None:
            return False
        return "mailer-daemon@googlemail.com" in bounce.sender or (
            "mailer-daemon@google.com" in bounce.sender
        )

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        return [record(a, bounce.notification) for a in bounce.failed_recipients]
