"""The Postfix line parser: one line in, one record (or the reason there is none) out.

Pure: no clock, no logger, no counters. The grammar of a line the agent cares about is

    [TIMESTAMP HOST ]SYSLOG_NAME/DAEMON[PID]: QUEUEID: PAYLOAD

where the envelope is optional (log shippers that keep only the message part), ``SYSLOG_NAME``
may have several path elements (``postfix/submission/smtpd``, ``postfix-1.2.3.4/qmgr``), and the
queue ID is short (hex) or long (base 52). The payloads that matter are listed in ``_LINE``;
:data:`PREFILTER` finds, in a whole buffer, every line that could match it, so that the pipeline
looks at a few lines in ten instead of all of them. Both are built from the same keywords: a
line that ``PREFILTER`` misses can only be :class:`Unparsed` ``irrelevant``.
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

# Keywords right after "QUEUEID: " (or, for orig_queue_id, later on the smtpd client= line).
PREFILTER = re.compile(
    r": (?:to=|from=<|info: header |message-id=|removed[ \t]*$|client=[^\n]*orig_queue_id=)",
    re.MULTILINE,
)

_LINE = re.compile(
    r"""
    (?:(?P<head>(?:[^\s\[]+[ \t]+)*)            # timestamp and host: whitespace-separated tokens
       (?P<prog>[^\s\[]*/[^\s\[]+)\[\d+\]:[ ]   # syslog_name/daemon[pid]
    )?
    (?!NOQUEUE:)(?P<qid>[0-9A-Za-z]{5,}):[ ]
    (?:
        to=(?:<(?P<to>[^>\n]*)>|(?P<to_bare>[^\s,<>]+)),[ ](?P<drest>[^\n]*)
      | from=<(?P<sender>[^>\n]*)>,[ ](?:status=(?P<expired>(?:force-)?expired)|size=)[^\n]*
      | info:[ ]header[ ](?i:x-sendpost-message-uuid):[ \t]*<?(?P<huuid>"""
    + _UUID
    + r""")[^\n]*
      | message-id=[ \t]*<?(?P<muuid>"""
    + _UUID
    + r""")@[^\n]*
      | (?P<removed>removed)[ \t]*
      | client=[^\n]*?,[ ]orig_queue_id=(?P<parent>[0-9A-Za-z]{5,})[^\n]*
    )$
    """,
    re.VERBOSE | re.MULTILINE,
)

_DELIVERY_REST = re.compile(
    r"(?:orig_to=<[^>\n]*>,[ ])?relay=(?P<relay>[^,\n]*),[ ](?:[^\n]*?,[ ])??"
    r"(?:dsn=(?P<dsn>[^,\s]*),[ ])?status=(?P<status>[A-Za-z-]+)(?:[ ]\((?P<text>[^\n]*))?"
)

_SENDER_UUID = re.compile(r"(?i:bounces)\+(?P<uuid>" + _UUID + r")\+[^@]*@(?i:sp-bounce)\.")


def parse_line(line: bytes) -> Record | Unparsed:
    """Parse one log line (with or without its trailing newline).

    Invalid UTF-8 never raises: undecodable bytes become U+FFFD. Lines over 64 KiB are
    :class:`Unparsed` ``too_long``.
    """
    if len(line) > MAX_LINE_BYTES + 2:
        body = line.rstrip(b"\r\n")
        if len(body) > MAX_LINE_BYTES:
            return Unparsed("too_long")
    text = line.decode("utf-8", "replace").rstrip("\r\n")
    if "\n" in text:
        return Unparsed("irrelevant")  # several lines: not one record
    return parse_text(text, 0, len(text))


def parse_text(text: str, start: int, end: int) -> Record | Unparsed:
    """Parse the line ``text[start:end]`` (no newline inside): the shared core of
    :func:`parse_line` and of the pipeline's buffer scan."""
    m = _LINE.match(text, start, end)
    if m is None:
        return Unparsed("irrelevant")
    line = text[start:end]
    qid = m.group("qid")
    head = m.group("head")
    stamp = _stamp_of(head) if head else None
    to = m.group("to")
    if to is None:
        to = m.group("to_bare")
    if to is not None:
        rest = _DELIVERY_REST.match(m.group("drest"))
        if rest is None:
            return Unparsed("truncated")
        raw = rest.group("text")
        reply = ""
        if raw is not None:
            close = raw.rfind(")")
            reply = raw[:close] if close >= 0 else raw
        return Delivery(
            queue_id=qid,
            stamp=stamp,
            line=line,
            recipient=to,
            relay=rest.group("relay"),
            status=rest.group("status").lower(),
            dsn=rest.group("dsn"),
            text=reply,
        )
    uuid = m.group("huuid")
    if uuid is not None:
        return UuidSeen(qid, stamp, line, uuid.lower(), SOURCE_HEADER)
    sender = m.group("sender")
    if sender is not None:
        expired = m.group("expired")
        if expired is not None:
            return Expired(qid, stamp, line, expired)
        found = _SENDER_UUID.match(sender)
        if found is None:
            return Unparsed("irrelevant")
        return UuidSeen(qid, stamp, line, found.group("uuid").lower(), SOURCE_SENDER)
    uuid = m.group("muuid")
    if uuid is not None:
        return UuidSeen(qid, stamp, line, uuid.lower(), SOURCE_MESSAGE_ID)
    if m.group("removed") is not None:
        return Removed(qid, stamp, line)
    return Reinjected(qid, stamp, line, m.group("parent"))


def _stamp_of(head: str) -> str | None:
    """The timestamp part of ``"TIMESTAMP HOST "``: everything before the last token."""
    head = head.rstrip()
    cut = head.rfind(" ")
    if cut < 0:
        return None
    return head[:cut].rstrip() or None
