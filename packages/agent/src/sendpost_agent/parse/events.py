"""From parsed delivery records to wire events: status mapping and the reply text's anatomy.

Status word → event type:

* ``sent`` → ``delivered`` (unless it is a hop to an internal relay, see correlate);
* ``bounced`` → ``bounced`` when ``dsn=`` is 5.x.x (or absent), ``soft_bounced`` when 4.x.x;
* ``softbounce`` (``soft_bounce = yes``) → ``soft_bounced``;
* ``deferred`` → ``deferred``;
* qmgr ``expired`` → ``soft_bounced`` for each recipient still pending (built in correlate);
* anything else → no event (``deliverable``/``undeliverable`` are address-verification probes).

Fields taken from the text in parentheses after the status word:

* ``smtp_code``: the remote server's reply code when it said one — the text starts with the
  code (``250 2.0.0 Ok: queued as X``) or follows ``host H said:`` / ``host H refused to talk
  to me:``. Otherwise (DNS failures, connection errors, ``delivered to maildir``) it is absent:
  we do not invent a server reply; ``enhanced_status`` (from ``dsn=``) still classifies it.
* ``smtp_description``: the server's reply after its code (multi-line replies as Postfix joined
  them, without the ``(in reply to ...)`` clause); without a server reply, Postfix's own text.
* ``smtp_command``: from ``(in reply to X command)``: ``MAIL FROM``, ``RCPT TO``, ``DATA``
  (``end of DATA`` too, the reply to the message content), ``EHLO``, ``STARTTLS`` ...;
  ``CONNECT`` for ``refused to talk to me`` (the greeting); absent otherwise.
"""

from __future__ import annotations

import re
from _blake2 import blake2b  # hashlib's, without loading OpenSSL at start-up

MAX_TEXT = 10_000  # the wire contract's limit for text fields (sendpost_wire.MAX_LENGTHS)
MAX_RECIPIENT = 320  # longer recipients are left out (the platform uses the message's own)
MAX_COMMAND = 64  # longer "commands" are left out: no SMTP command is that long
MAX_QUEUE_ID = 64  # Postfix's are at most 16 characters; longer ones are cut

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


Reply = tuple[int | None, str | None, str | None]
"""A status text's anatomy: (server code, description, SMTP command), each None when absent. A
plain tuple: a named tuple costs a Python-level construction per event (2% of ``parse``)."""


def analyse_reply(text: str) -> Reply:
    """Split a status text into server code, description and SMTP command (module docstring).

    String methods and index arithmetic only, as this runs once per event: the body is the span
    ``text[start:end]``, narrowed step by step, and only the description (and the command) are
    sliced out. The tests check it against a regex reference on generated texts."""
    command = None
    size = len(text)
    stripped = size  # len(text.rstrip())
    while stripped > 0 and text[stripped - 1].isspace():
        stripped -= 1
    start, end = 0, size
    if text.endswith(" command)", 0, stripped):
        cut = text.find("(in reply to ")
        if 0 <= cut and cut + 13 < stripped - 9:
            command = text[cut + 13 : stripped - 9].strip().upper() or None
            end = cut
            while end > 0 and text[end - 1].isspace():
                end -= 1
            if command == "END OF DATA":
                command = "DATA"
    if text.startswith("host ", start, end):
        space = text.find(" ", start + 5, end)
        if space > start + 5 and not _has_space(text, start + 5, space):
            if text.startswith("said: ", space + 1, end):
                start = space + 7
            elif text.startswith("refused to talk to me: ", space + 1, end):
                start = space + 24
                if command is None:
                    command = "CONNECT"
    code = None
    if (
        end - start >= 3
        and "2" <= text[start] <= "5"
        and "0" <= text[start + 1] <= "9"
        and "0" <= text[start + 2] <= "9"
        and (end - start == 3 or text[start + 3] in " -")
    ):
        code = ord(text[start]) * 100 + ord(text[start + 1]) * 10 + ord(text[start + 2]) - 5328
        start += 3
        while start < end and text[start] in " -":
            start += 1
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    description = None
    if end > start:
        description = text[start : min(end, start + MAX_TEXT)]
    return (code, description, command)


def _has_space(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` holds a white-space character (as ``str.split`` sees it)."""
    return any(text[i].isspace() for i in range(start, end))


def event_type_for(status: str, dsn: str | None) -> str | None:
    """The wire event type for a delivery line's status word (see the module docstring)."""
    if status == "sent":
        return "delivered"
    if status == "deferred":
        return "deferred"
    if status == "bounced":
        return "soft_bounced" if dsn is not None and dsn.startswith("4") else "bounced"
    if status == "softbounce":
        return "soft_bounced"
    return None


def event_id(line: str, event_type: str, recipient: str | None) -> str:
    """Deterministic id: the same log line gives the same id in every run and after restarts."""
    key = f"{line}\x1f{event_type}\x1f{recipient or ''}".encode("utf-8", "surrogatepass")
    return blake2b(key, digest_size=16).hexdigest()


def clean_enhanced(dsn: str | None) -> str | None:
    if dsn is None or _ENHANCED.fullmatch(dsn) is None:
        return None
    return dsn
