"""The pipeline: bytes of the log in, wire events out, with counters and resumable state.

:meth:`Pipeline.feed` takes whole lines in large buffers. It does not split them: it decodes the
buffer once, lets one compiled regex (:data:`~sendpost_agent.parse.postfix.SYSLOG_SCAN`, anchored
on the literal ``"]: "``) jump to the lines that can matter, reads only those, with the same
patterns and record builder as :func:`~sendpost_agent.parse.postfix.parse_line`, and counts the
rest with ``bytes.count``. Figures in docs/benchmarks.md.

Counters (:class:`ParseStats`):

* ``lines``: every line fed;
* ``parsed``: lines that gave a record (delivery, UUID, expiry, removal, re-injection);
* ``ignored``: lines with nothing the agent needs (other Postfix lines, other programs);
* ``unparsed``: reason → count for lines that could matter but were not usable: ``too_long``
  (over 64 KiB), ``truncated`` (a delivery line cut before ``status=``);
* ``invalid_utf8``: parsed lines that held invalid UTF-8 (decoded with U+FFFD and still used);
* ``uncorrelated``: delivery/expiry lines given up for lack of a UUID;
* ``events``: event type → count.
"""

from __future__ import annotations

import bisect
import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sendpost_wire import AgentEvent

from sendpost_agent.parse.correlate import Correlator
from sendpost_agent.parse.postfix import (
    BARE_HINT,
    BARE_SCAN,
    GROUP_DSN,
    GROUP_HEADER_UUID,
    GROUP_MESSAGE_ID_UUID,
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
    record_from_match,
    stamp_of,
    status_text,
)
from sendpost_agent.parse.records import (
    SOURCE_HEADER,
    SOURCE_MESSAGE_ID,
    SOURCE_SENDER,
    Expired,
    Reinjected,
    Unparsed,
)
from sendpost_agent.parse.timestamps import YearGuess, to_micros

# Relays that are our own content filter or Postfix instance: loopback addresses, by address
# (``127.0.0.1[127.0.0.1]:10024``) or by name. Unix-socket relays (``[private/dovecot-lmtp]``)
# are final deliveries by default; name one here to make it a hop.
DEFAULT_INTERNAL_RELAYS: tuple[str, ...] = ("127.0.0.0/8", "::1/128", "localhost")

STATE_VERSION = 1
_RELAY = re.compile(r"(?P<name>[^\[]*)(?:\[(?P<addr>[^\]]*)\])?(?::\d+)?")
_SURROGATE = re.compile("[\udc80-\udcff]")
_LONG_CHARS = MAX_LINE_BYTES // 4
_UUID_SOURCES = {
    GROUP_HEADER_UUID: SOURCE_HEADER,
    GROUP_SENDER_UUID: SOURCE_SENDER,
    GROUP_MESSAGE_ID_UUID: SOURCE_MESSAGE_ID,
}
_BIG = 1 << 62  # a line this many characters long may exceed 64 KiB


@dataclass
class ParseStats:
    """Plain counters (see the module docstring); the daemon turns them into metrics."""

    lines: int = 0
    parsed: int = 0
    ignored: int = 0
    unparsed: dict[str, int] = field(default_factory=dict)
    invalid_utf8: int = 0
    uncorrelated: int = 0
    events: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "lines": self.lines,
            "parsed": self.parsed,
            "ignored": self.ignored,
            "unparsed": dict(sorted(self.unparsed.items())),
            "invalid_utf8": self.invalid_utf8,
            "uncorrelated": self.uncorrelated,
            "events": dict(sorted(self.events.items())),
        }


class InternalRelays:
    """Matches ``relay=`` values against networks (``127.0.0.0/8``) and names (``localhost``)."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: set[str] = set()
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.add(entry.lower())
        self._cache: dict[str, bool] = {}

    def __contains__(self, relay: str) -> bool:
        known = self._cache.get(relay)
        if known is None:
            known = self._cache[relay] = self._check(relay)
            if len(self._cache) > 10_000:
                self._cache.clear()
        return known

    def _check(self, relay: str) -> bool:
        m = _RELAY.fullmatch(relay)
        if m is None:
            return False
        name, addr = m.group("name").lower(), m.group("addr")
        if name in self.names or (addr is not None and addr.lower() in self.names):
            return True
        if addr is None:
            return False
        try:
            ip = ipaddress.ip_address(addr.removeprefix("ipv6:").removeprefix("IPv6:"))
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


class Pipeline:
    """Parser + year inference + correlator, fed with whole lines (see the module docstring).

    ``reference_time`` anchors the year of classic timestamps (the daemon passes now, ``parse``
    the file's modification time); ``tz`` is their time zone (default: the host's).
    """

    def __init__(
        self,
        *,
        internal_relays: Sequence[str] = DEFAULT_INTERNAL_RELAYS,
        state: Mapping[str, Any] | None = None,
        reference_time: dt.datetime | None = None,
        tz: dt.tzinfo | None = None,
    ) -> None:
        if state is not None and state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown pipeline state version {state.get('version')!r}")
        relays = InternalRelays(internal_relays)
        self.stats = ParseStats()
        self._years = YearGuess(reference_time, tz, state["years"] if state else None)
        self._correlator = Correlator(
            relays.__contains__, _copy(state["correlator"]) if state else None
        )
        self._last_stamp: str | None = None
        self._last_micros: int | None = None

    def feed(self, data: bytes) -> list[AgentEvent]:
        """Process zero or more complete lines; returns their events in log order."""
        if not data:
            return []
        stats = self.stats
        lines = data.count(b"\n")
        if data[-1:] != b"\n":
            lines += 1
        stats.lines += lines
        try:
            text = data.decode("utf-8")
            dirty = False
        except UnicodeDecodeError:
            text = data.decode("utf-8", "surrogateescape")
            dirty = True
        long_lines = _long_lines(text) if len(data) > MAX_LINE_BYTES else []
        out: list[AgentEvent] = []
        corr = self._correlator
        queues, learn, outcome, delivery = corr.queues, corr.learn, corr.outcome, corr.delivery
        resolve = self._resolve
        find, rfind = text.find, text.rfind
        parsed = truncated = 0
        line_end = -1
        for m in self._matches(text):
            at = m.start()
            if at < line_end:
                continue  # the rest of a line already decided
            qid = m[GROUP_QID]
            line_end = find("\n", m.end())
            if line_end < 0:
                line_end = len(text)
            if long_lines and _inside(long_lines, at):
                continue  # counted as too_long
            kind = m.lastindex
            if dirty and _SURROGATE.search(text, rfind("\n", 0, at) + 1, line_end):
                outcome_of_repair = self._feed_repaired(text, at, out)
                if outcome_of_repair == "parsed":
                    parsed += 1
                elif outcome_of_repair == "truncated":
                    truncated += 1
                continue
            if kind == GROUP_REMOVED:
                q = queues.pop(qid, None)
                if q is not None and q["h"]:
                    corr.park(qid, q)
            elif kind in _UUID_SOURCES:
                source = _UUID_SOURCES[kind]
                q = queues.get(qid)
                if q is None or q["s"] > source:
                    learn(qid, m[kind].lower(), source, out)
            elif kind == GROUP_TRUNCATED:
                truncated += 1
                continue
            else:
                start = rfind("\n", 0, at) + 1
                stamp = stamp_of(text, start, at) if at > start else None
                if kind in (GROUP_STATUS, GROUP_TEXT):
                    to = m[GROUP_TO]
                    delivery(
                        qid,
                        stamp,
                        text[start:line_end],
                        to if to is not None else m[GROUP_TO_BARE],
                        m[GROUP_RELAY],
                        m[GROUP_STATUS].lower(),
                        m[GROUP_DSN],
                        status_text(text, m.end(), line_end) if kind == GROUP_TEXT else "",
                        resolve(stamp) if stamp else None,
                        out,
                    )
                else:
                    rec = record_from_match(m, stamp, text, start, line_end)
                    if isinstance(rec, Expired):
                        outcome(rec, resolve(stamp) if stamp else None, out)
                    elif isinstance(rec, Reinjected):
                        corr.reinjected(qid, rec.parent, out)
            parsed += 1
        stats.parsed += parsed
        if truncated:
            stats.unparsed["truncated"] = stats.unparsed.get("truncated", 0) + truncated
        if long_lines:
            stats.unparsed["too_long"] = stats.unparsed.get("too_long", 0) + len(long_lines)
        stats.ignored += lines - parsed - truncated - len(long_lines)
        self._count(out)
        return out

    @staticmethod
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

    def _feed_repaired(self, text: str, at: int, out: list[AgentEvent]) -> str:
        """A line with invalid UTF-8: decode it again with U+FFFD and parse that. Returns
        ``parsed`` or the Unparsed reason."""
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        raw = text[start : end if end >= 0 else len(text)].encode("utf-8", "surrogateescape")
        rec = parse_text(raw.decode("utf-8", "replace"))
        if isinstance(rec, Unparsed):
            return rec.reason
        self.stats.invalid_utf8 += 1
        self._correlator.on_record(rec, self._resolve(rec.stamp) if rec.stamp else None, out)
        return "parsed"

    def flush(self) -> list[AgentEvent]:
        """End of input (``parse``): lines still waiting for a UUID are counted as uncorrelated."""
        self._correlator.flush()
        self.stats.uncorrelated = self._correlator.uncorrelated
        return []

    def expire(self, now: dt.datetime) -> None:
        """Drop queue IDs silent for 24 h and held lines past their hold time."""
        self._correlator.expire(to_micros(now))
        self.stats.uncorrelated = self._correlator.uncorrelated

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state; ``Pipeline(state=snapshot())`` continues where this one is.
        Counters are not state: they restart at zero."""
        return {
            "version": STATE_VERSION,
            "years": self._years.state(),
            "correlator": _copy(self._correlator.state()),
        }

    # -- internals --------------------------------------------------------------------------

    def _resolve(self, stamp: str) -> int | None:
        if stamp == self._last_stamp:
            return self._last_micros
        micros = self._years.resolve(stamp)
        self._last_stamp, self._last_micros = stamp, micros
        return micros

    def _count(self, events: list[AgentEvent]) -> None:
        counts = self.stats.events
        for event in events:
            counts[event.event_type] = counts.get(event.event_type, 0) + 1
        self.stats.uncorrelated = self._correlator.uncorrelated


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


def _copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
