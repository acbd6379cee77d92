"""au by KDDI's EZweb mail notices (``Postmaster@ezweb.ne.jp``, "Mail System Error - Returned
Mail").

**Detects** that sender and Subject. **Extracts** each address the notification lists (alone as
``<rcpt>``, or after ``Recipient:``) and, as its diagnostic, the notification's lines that name no
address ("The user(s) account is disabled.", "Remote host is not responding.") with the ``>>>``
and ``<<<`` transcript lines written under the recipient; the command is the last ``>>>`` one.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record

_COMMANDS = (("rcpt", "RCPT TO"), ("mail", "MAIL FROM"), ("data", "DATA"))


def _listed(line: str) -> str | None:
    stripped = line.strip()
    if stripped.lower().startswith("recipient:"):
        stripped = stripped[10:].strip()
    head = _text.bracketed(stripped)
    return head[0] if head is not None and not head[1].strip() else None


class EzWeb(Reader):
    name = "ezweb"

    def detect(self, bounce: Bounce) -> bool:
        return "@ezweb.ne.jp" in bounce.sender and "mail system error" in bounce.subject

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        reasons: list[str] = []
        found: list[tuple[str, list[str], str | None]] = []
        for line in bounce.lines:
            stripped = line.strip()
            address = _listed(line)
            if address is not None:
                if len(found) < _text.MAX_RECIPIENTS:
                    found.append((address, [], None))
            elif found and stripped.startswith((">>>", "<<<")):
                address, transcript, command = found[-1]
                if stripped.startswith(">>>"):
                    verb = stripped[3:].strip().lower()
                    command = next((c for p, c in _COMMANDS if verb.startswith(p)), command)
                elif len(transcript) < _text.MAX_LINES:
                    transcript.append(stripped[3:].strip())
                found[-1] = (address, transcript, command)
            elif stripped and "@" not in stripped and len(reasons) < _text.MAX_LINES:
                reasons.append(stripped)
        return [
            record(address, "\n".join([*transcript, *reasons]), command=command)
            for address, transcript, command in found
        ]
