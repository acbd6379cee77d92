"""Google Groups' refusals (the group does not exist or the sender may not post to it).

**Detects** an ``X-Failed-Recipients`` header on a notice whose text points at Google Groups
("Google Groups", ``groups.google.com``). **Extracts** the addresses of ``X-Failed-Recipients``
(the group), each with the notification text as its diagnostic; the notice has no reply code or
status (the refusal is the group's policy, not a wrong address).
"""

from __future__ import annotations

from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record


class GoogleGroups(Reader):
    name = "googlegroups"

    def detect(self, bounce: Bounce) -> bool:
        if bounce.message.get("X-Failed-Recipients") is None:
            return False
        text = bounce.notification[:20000].lower()
        return "google groups" in text or "groups.google.com" in text

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        return [record(a, bounce.notification) for a in bounce.failed_recipients]
