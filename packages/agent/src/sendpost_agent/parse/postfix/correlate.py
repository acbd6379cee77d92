"""The correlator: queue IDs → message UUIDs, and records → wire events.

A pure state machine: records (with their resolved log time in microseconds) go in, events
come out, and everything it knows is in plain dicts and lists that :meth:`Correlator.state`
returns as JSON-serialisable data. No clock: time is the log's own, or the ``now`` passed to
:meth:`Correlator.expire`.

Rules
-----
* A queue ID learns its UUID from, best first: the parent of a re-injection hop, the
  ``X-Sendpost-Message-UUID`` header INFO line, qmgr's ``from=<bounces+UUID+...@sp-bounce...>``,
  a ``message-id=<UUID@...>``. A better source replaces a worse one.
* Delivery and expiry lines of a queue ID with no UUID yet are **held** (in order) and replayed
  the moment the UUID is learnt. At ``removed`` a queue ID without a UUID keeps its held lines
  for :data:`HOLD_US` more of log time (a re-injection parent may still name it), then they are
  dropped and counted as ``uncorrelated``. At most :data:`MAX_HELD` lines are held in all; the
  oldest go first (counted).
* Hops by evidence: ``status=sent (... queued as NEWID)`` to an internal relay is a hop (no
  event, NEWID inherits the UUID) when NEWID is seen in this log: at once when NEWID's lines
  came first (a live queue ID, an orphan, or one removed within :data:`HOP_WINDOW_US` before),
  else when a line of NEWID arrives within :data:`HOP_WINDOW_US` of log time after the ``sent``
  line. A
  candidate that sees no line of NEWID in that window (nor by :meth:`Correlator.expire` or
  :meth:`Correlator.flush`) is a delivery to a relay whose log is elsewhere: it gives its
  ``delivered`` event then, with the relay's reply, and is counted (``hops_unresolved``).
  At most :data:`MAX_HOP_LINES` candidate lines wait; beyond that the oldest are released.
  The queue ID of an smtpd line with ``orig_queue_id=PARENT`` inherits PARENT's UUID.
* Deferred recipients are pending; a terminal status (sent, bounced, softbounce) or a hop ends
  that. qmgr ``status=expired`` gives ``soft_bounced`` for each pending recipient, with the last
  deferral's reply; with no recipient known, one ``soft_bounced`` without a recipient.
* ``removed`` forgets the queue ID (short IDs are reused); so does 24 h (:data:`TTL_US`) without
  a line for it (:meth:`Correlator.expire`).

Saving
------
Every queue ID whose entry in ``queues`` or ``orphans`` may have changed is added to
:attr:`Correlator.touched` (the code that changes an entry adds its ID), so a save writes
those entries only (docs/wal.md, "Correlation state").
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from sendpost_agent.parse.events import Reply, analyse_reply, event_type_for
from sendpost_agent.parse.postfix.scan import Prepared, prepare
from sendpost_agent.parse.records import (
    SOURCE_INHERITED,
    Delivery,
    Expired,
    Record,
    Removed,
    UuidSeen,
)

TTL_US = 24 * 3600 * 1_000_000
HOLD_US = 300 * 1_000_000
MAX_HELD = 10_000
HOP_WINDOW_US = 30 * 1_000_000
MAX_HOP_LINES = 10_000
MAX_RECENT = 100_000
STATE_VERSION = 1
_NO_SOURCE = 99
_QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]{5,})")

Held = list[Any]  # [encoded record, micros]
_T = TypeVar("_T", str, str | None)
Out = list[tuple[str, int | None, Prepared]]
"""Events as they leave the correlator: (UUID, log time in µs or None, line-local fields)."""


def _encode(rec: Delivery | Expired) -> list[Any]:
    """A held line as saved state (JSON: a list), :func:`_decode` reads it back."""
    if isinstance(rec, Delivery):
        return _encode_delivery(rec.queue_id, rec.stamp, rec.line, rec.recipient, rec.relay,
                                rec.status, rec.dsn, rec.text, rec.final_recipient)  # fmt: skip
    return ["e", rec.queue_id, rec.stamp, rec.line, rec.status]


def _encode_delivery(
    qid: str, stamp: str | None, line: str, recipient: str, relay: str, status: str,
    dsn: str | None, text: str, final: str | None,
) -> list[Any]:  # fmt: skip
    """:func:`_encode` of the :class:`Delivery` with these fields, without building the record
    first (the hot path has the fields, not the record)."""
    data = ["d", qid, stamp, line, recipient, relay, status, dsn, text]
    if final is not None:
        data.append(final)
    return data


def _decode(data: list[Any]) -> Delivery | Expired:
    if data[0] == "d":
        return Delivery(*data[1:])
    return Expired(*data[1:])


Pending = tuple[str | None, str, str | None, str | None]
"""A deferred recipient: (recipient, last deferral text, dsn, final recipient)."""


class Queue:
    """What the correlator holds per queue ID, compact (100,000 deferred queue IDs are held
    during a provider outage): ``uuid`` and ``source`` (its rank, ``SOURCE_*``), ``t`` the log
    time (µs) of its last line, ``held`` its lines waiting for the UUID (``[encoded record,
    µs]``), ``pending`` its deferred recipients, ``children`` the queue IDs waiting for its UUID.
    An empty list or map is None; one pending recipient is a :data:`Pending` tuple, several a
    dict recipient → the rest of it. Saved as JSON (:meth:`to_json`, the format of state
    version 1: ``{"u", "s", "t", "h", "p": {recipient: [text, dsn(, final)]}, "c"}``)."""

    __slots__ = ("children", "held", "pending", "source", "t", "uuid")

    def __init__(self, uuid: str | None, source: int, t: int | None) -> None:
        self.uuid = uuid
        self.source = source
        self.t = t
        self.held: list[Held] | None = None
        self.pending: Pending | dict[str, tuple[str, str | None, str | None]] | None = None
        self.children: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        pending = {
            rcpt: [text, dsn] if final is None else [text, dsn, final]
            for rcpt, text, dsn, final in self.pending_items()
        }
        return {"u": self.uuid, "s": self.source, "t": self.t, "h": self.held or [],
                "p": pending, "c": self.children or []}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Queue:
        q = cls(data["u"], data["s"], data["t"])
        q.held = data["h"] or None
        q.children = data["c"] or None
        for rcpt, last in data["p"].items():
            q.defer(rcpt, last[0], last[1], last[2] if len(last) > 2 else None)
        return q

    def defer(self, rcpt: str, text: str, dsn: str | None, final: str | None) -> None:
        """``rcpt`` is pending, with this deferral's text and dsn (the texts of an outage are
        mostly the same: kept once, see :func:`_shared`)."""
        text, dsn = _shared(text), _shared(dsn)
        p = self.pending
        if p is None or (isinstance(p, tuple) and p[0] == rcpt):
            self.pending = (rcpt, text, dsn, final)
        elif isinstance(p, tuple):
            self.pending = {str(p[0]): p[1:], rcpt: (text, dsn, final)}
        else:
            p[rcpt] = (text, dsn, final)

    def settle(self, rcpt: str) -> None:
        """``rcpt`` is no longer pending."""
        p = self.pending
        if isinstance(p, tuple):
            if p[0] == rcpt:
                self.pending = None
        elif p is not None:
            p.pop(rcpt, None)

    def pending_items(self) -> list[Pending]:
        """The pending recipients, in the order they were first deferred."""
        p = self.pending
        if p is None:
            return []
        if isinstance(p, tuple):
            return [p]
        return [(rcpt, *rest) for rcpt, rest in p.items()]


_SHARED: dict[str | None, str | None] = {}
_SHARED_MAX, _SHARED_TEXT = 4096, 512


def _shared(text: _T) -> _T:
    """One object per distinct short text (a deferral text or dsn): at most
    :data:`_SHARED_MAX` texts of at most :data:`_SHARED_TEXT` characters are kept; when full,
    the table starts again (the texts already shared stay shared)."""
    if text is None or len(text) > _SHARED_TEXT:
        return text
    kept = _SHARED.get(text)
    if kept is None:
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        _SHARED[text] = kept = text
    return kept


class Correlator:
    """See the module docstring. ``is_internal(relay)`` says whether a ``relay=`` value is a
    hop to our own content filter or Postfix instance.

    Compiled, this class and :class:`Queue` are extension types whose attributes are the C
    fields that ``correlate.pxd`` declares: a new attribute must be declared there too."""

    max_held = MAX_HELD

    def __init__(self, is_internal: Callable[[str], bool], state: dict[str, Any] | None = None):
        self._is_internal = is_internal
        self.queues: dict[str, Queue] = {}
        self.orphans: dict[str, dict[str, Any]] = {}  # removed, no UUID: {"h": held, "d": deadline}
        self.held = 0
        self.last_us: int | None = None
        self.orphans_due: int | None = None  # the first orphan's deadline (None: none known)
        # Oldest first; entries may be stale (skipped): deques, as dicts slow down when used as
        # queues. Queue IDs that held lines, and (deadline, queue ID) of orphans.
        self.holding: deque[str] = deque()
        self.orphan_order: deque[tuple[int, str]] = deque()
        # Hop candidates: NEWID -> {"u": parent's UUID, "d": deadline (µs), "l": [[encoded
        # delivery, µs], ...]}, oldest first; and queue IDs removed lately -> log time (µs).
        self.hops: dict[str, dict[str, Any]] = {}
        self.hops_due: int | None = None  # the first candidate's deadline (None: none)
        self.recent: dict[str, int] = {}
        # (deadline, NEWID), oldest first; entries may be stale (skipped)
        self.hop_order: deque[tuple[int, str]] = deque()
        self._recent_limit = 1024  # prune self.recent when it reaches this size
        self.hop_lines = 0
        # counters, not state: restart at zero
        self.uncorrelated = 0
        self.hops_resolved = 0  # sent lines found to be hops
        self.hops_unresolved = 0  # hop candidates whose NEWID never showed: reported delivered
        # Queue IDs whose entries (in queues or orphans) changed since the owner last took them.
        self.touched: set[str] = set()
        if state:
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"unknown correlator state version {state.get('version')!r}")
            self.queues = {qid: Queue.from_json(q) for qid, q in state["queues"].items()}
            self.orphans = state["orphans"]
            self.last_us = state["last_us"]
            self.orphans_due = min((o["d"] for o in self.orphans.values()), default=None)
            self.holding = deque(qid for qid, q in self.queues.items() if q.held)
            self.orphan_order = deque(sorted((o["d"], qid) for qid, o in self.orphans.items()))
            self.held = sum(len(q.held or ()) for q in self.queues.values()) + sum(
                len(o["h"]) for o in self.orphans.values()
            )
            self.hops = state.get("hops", {})
            self.recent = state.get("recent", {})
            self.hop_order = deque(sorted((h["d"], k) for k, h in self.hops.items()))
            self._recent_limit = max(1024, 2 * len(self.recent))
            self.hops_due = self.hop_order[0][0] if self.hop_order else None
            self.hop_lines = sum(len(h["l"]) for h in self.hops.values())

    def state(self) -> dict[str, Any]:
        """Everything the correlator knows, as JSON-serialisable data (a pass over every entry:
        the daemon saves :meth:`entry` of the changed ones instead)."""
        return {
            "version": STATE_VERSION,
            "queues": {qid: q.to_json() for qid, q in self.queues.items()},
            "orphans": self.orphans,
            "last_us": self.last_us,
            "hops": self.hops,
            "recent": self.recent,
        }

    def entry(self, qid: str) -> dict[str, Any] | None:
        """The saved form of ``qid``'s entry in ``queues`` (None: none)."""
        q = self.queues.get(qid)
        return None if q is None else q.to_json()

    # -- input ------------------------------------------------------------------------------

    def on_record(self, rec: Record, micros: int | None, out: Out) -> None:
        """Feed one record; ``micros`` is its log time (None: not known, the log clock stays)."""
        if isinstance(rec, Delivery | Expired):
            self.outcome(rec, micros, out)
        elif isinstance(rec, UuidSeen):
            self.learn(rec.queue_id, rec.uuid, rec.source, out)
        elif isinstance(rec, Removed):
            self.removed(rec.queue_id, out)
        else:
            self.reinjected(rec.queue_id, rec.parent, out)

    def learn(self, qid: str, uuid: str, source: int, out: Out) -> None:
        """A line revealed the UUID of ``qid``."""
        self.touched.add(qid)
        if self.hops:
            self.seen(qid, out)
        q = self.queues.get(qid)
        if q is None:
            self.queues[qid] = Queue(uuid, source, self.last_us)
            return
        q.t = self.last_us
        self._learn(q, uuid, source, out)

    def removed(self, qid: str, out: Out) -> None:
        """``qid`` is finished; it may be reused by a new message from now on. It stays known
        as seen in this log for :data:`HOP_WINDOW_US` (evidence for a late ``queued as qid``)."""
        self.touched.add(qid)
        if self.hops:
            self.seen(qid, out)
        q = self.queues.pop(qid, None)
        if q is not None and q.held:
            self.park(qid, q)
        recent = self.recent
        recent[qid] = self.last_us or 0
        if len(recent) >= self._recent_limit:
            self._prune_recent()

    def _prune_recent(self) -> None:
        """Forget removals older than :data:`HOP_WINDOW_US` (at most :data:`MAX_RECENT` kept),
        in one pass when the dict has doubled since the last one (amortised O(1) per removal)."""
        cutoff = (self.last_us or 0) - HOP_WINDOW_US
        kept = {qid: then for qid, then in self.recent.items() if then >= cutoff}
        if len(kept) > MAX_RECENT:
            newest = sorted(kept.items(), key=lambda item: item[1])[-MAX_RECENT:]
            kept = dict(newest)
        self.recent = kept
        self._recent_limit = max(1024, 2 * len(kept))

    def _removed_lately(self, qid: str) -> bool:
        """``qid``'s ``removed`` was read within :data:`HOP_WINDOW_US` of log time."""
        then = self.recent.get(qid)
        return then is not None and then >= (self.last_us or 0) - HOP_WINDOW_US

    def seen(self, qid: str, out: Out, micros: int | None = None) -> None:
        """A line of ``qid`` (logged at ``micros``, when it has a time): a hop candidate
        waiting for it is a hop (called before the line is applied, so that the line finds the
        inherited UUID) — unless the line comes after the candidate's window, which the time
        check that follows then closes (a delivery)."""
        hop = self.hops.get(qid)
        if hop is None or (micros is not None and micros >= hop["d"]):
            return
        del self.hops[qid]
        self.hops_resolved += len(hop["l"])
        self._link_child(qid, hop["u"], out)

    def park(self, qid: str, q: Queue) -> None:
        """The held lines of a removed queue ID: dropped if it had a UUID, else kept a while."""
        held = q.held or []
        self.touched.add(qid)
        if q.uuid is None:
            deadline = (self.last_us or 0) + HOLD_US
            earlier = self.orphans.pop(qid, None)  # the same short ID, removed twice
            if earlier is not None:
                self._give_up(len(earlier["h"]))
            self.orphans[qid] = {"h": held, "d": deadline}
            self.orphan_order.append((deadline, qid))
            if self.orphans_due is None:
                self.orphans_due = deadline
        else:
            self.held -= len(held)

    def reinjected(self, qid: str, parent_qid: str, out: Out) -> None:
        """smtpd logged ``qid`` with ``orig_queue_id=parent_qid``."""
        if self.hops:
            self.seen(qid, out)
            self.seen(parent_qid, out)
        q = self._queue(qid)
        parent = self._queue(parent_qid)
        if parent.uuid is not None:
            self._learn(q, parent.uuid, SOURCE_INHERITED, out)
        elif parent.children is None:
            parent.children = [qid]
        elif qid not in parent.children:
            parent.children.append(qid)

    def outcome(self, rec: Delivery | Expired, micros: int | None, out: Out) -> None:
        """A delivery or expiry line: an event now, or held until the UUID is known."""
        if self.hops:
            self.seen(rec.queue_id, out, micros)
        if micros is not None:
            self.last_us = micros
            if self.orphans_due is not None and micros >= self.orphans_due:
                self._drop_orphans(micros)
            if self.hops_due is not None and micros >= self.hops_due:
                self.release_hops(micros, out)
        else:
            micros = self.last_us
        q = self._queue(rec.queue_id)
        if q.uuid is None:
            self._hold(q, rec.queue_id, _encode(rec), micros)
        else:
            self._apply(q, rec, micros, out)

    def _hold(self, q: Queue, qid: str, data: list[Any], micros: int | None) -> None:
        """A line of ``qid`` (:func:`_encode`) waits for its UUID."""
        if q.held is None:
            q.held = []
        if not q.held:
            self.holding.append(qid)
        q.held.append([data, micros])
        self.held += 1
        if self.held > MAX_HELD:
            self._drop_oldest_held()

    def _queue(self, qid: str) -> Queue:
        self.touched.add(qid)
        q = self.queues.get(qid)
        if q is None:
            q = self.queues[qid] = Queue(None, _NO_SOURCE, None)
        q.t = self.last_us
        return q

    def _learn(self, q: Queue, uuid: str, source: int, out: Out) -> None:
        if source >= q.source:
            return
        q.uuid, q.source = uuid, source
        if q.held:
            held, q.held = q.held, None
            self.held -= len(held)
            for data, micros in held:
                self._apply(q, _decode(data), micros, out)
        if q.children:
            children, q.children = q.children, None
            for child in children:
                self._link_child(child, uuid, out)

    def _link_child(self, child: str, uuid: str, out: Out) -> None:
        self.touched.add(child)
        orphan = self.orphans.pop(child, None)
        if orphan is not None:
            self.held -= len(orphan["h"])
            tmp = Queue(uuid, SOURCE_INHERITED, None)
            for data, micros in orphan["h"]:
                self._apply(tmp, _decode(data), micros, out)
            return
        if self.hops:
            self.seen(child, out)
        self._learn(self._queue(child), uuid, SOURCE_INHERITED, out)

    def _apply(self, q: Queue, rec: Delivery | Expired, micros: int | None, out: Out) -> None:
        if isinstance(rec, Expired):
            self._expire_message(q, rec, micros, out)
        else:
            self._deliver(q, rec.queue_id, rec.line, rec.recipient, rec.relay, rec.status,
                          rec.dsn, rec.text, micros, out, None, rec.final_recipient)  # fmt: skip

    def delivery(
        self, qid: str, stamp: str | None, line: str, recipient: str, relay: str, status: str,
        dsn: str | None, text: str, micros: int | None, out: Out, prepared: Prepared | None = None,
        final: str | None = None,
    ) -> None:  # fmt: skip
        """A delivery line, as fields (the pipeline's hot path: no record object unless held).
        ``prepared``: the event's line-local part when the caller already has it; ``final``:
        the rewritten address when ``recipient`` came from ``orig_to=``."""
        if self.hops:
            self.seen(qid, out, micros)
        if micros is not None:
            self.last_us = micros
            if self.orphans_due is not None and micros >= self.orphans_due:
                self._drop_orphans(micros)
            if self.hops_due is not None and micros >= self.hops_due:
                self.release_hops(micros, out)
        else:
            micros = self.last_us
        q = self._queue(qid)
        if q.uuid is not None:
            self._deliver(q, qid, line, recipient, relay, status, dsn, text, micros, out, prepared,
                          final)  # fmt: skip
            return
        data = _encode_delivery(qid, stamp, line, recipient, relay, status, dsn, text, final)
        self._hold(q, qid, data, micros)

    def _deliver(
        self, q: Queue, qid: str, line: str, recipient: str, relay: str, status: str,
        dsn: str | None, text: str, micros: int | None, out: Out,
        prepared: Prepared | None = None, final: str | None = None,
    ) -> None:  # fmt: skip
        uuid = str(q.uuid)
        if status == "sent" and "queued as" in text and self._is_internal(relay):
            hop = _QUEUED_AS.findall(text)
            if hop:
                q.settle(recipient)
                child = hop[-1]
                if child in self.queues or child in self.orphans or self._removed_lately(child):
                    self.hops_resolved += 1
                    self._link_child(child, uuid, out)
                else:
                    data = _encode_delivery(qid, None, line, recipient, relay, status, dsn,
                                            text, final)  # fmt: skip
                    self._candidate(child, uuid, micros, data, out)
                return
        if prepared is None:
            event_type = event_type_for(status, dsn)
            if event_type is None:
                return
            prepared = prepare(event_type, analyse_reply(text), recipient, dsn, qid, line,
                                final)  # fmt: skip
        if prepared[0] == "deferred":  # its event type
            q.defer(recipient, text, dsn, final)
        elif q.pending is not None:
            q.settle(recipient)
        out.append((uuid, micros, prepared))

    def _expire_message(self, q: Queue, rec: Expired, micros: int | None, out: Out) -> None:
        items = q.pending_items() or [(None, "", None, None)]
        q.pending = None
        for rcpt, text, dsn, final in items:
            reply: Reply = analyse_reply(text) if text else (None, f"message {rec.status}", None)
            prepared = prepare("soft_bounced", reply, rcpt, dsn, rec.queue_id, rec.line, final)
            out.append((str(q.uuid), micros, prepared))

    # -- hop candidates ---------------------------------------------------------------------

    def _candidate(
        self, child: str, uuid: str, micros: int | None, data: list[Any], out: Out
    ) -> None:
        """A ``sent ... queued as child`` line (:func:`_encode`) whose child has not been seen
        (yet)."""
        hop = self.hops.get(child)
        if hop is None:
            deadline = (self.last_us or 0) + HOP_WINDOW_US
            hop = self.hops[child] = {"u": uuid, "d": deadline, "l": []}
            self.hop_order.append((deadline, child))
            if self.hops_due is None:
                self.hops_due = deadline
        hop["l"].append([data, micros])
        self.hop_lines += 1
        if self.hop_lines > MAX_HOP_LINES:
            self.release_hops(None, out, one=True)

    def release_hops(self, now_us: int | None, out: Out, one: bool = False) -> None:
        """Candidates whose deadline is ``now_us`` or earlier (None: all; ``one``: only the
        oldest) are deliveries."""
        hops, order = self.hops, self.hop_order
        while order:
            deadline, child = order[0]
            hop = hops.get(child)
            if hop is None or hop["d"] != deadline:
                order.popleft()  # resolved, or released already
                continue
            if now_us is not None and deadline > now_us:
                self.hops_due = deadline
                return
            order.popleft()
            self._release(child, out)
            if one:
                break
        self.hops_due = order[0][0] if order else None

    def _release(self, child: str, out: Out) -> None:
        """No line of ``child`` showed: each of its ``sent`` lines is a delivery."""
        hop = self.hops.pop(child)
        self.hop_lines -= len(hop["l"])
        self.hops_unresolved += len(hop["l"])
        for data, micros in hop["l"]:
            rec = _decode(data)
            assert isinstance(rec, Delivery)
            prepared = prepare("delivered", analyse_reply(rec.text), rec.recipient, rec.dsn,
                                rec.queue_id, rec.line, rec.final_recipient)  # fmt: skip
            out.append((hop["u"], micros, prepared))

    # -- bounds and time --------------------------------------------------------------------

    def _oldest_orphan(self) -> str | None:
        """The queue ID of the orphan with the earliest deadline (skipping stale entries)."""
        order, orphans = self.orphan_order, self.orphans
        while order:
            deadline, qid = order[0]
            orphan = orphans.get(qid)
            if orphan is not None and orphan["d"] == deadline:
                return qid
            order.popleft()
        return None

    def _drop_orphans(self, now_us: int) -> None:
        self.orphans_due = None
        while (qid := self._oldest_orphan()) is not None:
            deadline = self.orphans[qid]["d"]
            if deadline > now_us:
                self.orphans_due = deadline
                break
            self.orphan_order.popleft()
            self.touched.add(qid)
            self._give_up(len(self.orphans.pop(qid)["h"]))

    def _drop_oldest_held(self) -> None:
        qid = self._oldest_orphan()
        if qid is not None:
            self.orphan_order.popleft()
            self.touched.add(qid)
            self._give_up(len(self.orphans.pop(qid)["h"]))
            return
        while self.holding:
            qid = self.holding.popleft()
            q = self.queues.get(qid)
            if q is not None and q.held and q.uuid is None:
                self.touched.add(qid)
                self._give_up(len(q.held))
                q.held = None
                return

    def _give_up(self, count: int) -> None:
        self.held -= count
        self.uncorrelated += count

    def expire(self, now_us: int, out: Out, *, forget: bool = True) -> None:
        """Hop candidates past their window are deliveries; with ``forget``, also forget queue
        IDs silent for 24 h and orphaned held lines past their hold time."""
        if self.hops_due is not None and now_us >= self.hops_due:
            self.release_hops(now_us, out)
        if not forget:
            return
        limit = now_us - TTL_US
        for qid in [k for k, q in self.queues.items() if q.t is not None and q.t < limit]:
            self.touched.add(qid)
            self._give_up(len(self.queues.pop(qid).held or ()))
        for qid in [k for k, o in self.orphans.items() if o["d"] < now_us]:
            self.touched.add(qid)
            self._give_up(len(self.orphans.pop(qid)["h"]))

    def flush(self, out: Out) -> None:
        """End of input: every line still held will never be correlated, every hop candidate
        is a delivery."""
        self.release_hops(None, out)
        self.touched.update(self.orphans, self.queues)
        for qid in list(self.orphans):
            self._give_up(len(self.orphans.pop(qid)["h"]))
        for q in self.queues.values():
            if q.held:
                self._give_up(len(q.held))
                q.held = None
