"""The Postfix line parser: one line in, one record (or the reason there is none) out.

Pure: no clock, no logger, no counters. The lines the agent cares about look like

    [TIMESTAMP HOST PROGRAM[PID]: ]QUEUEID: PAYLOAD

where the envelope is optional (log shippers that keep only the message part), ``PROGRAM`` is
any syslog name (``postfix/smtp``, ``postfix/submission/smtpd``, ``postfix-1.2.3.4/qmgr``,
``postfix/amavis/smtp``), the queue ID is short (hex) or long (base 52), and ``PAYLOAD`` is one
of the alternatives of ``_BODY``. Everything else is ``Unparsed("irrelevant")``.

The same compiled patterns serve :func:`parse_line` (one line) and the pipeline's scan of large
buffers: :data:`SYSLOG_SCAN` starts with the literal ``"]: "`` (the end of ``PROGRAM[PID]: ``),
so the regex engine skims a whole buffer at memory speed and tries the payload alternatives
only once per line; :data:`BARE_SCAN` handles lines without an envelope, where the cheap
:data:`BARE_HINT` finds any. A match becomes a record in :func:`record_from_match`, or, in the
pipeline's hot loop, is read group by group (``GROUP_*``) from its spans — which the native line
matcher (../linematch.py) finds with PCRE2 where it is built, from these same patterns — the
tests check that both give the same events.
"""

from __future__ import annotations

import re

from sendpost_agent.parse.records import (
    SOURCE_HEADER,
    SOURCE_MESSAGE_ID,
    SOURCE_SENDER,
    Delivery,
    Expired,
    Record,
    Reinjected,
    Removed,
    Unparsed,
    UuidSeen,
)

MAX_LINE_BYTES = 64 * 1024

_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"

# Each alternative ends as early as it can (the hot loop finds the end of the line itself only
# when it needs the text); ``lastindex`` of a match tells which alternative matched.
_BODY = (
    r"(?!NOQUEUE:)([0-9A-Za-z]{5,}):[ ](?:"
    # 2-9: delivery  to=<rcpt>, [orig_to=<..>, ]relay=R, delay=.., ...[, dsn=D], status=WORD[ (text]
    r"to=(?:<([^>\n]*)>|([^\s,<>]+)),[ ](?:orig_to=(?:<([^>\n]*)>|([^\s,<>]*)),[ ])?"
    r"relay=([^,\n]*),[ ]"
    r"(?:(?!dsn=|status=)[a-z_]+=[^,\n]*,[ ])*(?:dsn=([^,\s]*),[ ])?status=([A-Za-z-]+)(?:[ ](\())?"
    # 10: a delivery line cut before its status
    r"|to=()"
    # 11: header_checks INFO line with the UUID header
    r"|info:[ ]header[ ][Xx]-[Ss]endpost-[Mm]essage-[Uu][Uu][Ii][Dd]:[ \t]*<?(" + _UUID + r")"
    # 12: qmgr from=<bounces+UUID+...@sp-bounce...>, size=   13: qmgr status=expired
    r"|from=<(?:[Bb][Oo][Uu][Nn][Cc][Ee][Ss]\+(" + _UUID + r")\+[^>@\n]*@"
    r"[Ss][Pp]-[Bb][Oo][Uu][Nn][Cc][Ee]\.[^>\n]*>,[ ]size="
    r"|[^>\n]*>,[ ]status=((?:force-)?expired))"
    # 14: cleanup message-id=<UUID@domain>
    r"|message-id=[ \t]*<?(" + _UUID + r")@"
    # 15: qmgr removed
    r"|(removed)[ \t]*$"
    # 16: smtpd client=..., orig_queue_id=PARENT
    r"|client=[^\n]*?,[ ]orig_queue_id=([0-9A-Za-z]{5,})"
    r")"
)  # fmt: skip

GROUP_QID = 1
GROUP_TO, GROUP_TO_BARE, GROUP_ORIG_TO, GROUP_ORIG_TO_BARE = 2, 3, 4, 5
GROUP_RELAY, GROUP_DSN, GROUP_STATUS, GROUP_TEXT = 6, 7, 8, 9
GROUP_TRUNCATED = 10
GROUP_HEADER_UUID = 11
GROUP_SENDER_UUID = 12
GROUP_EXPIRED = 13
GROUP_MESSAGE_ID_UUID = 14
GROUP_REMOVED = 15
GROUP_PARENT = 16

# "]: " ends "PROGRAM[PID]: ": a literal, so the engine skims the buffer at memory speed.
SYSLOG_SCAN = re.compile(r"\]:[ ]" + _BODY, re.MULTILINE)
# Lines without an envelope (the message part only), tried where BARE_HINT points.
BARE_SCAN = re.compile(r"^" + _BODY, re.MULTILINE)
BARE_HINT = re.compile(
    r"\n(?=[0-9A-Za-z]{5,}:[ ](?:to=|info:[ ]|from=<|message-id=|removed|client=))",
    re.MULTILINE,  # no ^ or $ in it: the flag changes nothing but lets PCRE2 run it (linematch.py)
)


def parse_line(line: bytes) -> Record | Unparsed:
    """Parse one log line (with or without its trailing newline).

    Invalid UTF-8 never raises: undecodable bytes become U+FFFD. Lines over 64 KiB are
    :class:`Unparsed` ``too_long``.
    """
    body = line.rstrip(b"\r\n")
    if len(body) > MAX_LINE_BYTES:
        return Unparsed("too_long")
    text = body.decode("utf-8", "replace")
    if "\n" in text:
        return Unparsed("irrelevant")  # several lines: not one record
    return parse_text(text)


def parse_text(text: str) -> Record | Unparsed:
    """Parse one decoded line without its newline."""
    m = BARE_SCAN.match(text)
    if m is not None:
        return record_from_match(m, None, text, 0, len(text))
    m = SYSLOG_SCAN.search(text)
    if m is None:
        return Unparsed("irrelevant")
    return record_from_match(m, stamp_of(text, 0, m.start()), text, 0, len(text))


def record_from_match(
    m: re.Match[str], stamp: str | None, text: str, start: int, end: int
) -> Record | Unparsed:
    """The record for a ``SYSLOG_SCAN``/``BARE_SCAN`` match on the line ``text[start:end]``."""
    line = text[start:end]
    kind = m.lastindex
    qid = m.group(GROUP_QID)
    if kind in (GROUP_STATUS, GROUP_TEXT):
        recipient, final = recipients(*m.group(GROUP_TO, GROUP_TO_BARE, GROUP_ORIG_TO,
                                                GROUP_ORIG_TO_BARE))  # fmt: skip
        return Delivery(
            queue_id=qid,
            stamp=stamp,
            line=line,
            recipient=recipient,
            relay=m.group(GROUP_RELAY),
            status=m.group(GROUP_STATUS).lower(),
            dsn=m.group(GROUP_DSN),
            text=status_text(text, m.end(), end) if kind == GROUP_TEXT else "",
            final_recipient=final,
        )
    if kind == GROUP_HEADER_UUID:
        return UuidSeen(qid, stamp, line, m.group(kind).lower(), SOURCE_HEADER)
    if kind == GROUP_SENDER_UUID:
        return UuidSeen(qid, stamp, line, m.group(kind).lower(), SOURCE_SENDER)
    if kind == GROUP_MESSAGE_ID_UUID:
        return UuidSeen(qid, stamp, line, m.group(kind).lower(), SOURCE_MESSAGE_ID)
    if kind == GROUP_EXPIRED:
        return Expired(qid, stamp, line, m.group(kind))
    if kind == GROUP_REMOVED:
        return Removed(qid, stamp, line)
    if kind == GROUP_PARENT:
        return Reinjected(qid, stamp, line, m.group(kind))
    return Unparsed("truncated")


def recipients(
    to: str | None, to_bare: str | None, orig: str | None, orig_bare: str | None
) -> tuple[str, str | None]:
    """(the recipient to report, the final address or None) from a delivery line's ``to=`` and
    ``orig_to=`` (each bracketed or bare): the platform sent to ``orig_to=`` when Postfix logged
    one (it does when alias or canonical rewriting changed the address), else to ``to=``; the
    rewritten ``to=`` is then the final address."""
    address = to if to is not None else to_bare
    original = orig if orig is not None else orig_bare
    if original:
        return original, address
    return address or "", None


def status_text(text: str, start: int, end: int | None = None) -> str:
    """The text inside ``status=WORD (...)``, from just after the ``(`` to the line's last ``)``
    (nested and unbalanced parentheses inside are kept; a truncated line keeps what is there)."""
    if end is None:
        end = len(text)
    close = text.rfind(")", start, end)
    return text[start:close] if close >= 0 else text[start:end]


def stamp_of(text: str, start: int, end: int) -> str | None:
    """The timestamp in ``TIMESTAMP HOST PROGRAM[PID`` = ``text[start:end]``: all but the
    last two space-separated tokens."""
    pid = text.rfind(" ", start, end)  # before PROGRAM[PID
    host = text.rfind(" ", start, pid) if pid > start else -1  # before HOST
    if host < start:
        return None
    return text[start:host].rstrip() or None
