"""The line-local half of the pipeline: a buffer of whole lines in, a list of operations out.

:func:`scan` does everything that depends on one line alone: decoding, the regex scan of the
buffer, the timestamp text, the delivery fields and, for a delivery whose status gives an event,
the event's line-local fields already rendered as JSON (:func:`prepare`). What depends on the
order of the log — the year of classic timestamps, the queue ID → UUID state — is left to
:meth:`~sendpost_agent.parse.postfix.pipeline.Pipeline.apply`, which replays the operations in
order.

Pure, and its result is plain data. The daemon runs both halves in turn on each buffer
(:meth:`Pipeline.feed_json`); ``sendpost-agent parse`` may run this half in a second process
(:func:`~sendpost_agent.parse.postfix.pipeline.scan_packed`, docs/parsing.md).

Operations (tuples, first item the kind):

* ``(OP_REMOVED, qid)``;
* ``(OP_UUID, qid, uuid, source)`` — a UUID line (one already implied by an earlier line of
  the same buffer, same queue ID, no ``removed`` between, and a source as good or better, is
  left out: applying it would change nothing);
* ``(OP_DELIVERY, qid, stamp, line, recipient, relay, status, dsn, text, prepared, final)``
  (``recipient`` and ``final`` as in :class:`~sendpost_agent.parse.records.Delivery`);
* ``(OP_EXPIRED, record)`` and ``(OP_REINJECTED, record)``;
* ``(OP_RECORD, record)`` — a line with invalid UTF-8, decoded again with U+FFFD, taken the
  slow way (:meth:`Correlator.on_record`).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any, NamedTuple

from sendpost_agent.parse.events import (
    MAX_COMMAND,
    MAX_QUEUE_ID,
    MAX_RECIPIENT,
    Reply,
    analyse_reply,
    clean_enhanced,
    event_id,
    event_type_for,
)
from sendpost_agent.parse.linematch import LineMatcher, json_plain, newlines
from sendpost_agent.parse.postfix.lines import (
    BARE_HINT,
    BARE_SCAN,
    GROUP_DSN,
    GROUP_HEADER_UUID,
    GROUP_MESSAGE_ID_UUID,
    GROUP_ORIG_TO,
    GROUP_ORIG_TO_BARE,
    GROUP_QID,
    GROUP_RELAY,
    GROUP_REMOVED,
    GROUP_SENDER_UUID,
    GROUP_STATUS,
    GROUP_TEXT,
    GROUP_TO,
    GROUP_TO_BARE,
    GROUP_TRUNCATED,
    MAX_LINE_BYTES,
    SYSLOG_SCAN,
    parse_text,
    recipients,
    record_from_match,
    stamp_of,
)
from sendpost_agent.parse.records import (
    SOURCE_HEADER,
    SOURCE_MESSAGE_ID,
    SOURCE_SENDER,
    Expired,
    Reinjected,
    Removed,
    Unparsed,
)

_SYSLOG = LineMatcher(SYSLOG_SCAN)
_BARE_HINT = LineMatcher(BARE_HINT)
_WIDTH = _SYSLOG.width

OP_REMOVED, OP_UUID, OP_DELIVERY, OP_EXPIRED, OP_REINJECTED, OP_RECORD = range(6)

_SURROGATE = re.compile("[\udc80-\udcff]")
_LONG_CHARS = MAX_LINE_BYTES // 4
_UUID_SOURCES = {
    GROUP_HEADER_UUID: SOURCE_HEADER,
    GROUP_SENDER_UUID: SOURCE_SENDER,
    GROUP_MESSAGE_ID_UUID: SOURCE_MESSAGE_ID,
}
_BIG = 1 << 62  # a line this many characters long may exceed 64 KiB


Prepared = tuple[str, str | None, str, str]
"""An event's fields that do not depend on the UUID or the resolved time: ``(event_type,
final_recipient, head, tail)`` — its type, the rewritten recipient (for the counters), and the
rest rendered as the middle (``head``: after the message ID, before the timestamp) and the end
(``tail``: after the timestamp) of its compact JSON object, the only form the event takes here
(an :class:`~sendpost_wire.AgentEvent` is read back from it, pipeline.py). A plain tuple, like
the operations: it crosses to the other process as it is (``marshal``), and a named tuple costs
a Python-level construction per event."""
# The few distinct dsn= values and SMTP commands of a log, with their JSON members rendered once
# (at most _MAX_SEEN each: a damaged log cannot grow them).
_DSN_JSON: dict[str | None, str] = {}
_COMMAND_JSON: dict[str, str] = {}
_MAX_SEEN = 1000
_TYPES = ("delivered", "bounced", "soft_bounced", "deferred")
_HEADS = {name: f'","event_type":"{name}"' for name in _TYPES}
_CODES = {code: f',"smtp_code":{code}' for code in range(200, 600)}  # every code a reply has


def prepare(
    event_type: str, reply: Reply, recipient: str | None, dsn: str | None, queue_id: str,
    line: str, final: str | None = None, plain: bool = False,
) -> Prepared:  # fmt: skip
    """The line-local part of one event; every field made valid for the wire contract (its
    lengths, ``sendpost_wire.MAX_LENGTHS``; a NUL, which only a damaged log holds, becomes
    ``?`` as in Postfix's own printable text). ``final``: the rewritten address behind
    ``recipient``, sent as ``final_recipient``. ``plain``: the caller knows that every text
    given is printable ASCII other than ``"`` and ``\\`` (see :func:`_member`)."""
    if recipient is not None and (
        "@" not in recipient
        or len(recipient) > MAX_RECIPIENT
        or (not recipient.isascii() and len(recipient.lower()) > MAX_RECIPIENT)
    ):
        recipient = None
    recipient = recipient or None
    if final is not None and ("@" not in final or len(final) > MAX_RECIPIENT or "\x00" in final):
        final = None
    dsns = _DSN_JSON
    e = dsns.get(dsn)
    if e is None:
        enhanced = clean_enhanced(dsn)
        e = "" if enhanced is None else f',"enhanced_status":"{enhanced}"'
        if len(dsns) < _MAX_SEEN:
            dsns[dsn] = e
    eid = event_id(line, event_type, recipient)
    if len(queue_id) > MAX_QUEUE_ID:
        queue_id = queue_id[:MAX_QUEUE_ID]
    code, description, command = reply
    if command is not None and len(command) > MAX_COMMAND:
        command = None
    if not plain and (  # (a plain line holds no NUL)
        "\x00" in queue_id
        or (recipient is not None and "\x00" in recipient)
        or (description is not None and "\x00" in description)
        or (command is not None and "\x00" in command)
    ):
        recipient, description, command = _no_nul(recipient), _no_nul(description), _no_nul(command)
        queue_id = queue_id.replace("\x00", "?")
    codes, heads = _CODES, _HEADS
    c = "" if code is None else codes.get(code) or f',"smtp_code":{code}'
    d = "" if description is None else _member(',"smtp_description":', description, plain)
    r = "" if recipient is None else _member(',"recipient":', recipient, plain)
    m = "" if command is None else _command_json(command)
    f = "" if final is None else _member(',"final_recipient":', final, plain)
    q = _member(',"queue_id":', queue_id, plain)
    tail = f'{c}{d}{r},"event_id":"{eid}"{e}{m}{q}{f}}}'
    head = heads.get(event_type) or f'","event_type":{_json_str(event_type)[1:]}'
    return (event_type, final, head, tail)


def _member(key: str, text: str, plain: bool) -> str:
    """``key`` (``,"name":``) and ``text`` as a JSON string, as ``json.dumps`` writes it.
    ``plain``: the text is known to hold only printable ASCII other than ``"`` and ``\\``
    (linematch.json_plain of the line it comes from), which JSON strings hold as they are: the
    quotes are all there is to add (escaping looks at each character twice: 4% of ``parse``)."""
    return f'{key}"{text}"' if plain else key + _json_str(text)


def _command_json(command: str) -> str:
    """The ``smtp_command`` member for ``command``."""
    commands = _COMMAND_JSON
    member = commands.get(command)
    if member is None:
        member = ',"smtp_command":' + _json_str(command)
        if len(commands) < _MAX_SEEN:
            commands[command] = member
    return member


def _no_nul(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "?")


class Scanned(NamedTuple):
    """The result of :func:`scan` (counters as in :class:`ParseStats`)."""

    ops: list[tuple[Any, ...]]
    lines: int
    parsed: int
    truncated: int
    too_long: int
    invalid_utf8: int


def scan(data: bytes) -> Scanned:
    """The operations of a buffer of whole lines (see the module docstring): any buffer
    (invalid UTF-8, long lines, lines without their syslog envelope)."""
    lines = newlines(data)
    if data[-1:] != b"\n" and data:
        lines += 1
    try:
        text = data.decode("utf-8")
        dirty = False
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
        dirty = True
    long_lines = _long_lines(text) if len(data) > MAX_LINE_BYTES else []
    ops: list[tuple[Any, ...]] = []
    append = ops.append
    best: dict[str, int] = {}  # queue ID -> best UUID source emitted in this buffer
    # One object per distinct relay, status, dsn and timestamp text of the buffer: they repeat
    # from line to line, and a shared object crosses to the other process once (marshal writes
    # a reference after the first) and is allocated and freed there once.
    shared: dict[str, str] = {}
    uuid_sources = _UUID_SOURCES
    parsed = truncated = invalid = 0
    line_end = -1
    spans, count = _first_matches(text, lines + 1)
    width = _WIDTH
    for i in range(count):
        b = i * width
        at = spans[b + 1]
        after = spans[b + 2]
        if at < line_end:
            continue  # the rest of a line already decided
        line_end = text.find("\n", after)
        if line_end < 0:
            line_end = len(text)
        if long_lines and _inside(long_lines, at):
            continue  # counted as too_long
        if dirty and _SURROGATE.search(text, text.rfind("\n", 0, at) + 1, line_end):
            rec = _repaired(text, at)
            if isinstance(rec, Unparsed):
                if rec.reason == "truncated":
                    truncated += 1
                continue
            invalid += 1
            parsed += 1
            if isinstance(rec, Removed):
                best.pop(rec.queue_id, None)
            append((OP_RECORD, rec))
            continue
        kind = spans[b]
        if kind in (GROUP_TEXT, GROUP_STATUS):
            qid = _group(text, spans, b, GROUP_QID)
            to = _group(text, spans, b, GROUP_TO)
            bare = _group(text, spans, b, GROUP_TO_BARE)
            orig = _group(text, spans, b, GROUP_ORIG_TO)
            orig_bare = _group(text, spans, b, GROUP_ORIG_TO_BARE)
            relay = _group(text, spans, b, GROUP_RELAY)
            relay = shared.setdefault(relay, relay)
            dsn = _group(text, spans, b, GROUP_DSN)
            if dsn is not None:
                dsn = shared.setdefault(dsn, dsn)
            status = _group(text, spans, b, GROUP_STATUS).lower()
            status = shared.setdefault(status, status)
            if orig is None and orig_bare is None:
                recipient, final = (to if to is not None else bare), None
            else:
                recipient, final = recipients(to, bare, orig, orig_bare)
            start = text.rfind("\n", 0, at) + 1
            stamp = stamp_of(text, start, at) if at > start else None
            if stamp is not None:
                stamp = shared.setdefault(stamp, stamp)
            if kind == GROUP_TEXT:
                close = text.rfind(")", after, line_end)
                body = text[after : close if close >= 0 else line_end]
            else:
                body = ""
            line = text[start:line_end]
            event_type = event_type_for(status, dsn)
            prepared = (
                None
                if event_type is None
                else prepare(
                    event_type,
                    analyse_reply(body),
                    recipient,
                    dsn,
                    qid,
                    line,
                    final,
                    json_plain(line),
                )
            )
            append((OP_DELIVERY, qid, stamp, line, recipient, relay, status, dsn, body,
                    prepared, final))  # fmt: skip
            parsed += 1
            continue
        qid = _group(text, spans, b, GROUP_QID)
        source = uuid_sources.get(kind)
        if source is not None:
            if best.get(qid, 99) > source:
                best[qid] = source
                append((OP_UUID, qid, _group(text, spans, b, kind).lower(), source))
        elif kind == GROUP_REMOVED:
            best.pop(qid, None)
            append((OP_REMOVED, qid))
        elif kind == GROUP_TRUNCATED:
            truncated += 1
            continue
        else:
            start = text.rfind("\n", 0, at) + 1
            stamp = stamp_of(text, start, at) if at > start else None
            rec = record_from_match(_rematch(text, at), stamp, text, start, line_end)
            if isinstance(rec, Expired):
                append((OP_EXPIRED, rec))
            elif isinstance(rec, Reinjected):
                append((OP_REINJECTED, rec))
        parsed += 1
    return Scanned(ops, lines, parsed, truncated, len(long_lines), invalid)


def _group(text: str, spans: Sequence[int], b: int, group: int) -> Any:
    """Group ``group`` of the match at ``spans[b]`` (linematch.py's layout), None if it took
    no part."""
    at = spans[b + 1 + 2 * group]
    return None if at < 0 else text[at : spans[b + 2 + 2 * group]]


def _rematch(text: str, at: int) -> re.Match[str]:
    """The match object of the match found at ``at`` (for the rare records built from one)."""
    m = BARE_SCAN.match(text, at) or SYSLOG_SCAN.match(text, at)
    assert m is not None
    return m


def _first_matches(text: str, lines: int) -> tuple[Sequence[int], int]:
    """The match of each line that has one, as spans (linematch.py): the first of
    :data:`SYSLOG_SCAN` in the line, run by PCRE2 where it is built; where lines without an
    envelope may be (rare), :func:`_matches` with ``re``."""
    if _BARE_HINT.search(text) or BARE_SCAN.match(text, 0):
        return _SYSLOG.spans(_matches(text))
    return _SYSLOG.first_per_line(text, lines)


def _matches(text: str) -> Iterable[re.Match[str]]:
    """Matches of both line shapes in log order (lines without an envelope are rare)."""
    bare_starts = [hint.end() for hint in BARE_HINT.finditer(text)]
    if BARE_SCAN.match(text, 0):
        bare_starts.insert(0, 0)
    if not bare_starts:
        return SYSLOG_SCAN.finditer(text)
    found: dict[int, re.Match[str]] = {}
    for start in bare_starts:
        m = BARE_SCAN.match(text, start)
        if m is not None:
            found[start] = m
    for m in SYSLOG_SCAN.finditer(text):
        found.setdefault(text.rfind("\n", 0, m.start()) + 1, m)
    return [found[start] for start in sorted(found)]


def _repaired(text: str, at: int) -> Any:
    """A line with invalid UTF-8, decoded again with U+FFFD and parsed: a record or Unparsed."""
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n", at)
    raw = text[start : end if end >= 0 else len(text)].encode("utf-8", "surrogateescape")
    return parse_text(raw.decode("utf-8", "replace"))


def _byte_length(text: str, start: int, end: int) -> int:
    return len(text[start:end].encode("utf-8", "surrogateescape"))


def _long_lines(text: str) -> list[tuple[int, int]]:
    """Spans of the lines over 64 KiB, found by jumping from each newline to the last one
    within reach: a handful of ``rfind`` calls per megabyte when no line is long."""
    spans: list[tuple[int, int]] = []
    pos, size = 0, len(text)
    while pos < size:
        nl = text.rfind("\n", pos, min(size, pos + _LONG_CHARS + 1))
        if nl >= 0:
            pos = nl + 1
            continue
        end = text.find("\n", pos)
        if end < 0:
            end = size
        if _byte_length(text, pos, end) > MAX_LINE_BYTES:
            spans.append((pos, end))
        pos = end + 1
    return spans


def _inside(spans: list[tuple[int, int]], at: int) -> bool:
    i = bisect.bisect_right(spans, (at, _BIG)) - 1
    return i >= 0 and spans[i][0] <= at <= spans[i][1]
