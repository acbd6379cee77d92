"""The pipeline: bytes of the log in, wire events out, with counters and resumable state.

:meth:`Pipeline.feed` takes whole lines in large buffers. It does not split them: it decodes the
buffer once, lets one compiled regex (:data:`~sendpost_agent.parse.postfix.lines.SYSLOG_SCAN`,
anchored on the literal ``"]: "``) jump to the lines that can matter, reads only those, with the
same patterns and record builder as :func:`~sendpost_agent.parse.postfix.lines.parse_line`, and
counts the rest with ``bytes.count``. Figures in docs/benchmarks.md.

Counters (:class:`ParseStats`):

* ``lines``: every line fed;
* ``parsed``: lines that gave a record (delivery, UUID, expiry, removal, re-injection);
* ``ignored``: lines with nothing the agent needs (other Postfix lines, other programs);
* ``unparsed``: reason → count for lines that could matter but were not usable: ``too_long``
  (over 64 KiB), ``truncated`` (a delivery line cut before ``status=``);
* ``invalid_utf8``: parsed lines that held invalid UTF-8 (decoded with U+FFFD and still used);
* ``uncorrelated``: delivery/expiry lines given up for lack of a UUID;
* ``hops_resolved``: ``sent ... queued as NEWID`` lines to an internal relay found to be hops
  (NEWID seen in this log);
* ``hops_unresolved``: such lines whose NEWID never showed: reported as ``delivered``;
* ``recipients_from_orig_to``: events whose ``recipient`` is Postfix's ``orig_to=`` (they carry
  the rewritten ``to=`` as ``final_recipient``);
* ``events``: event type → count.
"""

from __future__ import annotations

import datetime as dt
import gc
import marshal
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sendpost_agent.parse.mta import ParseStats, StateChanges
from sendpost_agent.parse.postfix.correlate import STATE_VERSION as CORRELATOR_STATE_VERSION
from sendpost_agent.parse.postfix.correlate import Correlator, Out
from sendpost_agent.parse.postfix.scan import (
    OP_DELIVERY,
    OP_EXPIRED,
    OP_REINJECTED,
    OP_REMOVED,
    OP_UUID,
    Scanned,
    scan,
)
from sendpost_agent.parse.relays import DEFAULT_INTERNAL_RELAYS, InternalRelays
from sendpost_agent.parse.timestamps import YearGuess, from_micros, to_micros

if TYPE_CHECKING:  # imported when used: `parse` starts without the wire schema
    from sendpost_wire import AgentEvent

STATE_VERSION = 1


class Pipeline:
    """Parser + year inference + correlator, fed with whole lines (see the module docstring).

    ``reference_time`` anchors the year of classic timestamps (the daemon passes now, ``parse``
    the file's modification time); ``tz`` is their time zone (default: the host's).
    ``track_changes``: remember which queue IDs changed, for :meth:`changes` (the daemon's
    saves); off, nothing is remembered between feeds. ``own_state``: ``state`` is handed over
    (freshly loaded) and used as it is, not copied (100,000 held queue IDs: 0.7 s, 70 MB).
    """

    def __init__(
        self,
        *,
        internal_relays: Sequence[str] = DEFAULT_INTERNAL_RELAYS,
        state: Mapping[str, Any] | None = None,
        reference_time: dt.datetime | None = None,
        tz: dt.tzinfo | None = None,
        track_changes: bool = False,
        own_state: bool = False,
    ) -> None:
        if state is not None and state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown pipeline state version {state.get('version')!r}")
        relays = InternalRelays(internal_relays)
        self.stats = ParseStats()
        self._years = YearGuess(reference_time, tz, state["years"] if state else None)
        corr_state = state["correlator"] if state else None
        if corr_state is not None and not own_state:
            corr_state = _copy(corr_state)
        self._correlator = Correlator(relays.__contains__, corr_state)
        self._last_stamp: str | None = None
        self._last_micros: int | None = None
        self._stamps: dict[int | None, str] = {}
        self._tracking = track_changes
        self._complete = state is None  # no state to build on: the first changes are all of it

    def feed(self, data: bytes) -> list[AgentEvent]:
        """Process zero or more complete lines; returns their events in log order."""
        if not data:
            return []
        with _no_gc():
            return [_event(text) for text in self.render(self.apply(scan(data)))]

    def feed_json(self, data: bytes) -> list[str]:
        """:meth:`feed`, each event as its compact JSON object (ASCII, the same object as
        ``json.dumps(event.to_wire())``), without building the event objects."""
        if not data:
            return []
        with _no_gc():
            return self.render(self.apply(scan(data)))

    def feed_jsonl(self, data: bytes | bytearray | memoryview) -> bytes:
        """:meth:`feed_json` as JSON lines (each event followed by a newline) in one bytes
        object; ``data`` may be any buffer (``parse`` passes views of one reused buffer)."""
        if not data:
            return b""
        with _no_gc():
            return _lines(self.render(self.apply(scan(bytes(data)))))

    def feed_packed_jsonl(self, packed: bytes | bytearray | memoryview) -> bytes:
        """:meth:`feed_jsonl` of a buffer whose line-local half :func:`scan_packed` already did,
        maybe in another process (``parse`` with two processes): the same bytes out."""
        with _no_gc():
            return _lines(self.render(self.apply(unpack(packed))))

    def apply(self, scanned: Scanned) -> Out:
        """The order-dependent half of :meth:`feed`: year inference and correlation of the
        operations :func:`~sendpost_agent.parse.postfix.scan.scan` found. Returns (UUID, time,
        line-local fields) per event; see :meth:`render`."""
        out: Out = []
        _replay(self._correlator, scanned.ops, self._resolve, out)
        self._count(
            scanned.lines, scanned.parsed, scanned.truncated, scanned.too_long,
            scanned.invalid_utf8,
        )  # fmt: skip
        self._count_events(out)
        return out

    def _count_events(self, out: Out) -> None:
        stats = self.stats
        counts = stats.events
        for item in out:
            name = item[2][0]  # Prepared: (event_type, final_recipient, head, tail)
            counts[name] = counts.get(name, 0) + 1
            if item[2][1] is not None:
                stats.recipients_from_orig_to += 1

    def _count(self, lines: int, parsed: int, truncated: int, too_long: int, invalid: int) -> None:
        stats = self.stats
        stats.lines += lines
        stats.parsed += parsed
        stats.invalid_utf8 += invalid
        unparsed = stats.unparsed
        if truncated:
            unparsed["truncated"] = unparsed.get("truncated", 0) + truncated
        if too_long:
            unparsed["too_long"] = unparsed.get("too_long", 0) + too_long
        stats.ignored += lines - parsed - truncated - too_long
        self._count_correlator()

    def _count_correlator(self) -> None:
        stats, corr = self.stats, self._correlator
        stats.uncorrelated = corr.uncorrelated
        stats.hops_resolved = corr.hops_resolved
        stats.hops_unresolved = corr.hops_unresolved
        if not self._tracking:
            corr.touched.clear()

    def render(self, events: Out) -> list[str]:
        """Events from :meth:`apply` as compact JSON objects (see :meth:`feed_json`)."""
        stamps = self._stamps
        rendered = []
        for uuid, micros, p in events:
            stamp = stamps.get(micros)
            if stamp is None:
                stamp = _stamp_json(micros)
                if len(stamps) >= 4096:
                    stamps.clear()
                stamps[micros] = stamp
            rendered.append(f'{{"message_id":"{uuid}{p[2]}{stamp}{p[3]}')  # head, tail
        return rendered

    def flush(self) -> list[AgentEvent]:
        """End of input (``parse``): lines still waiting for a UUID are counted as
        uncorrelated; hop candidates still waiting for their NEWID are deliveries (their
        events are returned)."""
        return [_event(text) for text in self.render(self._flush())]

    def flush_json(self) -> list[str]:
        """:meth:`flush`, each event as its compact JSON object."""
        return self.render(self._flush())

    def _flush(self) -> Out:
        out: Out = []
        self._correlator.flush(out)
        self._count_events(out)
        self._count_correlator()
        return out

    def expire(self, now: dt.datetime, *, forget: bool = True) -> list[str]:
        """Hop candidates whose window ended before ``now`` are deliveries: their events, as
        JSON objects (the daemon calls this while the log is quiet); with ``forget``, also drop
        queue IDs silent for 24 h and held lines past their hold time (a pass over them all)."""
        out: Out = []
        self._correlator.expire(to_micros(now), out, forget=forget)
        self._count_events(out)
        self._count_correlator()
        return self.render(out)

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state; ``Pipeline(state=snapshot())`` continues where this one is.
        Counters are not state: they restart at zero."""
        return {
            "version": STATE_VERSION,
            "years": self._years.state(),
            "correlator": _copy(self._correlator.state()),
        }

    def changes(self) -> StateChanges:
        """The state that changed since the last call (the first time, when this pipeline was
        built without state: all of it); ``whole_state`` of everything saved so far plus these
        equals :meth:`snapshot`. Needs ``track_changes``. Costs what changed, not what is held."""
        corr = self._correlator
        head = {
            "version": STATE_VERSION,
            "years": self._years.state(),
            "correlator": {
                "version": CORRELATOR_STATE_VERSION,
                "last_us": corr.last_us,
                # hop candidates and recent removals: small (bounded), saved whole each time
                "hops": corr.hops,
                "recent": corr.recent,
            },
        }
        touched, corr.touched = corr.touched, set()
        if self._complete:
            self._complete = False
            queues = {qid: q.to_json() for qid, q in corr.queues.items()}
            return StateChanges(head, queues, dict(corr.orphans), True)
        orphans = corr.orphans
        return StateChanges(
            head,
            {qid: corr.entry(qid) for qid in touched},
            {qid: orphans.get(qid) for qid in touched},
            False,
        )

    def unsaved(self, changes: StateChanges) -> None:
        """``changes`` could not be saved: the next :meth:`changes` includes them again."""
        if changes.complete:
            self._complete = True
        else:
            self._correlator.touched.update(changes.queues)

    # -- internals --------------------------------------------------------------------------

    def _resolve(self, stamp: str) -> int | None:
        if stamp == self._last_stamp:
            return self._last_micros
        micros = self._years.resolve(stamp)
        self._last_stamp, self._last_micros = stamp, micros
        return micros


def _lines(events: list[str]) -> bytes:
    """Compact JSON events as JSON lines in one bytes object."""
    if not events:
        return b""
    events.append("")  # the last event's newline, without copying the joined text again
    return "\n".join(events).encode()


def scan_packed(data: bytes) -> bytes:
    """:func:`scan` of a buffer, its result packed into one bytes object for another process
    (:meth:`Pipeline.feed_packed_jsonl` reads it). Plumbing, no rule: the operations are the
    ones :func:`scan` returns, written with :mod:`marshal` (C, no per-object Python calls;
    ≈ 4× cheaper than pickling them, docs/benchmarks.md); the rare operations that carry a
    record object (expiry, re-injection, a line with invalid UTF-8) are pickled apart."""
    if not data:
        return _EMPTY
    with _no_gc():
        return pack(scan(data))


def pack(scanned: Scanned) -> bytes:
    """``scanned`` as bytes for :func:`unpack` (its operation list is reused: pass a result
    that is not used afterwards)."""
    ops = scanned.ops
    rare: list[tuple[int, tuple[Any, ...]]] = []
    for i in range(len(ops)):
        op = ops[i]
        kind = op[0]
        if kind != OP_DELIVERY and kind != OP_UUID and kind != OP_REMOVED:
            rare.append((i, op))
            ops[i] = _RARE
    return marshal.dumps(
        (ops, scanned.lines, scanned.parsed, scanned.truncated, scanned.too_long,
         scanned.invalid_utf8, pickle.dumps(rare, pickle.HIGHEST_PROTOCOL) if rare else b""),
        4,  # ASCII strings written as they are; version 2 re-encodes each one (slower both ways)
    )  # fmt: skip


def unpack(packed: bytes | bytearray | memoryview) -> Scanned:
    """The inverse of :func:`pack`."""
    # bytes from pack() in this program's own child, through a private pipe: trusted
    ops, lines, parsed, truncated, too_long, invalid, rare = marshal.loads(packed)  # noqa: S302
    if rare:
        for i, op in pickle.loads(rare):  # noqa: S301
            ops[i] = op
    return Scanned(ops, lines, parsed, truncated, too_long, invalid)


_RARE = (-1,)
_EMPTY = marshal.dumps(([], 0, 0, 0, 0, 0, b""), 4)


def _replay(corr: Correlator, ops: list[tuple[Any, ...]], resolve: Callable[[str], int | None],
            out: Out) -> None:  # fmt: skip
    """Apply :func:`scan`'s operations to the correlator in log order (:meth:`Pipeline.apply`);
    ``resolve`` gives a timestamp's log time."""
    queues, hops = corr.queues, corr.hops
    for op in ops:
        kind = op[0]
        if kind == OP_DELIVERY:
            _, qid, stamp, line, recipient, relay, status, dsn, text, prepared, final = op
            micros = resolve(stamp) if stamp else None
            corr.delivery(qid, stamp, line, recipient, relay, status, dsn, text, micros, out,
                          prepared, final)  # fmt: skip
        elif kind == OP_UUID:
            if hops:
                corr.seen(op[1], out)
            q = queues.get(op[1])
            if q is None or q.source > op[3]:
                corr.learn(op[1], op[2], op[3], out)
        elif kind == OP_REMOVED:
            corr.removed(op[1], out)
        elif kind == OP_EXPIRED:
            rec = op[1]
            corr.outcome(rec, resolve(rec.stamp) if rec.stamp else None, out)
        elif kind == OP_REINJECTED:
            corr.reinjected(op[1].queue_id, op[1].parent, out)
        else:
            rec = op[1]
            corr.on_record(rec, resolve(rec.stamp) if rec.stamp else None, out)


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused while one buffer is processed. A buffer allocates
    hundreds of thousands of small tuples and strings (none in a reference cycle), which would
    otherwise start a collection every 700 allocations, each walking the correlator's state:
    with it paused, ``parse`` of the benchmark log takes ≈ 20% less CPU (docs/benchmarks.md).
    Reference counting still frees everything; the collector runs again after the buffer."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _event(text: str) -> AgentEvent:
    """The event whose compact JSON object is ``text``, read as the platform reads it
    (``sendpost_wire.validate_event``); ``ValueError`` naming the problems if the platform
    would refuse it (a bug here: never dropped silently)."""
    import json  # here: `parse` and the daemon never read their JSON back

    from sendpost_wire import validate_event

    event = validate_event(json.loads(text), 0)
    if isinstance(event, list):
        problems = "; ".join(f"{e.field}: {e.message}" for e in event)
        raise ValueError(f"the parser made an event the platform refuses ({problems}): {text}")
    return event


_DAY_US = 86_400_000_000
_days: dict[int, str] = {}


def _stamp_json(micros: int | None) -> str:
    """The ``"timestamp"`` member (with the quote that closes the event type before it):
    ``format_timestamp`` of the time, with the date part computed once per day."""
    if micros is None:
        return ""
    day, rest = divmod(micros, _DAY_US)
    date = _days.get(day)
    if date is None:
        midnight = from_micros(day * _DAY_US)  # UTC, as wire's format_timestamp writes it
        if not 1000 <= midnight.year <= 9999:  # odd years: leave them to the library
            from sendpost_wire.schema import format_timestamp

            return f',"timestamp":"{format_timestamp(from_micros(micros))}"'
        if len(_days) >= 1000:
            _days.clear()
        _days[day] = date = midnight.strftime("%Y-%m-%dT")
    seconds, fraction = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if fraction:
        return f',"timestamp":"{date}{hours:02d}:{minutes:02d}:{seconds:02d}.{fraction:06d}Z"'
    return f',"timestamp":"{date}{hours:02d}:{minutes:02d}:{seconds:02d}Z"'


def _copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
