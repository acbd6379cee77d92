"""Postfix's notices without a delivery-status part (old Postfix, or the report part lost), and
the Postfix SMTP server's "errors from" transcripts.

**Detects** a line starting ``This is the Postfix program at host`` or ``This is the mail system
at host``, or a Subject ``Postfix SMTP server: errors from`` with ``Transcript of session
follows.``. **Extracts** each ``<rcpt>: reason`` paragraph (the remote reply, and the command
from "(in reply to RCPT TO command)"); for a transcript, each ``In: RCPT TO:<rcpt>`` with the
last error reply (``Out: 4xx/5xx``) of the session and the ``In:`` command it answered.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record
from sendpost_platform.smtp.readers.rfc3464 import postfix_command, postfix_paragraph

_OPENINGS = ("This is the Postfix program at host", "This is the mail system at host")
_TRANSCRIPT = "Transcript of session follows."
_VERBS = (("rcpt", "RCPT TO"), ("mail", "MAIL FROM"), ("data", "DATA"), ("ehlo", "EHLO"))


def _paragraph_records(lines: list[str]) -> list[DsnRecipient]:
    records: list[DsnRecipient] = []
    for paragraph in _text.paragraphs("\n".join(lines)):
        found = postfix_paragraph(paragraph.strip())
        if found is not None and len(records) < _text.MAX_RECIPIENTS:
            address, reason = found
            records.append(record(address, reason, command=postfix_command(reason)))
    return records


def _transcript_records(lines: list[str]) -> list[DsnRecipient]:
    start = _text.starts_with(lines, _TRANSCRIPT)
    if start is None:
        return []
    addresses: list[str] = []
    command: str | None = None
    error: tuple[str, str | None] | None = None
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("In:"):
            said = stripped[3:].strip()
            verb = said[:4].lower()
            command = next((c for p, c in _VERBS if verb.startswith(p)), None)
            if command == "RCPT TO" and len(addresses) < _text.MAX_RECIPIENTS:
                addresses.extend(_text.addresses(said[8:])[:1])
        elif stripped.startswith("Out:"):
            reply = stripped[4:].strip()
            if reply[:1] in ("4", "5"):
                error = (reply, command)
    if error is None:
        return []
    return [record(a, error[0], command=error[1]) for a in addresses]


class PostfixText(Reader):
    name = "postfix-text"

    def detect(self, bounce: Bounce) -> bool:
        if any(bounce.find_line(o) is not None for o in _OPENINGS):
            return True
        return "postfix smtp server: errors from" in bounce.subject

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        return _paragraph_records(bounce.lines) or _transcript_records(bounce.lines)
