"""The Postfix line parser: one line in, one record (or the reason there is none) out.

Pure: no clock, no logger, no counters. The lines the agent cares about look like

    [TIMESTAMP HOST PROGRAM[PID]: ]QUEUEID: PAYLOAD

where the envelope is optional (log shippers that keep only the message part), ``PROGRAM`` is
any syslog name (``postfix/smtp``, ``postfix/submission/smtpd``, ``postfix-1.2.3.4/qmgr``,
``postfix/amavis/smtp``), the queue ID is short (hex) or long (base 52), and ``PAYLOAD`` is one
of the alternatives of ``_BODY``. Everything else is ``Unparsed("irrelevant")``.

One compiled pattern, :data:`SCAN`, serves both :func:`parse_line` (one line) and the
pipeline's scan of large buffers: it starts with the literal ``": "`` so the regex engine skips
through the buffer at memory speed and only tries the alternatives where a payload could start;
the queue ID is the token before (:func:`queue_id_at`). The first match with a valid queue ID
decides the line. A match becomes a record in :func:`record_from_match`, or, in the pipeline's
hot loop, is read group by group (``GROUP_*``) — the tests check that both give the same events.
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
# when it needs the text); ``lastindex`` of a match tells which alternative matched. The match
# starts at the ": " after the queue ID; the queue ID is the token before it (:func:`queue_id_at`).
_BODY = (
    r":[ ](?:"
    # 1-7: delivery  to=<rcpt>, [orig_to=<..>, ]relay=R, delay=.., ...[, dsn=D], status=WORD[ (text]
    r"to=(?:<([^>\n]*)>|([^\s,<>]+)),[ ](?:orig_to=(?:<[^>\n]*>|[^\s,<>]*),[ ])?relay=([^,\n]*),[ ]"
    r"(?:(?!dsn=|status=)[a-z_]+=[^,\n]*,[ ])*(?:dsn=([^,\s]*),[ ])?status=([A-Za-z-]+)(?:[ ](\())?"
    # 7: a delivery line cut before its status
    r"|to=()"
    # 8: header_checks INFO line with the UUID header
    r"|info:[ ]header[ ][Xx]-[Ss]endpost-[Mm]essage-[Uu][Uu][Ii][Dd]:[ \t]*<?(" + _UUID + r")"
    # 9: qmgr from=<bounces+UUID+...@sp-bounce...>, size=   10: qmgr status=expired
    r"|from=<(?:[Bb][Oo][Uu][Nn][Cc][Ee][Ss]\+(" + _UUID + r")\+[^>@\n]*@"
    r"[Ss][Pp]-[Bb][Oo][Uu][Nn][Cc][Ee]\.[^>\n]*>,[ ]size="
    r"|[^>\n]*>,[ ]status=((?:force-)?expired))"
    # 11: cleanup message-id=<UUID@domain>
    r"|message-id=[ \t]*<?(" + _UUID + r")@"
    # 12: qmgr removed
    r"|(removed)[ \t]*$"
    # 13: smtpd client=..., orig_queue_id=PARENT
    r"|client=[^\n]*?,[ ]orig_queue_id=([0-9A-Za-z]{5,})"
    r")"
)  # fmt: skip

GROUP_TO, GROUP_TO_BARE, GROUP_RELAY, GROUP_DSN, GROUP_STATUS, GROUP_TEXT = 1, 2, 3, 4, 5, 6
GROUP_TRUNCATED = 7
GROUP_HEADER_UUID = 8
GROUP_SENDER_UUID = 9
GROUP_EXPIRED = 10
GROUP_MESSAGE_ID_UUID = 11
GROUP_REMOVED = 12
GROUP_PARENT = 13

SCAN = re.compile(_BODY, re.MULTILINE)


def queue_id_at(text: str, at: int) -> tuple[str, int] | None:
    """The queue ID ending at ``text[at]`` (the ": " a ``SCAN`` match starts with) and where it
    starts, or None when the token there is not a queue ID (5+ ASCII letters and digits)."""
    sp = text.rfind(" ", 0, at)
    nl = text.rfind("\n", sp + 1, at)
    begin = (nl if nl >= 0 else sp) + 1
    qid = text[begin:at]
    if len(qid) < 5 or not qid.isalnum() or not qid.isascii() or qid == "NOQUEUE":
        return None
    return qid, begin


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
    pos = 0
    while True:
        m = SCAN.search(text, pos)
        if m is None:
            return Unparsed("irrelevant")
        found = queue_id_at(text, m.start())
        if found is not None:
            qid, begin = found
            stamp = stamp_of(text, 0, begin - 1) if begin else None
            return record_from_match(m, qid, stamp, text, 0, len(text))
        pos = m.end()


def record_from_match(
    m: re.Match[str], qid: str, stamp: str | None, text: str, start: int, end: int
) -> Record | Unparsed:
    """The record for a ``SCAN`` match on the line ``text[start:end]``."""
    line = text[start:end]
    kind = m.lastindex
    if kind in (GROUP_STATUS, GROUP_TEXT):
        to = m.group(GROUP_TO)
        return Delivery(
            queue_id=qid,
            stamp=stamp,
            line=line,
            recipient=to if to is not None else m.group(GROUP_TO_BARE),
            relay=m.group(GROUP_RELAY),
            status=m.group(GROUP_STATUS).lower(),
            dsn=m.group(GROUP_DSN),
            text=status_text(text, m.end(), end) if kind == GROUP_TEXT else "",
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


def status_text(text: str, start: int, end: int | None = None) -> str:
    """The text inside ``status=WORD (...)``, from just after the ``(`` to the line's last ``)``
    (nested and unbalanced parentheses inside are kept; a truncated line keeps what is there)."""
    if end is None:
        end = len(text)
    close = text.rfind(")", start, end)
    return text[start:close] if close >= 0 else text[start:end]


def stamp_of(text: str, start: int, end: int) -> str | None:
    """The timestamp in ``TIMESTAMP HOST PROGRAM[PID]:`` = ``text[start:end]``: all but the
    last two space-separated tokens (None for a line with no envelope)."""
    parts = text[start:end].rsplit(" ", 2)
    if len(parts) < 3:
        return None
    return parts[0].rstrip() or None
