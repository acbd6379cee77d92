"""The MTA seam: the one interface the daemon (app.py), ``parse`` (command.py) and the tests use
to turn a mail server's log into wire events, and the registry that picks the adapter.

An adapter is a folder next to this module whose ``__init__`` exposes ``ADAPTER``, an
:class:`Mta`; today only ``parse/postfix/``. Another MTA is a new folder plus one entry (and its
three-line import function) in :data:`REGISTRY`, whose names are the values the ``mta``
setting accepts (``config.MTAS``). Adapters are imported when asked for: ``parse`` starts with
only the one it needs.

What an adapter gives is a :class:`LogParser`: whole lines in, compact JSON events out, its
counters (:class:`ParseStats`) and its resumable state in the shape the daemon's state store
keeps (:class:`StateChanges`: a small head saved whole, plus one entry per queue ID).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol


class ParseStats:
    """Plain counters (what each means: docs/parsing.md); the daemon turns them into metrics.
    (A plain class: ``parse`` starts without importing ``dataclasses``.)"""

    __slots__ = (
        "events",
        "hops_resolved",
        "hops_unresolved",
        "ignored",
        "invalid_utf8",
        "lines",
        "parsed",
        "recipients_from_orig_to",
        "uncorrelated",
        "unparsed",
    )

    def __init__(self) -> None:
        self.lines = 0
        self.parsed = 0
        self.ignored = 0
        self.unparsed: dict[str, int] = {}
        self.invalid_utf8 = 0
        self.uncorrelated = 0
        self.hops_resolved = 0
        self.hops_unresolved = 0
        self.recipients_from_orig_to = 0
        self.events: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"ParseStats({self.to_json()})"

    def to_json(self) -> dict[str, object]:
        return {
            "lines": self.lines,
            "parsed": self.parsed,
            "ignored": self.ignored,
            "unparsed": dict(sorted(self.unparsed.items())),
            "invalid_utf8": self.invalid_utf8,
            "uncorrelated": self.uncorrelated,
            "hops_resolved": self.hops_resolved,
            "hops_unresolved": self.hops_unresolved,
            "recipients_from_orig_to": self.recipients_from_orig_to,
            "events": dict(sorted(self.events.items())),
        }


class StateChanges(NamedTuple):
    """What :meth:`LogParser.changes` hands to the state store.

    ``head`` is the parser's snapshot without its ``correlator``'s ``queues`` and ``orphans``
    (small: saved whole every time). ``queues`` and ``orphans`` map each queue ID that may have
    changed to its entry now, None when it has none; they are the parser's live objects, to be
    encoded before it is fed again. ``complete``: they are every entry, and whatever was saved
    before is to be replaced."""

    head: dict[str, Any]
    queues: dict[str, Any]
    orphans: dict[str, Any]
    complete: bool


def whole_state(head: Mapping[str, Any], queues: Any, orphans: Any) -> dict[str, Any]:
    """The inverse of :class:`StateChanges`: a parser's snapshot from its head and all of its
    entries."""
    return {**head, "correlator": {**head["correlator"], "queues": queues, "orphans": orphans}}


def split_state(
    state: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]:
    """A parser's snapshot as (head, queues, orphans), the inverse of :func:`whole_state`; a
    state of another shape is all head (the parser then decides whether it can use it)."""
    if state is None:
        return None, {}, {}
    corr = state.get("correlator")
    if not isinstance(corr, dict):
        return state, {}, {}
    queues, orphans = corr.get("queues"), corr.get("orphans")
    if not isinstance(queues, dict) or not isinstance(orphans, dict):
        return state, {}, {}
    rest = {k: v for k, v in corr.items() if k not in ("queues", "orphans")}
    return {**state, "correlator": rest}, queues, orphans


class LogParser(Protocol):
    """Whole log lines in, events out as compact ASCII JSON (their wire form)."""

    stats: ParseStats

    def feed_json(self, data: bytes) -> list[str]:
        """Events of these whole lines (the daemon)."""
        ...

    def feed_jsonl(self, data: bytes | bytearray | memoryview) -> bytes:
        """The same, one event per line with ``queue_id`` (``parse``)."""
        ...

    def feed_packed_jsonl(self, packed: bytes | bytearray | memoryview) -> bytes:
        """:meth:`feed_jsonl` of a buffer the adapter's ``scan_packed`` did the line-local
        half of (in another process: ``parse``, sendpost_agent.parse.split). Only adapters
        with a ``scan_packed`` need it."""
        ...

    def flush_json(self) -> list[str]:
        """At the end of the input: what was held back waiting for more lines."""
        ...

    def expire(self, now: dt.datetime, *, forget: bool = True) -> list[str]:
        """While the log is idle: what waited past its window; ``forget``: drop stale state."""
        ...

    def changes(self) -> StateChanges:
        """The state changed since the last call (the daemon saves it)."""
        ...

    def unsaved(self, changes: StateChanges) -> None:
        """Those changes could not be saved: hand them out again next time."""
        ...


class ParserFactory(Protocol):
    def __call__(
        self,
        *,
        internal_relays: Sequence[str] = ...,
        state: Mapping[str, Any] | None = None,
        reference_time: dt.datetime | None = None,
        track_changes: bool = False,
        own_state: bool = False,
    ) -> LogParser: ...


class Mta(NamedTuple):
    """One MTA's adapter.

    ``parser`` builds a :class:`LogParser` (``state``: one a parser of this adapter saved, which
    it may refuse with ``ValueError``); ``scanner`` says which code runs (``compiled`` or
    ``python``); ``parse_line`` reads one line into a record (tests, tools); ``scan_packed``,
    if the adapter has one, does the line-local half of a buffer and returns it as bytes for
    the parser's ``feed_packed_jsonl`` (``parse`` runs it in a second process)."""

    name: str
    parser: ParserFactory
    scanner: str
    parse_line: Callable[[bytes], Any]
    scan_packed: Callable[[bytes], bytes] | None = None


def _postfix() -> Mta:
    from sendpost_agent.parse.postfix import ADAPTER

    return ADAPTER


REGISTRY: dict[str, Callable[[], Mta]] = {"postfix": _postfix}
"""MTA name (the ``mta`` setting) → what imports its adapter (an import statement, not a module
name in a string, so that PyInstaller's analysis bundles it)."""


def adapter(name: str) -> Mta:
    """The adapter registered under ``name``; ``KeyError`` for an unknown one (the ``mta``
    setting is checked against config.MTAS before it gets here)."""
    return REGISTRY[name]()
