"""Sendmail's text bounces without a delivery-status part (Sendmail V5, Sendmail 8 without DSN,
Active!hunter), also when forwarded with ``> `` quoting.

**Detects** the line ``----- Transcript of session follows -----`` or ``----- The following
addresses had permanent fatal errors -----``. **Extracts** from the transcript each line
``NNN [X.Y.Z] <address>... text`` (sendmail's verdict for one recipient) and, as its diagnostic,
the remote replies (``<<< ...``) and host lines (``NNN host (smtp)... text``) seen since the
previous verdict or ``While talking to ...:``, then the verdict itself; the command is the last
``>>>`` one in that stretch (``RCPT To:``, ``MAIL From:``; not ``DATA``: with PIPELINING the
RCPT replies come after it). When no verdict names a
recipient, the addresses listed under "permanent fatal errors" are the recipients, else the
returned copy's ``To:`` ("421 example.com (smtp)... Deferred" names only the host); their
diagnostic is the list's ``(reason: ...)`` lines and the transcript.
"""

from __future__ import annotations

from sendpost_platform.smtp.readers import text as _text
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, Reader, record
from sendpost_platform.smtp.readers.notification import returned_recipient

_TRANSCRIPT = "----- Transcript of session follows -----"
_FATAL = "----- The following addresses had permanent fatal errors -----"
_COMMANDS = (("rcpt", "RCPT TO"), ("mail", "MAIL FROM"), ("helo", "HELO"), ("ehlo", "EHLO"))
"""``>>> DATA`` gives no command: with PIPELINING the RCPT replies arrive after it
(docs/classification.md, policy 4)."""


def _unquoted(line: str, quoted: bool) -> str:
    """``line`` without one level of ``> `` quoting when the bounce was forwarded quoted."""
    if quoted and line.startswith(">"):
        return line[2:] if line.startswith("> ") else line[1:]
    return line


def _section(bounce: Bounce) -> list[str] | None:
    """The lines from the first marker on (unquoted), from the notification, else from the
    whole text when the bounce was forwarded with ``> `` quoting."""
    for lines, quoted in ((bounce.lines, False), (bounce.text.split("\n"), True)):
        for number, line in enumerate(lines):
            if quoted and not line.startswith(">"):
                continue
            if _unquoted(line, quoted).strip().startswith((_TRANSCRIPT, _FATAL)):
                return [_unquoted(rest, quoted) for rest in lines[number:]]
    return None


def _verdict(line: str) -> str | None:
    """``550 <rcpt>... User unknown`` or ``550 5.1.1 <rcpt>... User unknown`` → ``rcpt``."""
    code, _, rest = line.partition(" ")
    if len(code) != 3 or not code.isdigit() or code[0] not in "245":
        return None
    if _text.STATUS.match(rest):
        rest = rest.partition(" ")[2]
    head = _text.bracketed(rest)
    return head[0] if head is not None and head[1].startswith("...") else None


def _command(line: str) -> str | None:
    verb = line[3:].strip()[:4].lower()
    for prefix, command in _COMMANDS:
        if verb.startswith(prefix):
            return command
    return None


def _fatal_list(lines: list[str]) -> tuple[list[str], list[str]]:
    """The addresses listed under "permanent fatal errors" and the lines about them."""
    addresses: list[str] = []
    reasons: list[str] = []
    start = _text.starts_with(lines, _FATAL)
    if start is None:
        return addresses, reasons
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("-----"):
            break
        found = _text.addresses(stripped)
        if found and not stripped.startswith("("):
            if found[0] not in addresses and len(addresses) < _text.MAX_RECIPIENTS:
                addresses.append(found[0])
        elif stripped and len(reasons) < _text.MAX_LINES:
            reasons.append(stripped)
    return addresses[: _text.MAX_RECIPIENTS], reasons


class SendmailV5(Reader):
    name = "sendmail-v5"

    def detect(self, bounce: Bounce) -> bool:
        if _TRANSCRIPT not in bounce.text and _FATAL not in bounce.text:
            return False
        return _section(bounce) is not None

    def extract(self, bounce: Bounce) -> list[DsnRecipient]:
        lines = _section(bounce)
        if lines is None:
            return []
        records: list[DsnRecipient] = []
        pending: list[str] = []
        command: str | None = None
        transcript: list[str] = []
        start = _text.starts_with(lines, _TRANSCRIPT)
        for line in [] if start is None else lines[start + 1 :]:
            stripped = line.strip()
            if stripped.startswith("-----"):
                break
            if stripped and len(transcript) < _text.MAX_LINES:
                transcript.append(stripped)
            if stripped.lower().startswith(("while talking to", "... while talking to")):
                pending, command = [], None
            elif stripped.startswith(">>>"):
                command = _command(stripped)
            elif stripped.startswith("<<<"):
                pending = [*pending[-_text.MAX_LINES + 1 :], stripped[3:].strip()]
            elif (address := _verdict(stripped)) is not None:
                if len(records) < _text.MAX_RECIPIENTS:
                    diagnostic = "\n".join([*pending, stripped])
                    records.append(record(address, diagnostic, command=command))
                pending, command = [], None
            elif stripped:
                pending = [*pending[-_text.MAX_LINES + 1 :], stripped]
        if records:
            return records
        listed, reasons = _fatal_list(lines)
        diagnostic = "\n".join([*reasons, *transcript])
        if listed:
            return [record(address, diagnostic) for address in listed]
        to = returned_recipient(bounce)
        return [] if to is None else [record(to, diagnostic)]
