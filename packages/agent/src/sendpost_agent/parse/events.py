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
from typing import NamedTuple

MAX_TEXT = 10_000  # the wire contract's limit for text fields (sendpost_wire.MAX_LENGTHS)
MAX_RECIPIENT = 320  # longer recipients are left out (the platform uses the message's own)
MAX_COMMAND = 64  # longer "commands" are left out: no SMTP command is that long
MAX_QUEUE_ID = 64  # Postfix's are at most 16 characters; longer ones are cut

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


class Reply(NamedTuple):
    code: int | None
    description: str | None
    command: str | None


_new_reply = tuple.__new__  # what Reply(...) calls, without the keyword handling


def analyse_reply(text: str) -> Reply:
    """Split a status text into server code, description and SMTP command (module docstring).

    String methods only, as this runs once per event; the tests check it against a regex
    reference on generated texts."""
    command = None
    body = text
    stripped = text.rstrip()
    if stripped.endswith(" command)"):
        cut = text.find("(in reply to ")
        if 0 <= cut and cut + 13 < len(stripped) - 9:
            command = text[cut + 13 : len(stripped) - 9].strip().upper() or None
            body = text[:cut].rstrip()
            if command == "END OF DATA":
                command = "DATA"
    if body.startswith("host "):
        space = body.find(" ", 5)
        token = body[5:space]
        if space > 5 and token.split() == [token]:
            rest = body[space + 1 :]
            if rest.startswith("said: "):
                body = rest[6:]
            elif rest.startswith("refused to talk to me: "):
                body = rest[23:]
                if command is None:
                    command = "CONNECT"
    code = None
    if (
        len(body) >= 3
        and "2" <= body[0] <= "5"
        and "0" <= body[1] <= "9"
        and "0" <= body[2] <= "9"
        and (len(body) == 3 or body[3] in " -")
    ):
        code = ord(body[0]) * 100 + ord(body[1]) * 10 + ord(body[2]) - 5328  # int(body[:3])
        body = body[3:].lstrip(" -")
    description = body.strip() or None
    if description is not None and len(description) > MAX_TEXT:
        description = description[:MAX_TEXT]
    return _new_reply(Reply, (code, description, command))


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
