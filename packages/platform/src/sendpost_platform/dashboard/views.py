"""What the dashboard pages show, computed from query parameters and rows (pure: no I/O).

- :func:`parse_event_filters` turns the events page's query string (the same parameter names as
  ``GET /api/v1/events``: ``providerId``, ``type``, ``from``, ``to``, ``subAccountId``,
  ``messageId``, ``recipient``, ``limit``, ``cursor``) into the store's ``EventFilter``, or into
  messages naming each bad field. Empty form fields mean "no filter".
- :func:`stats_range` and :func:`stats_view` make the counts-over-time table and its bar chart.
- :func:`agent_badge` and :func:`when` format what the templates print.
- :func:`timeline`, :func:`outcome` and :func:`details_fields` make a message's page: events in
  lifecycle order, the result in one line, and stored details as fields (nested ones too).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import uuid
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from sendpost_wire import EventType
from sendpost_wire.schema import parse_timestamp

from sendpost_platform.api.events import decode_cursor, parse_types
from sendpost_platform.dashboard import charts
from sendpost_platform.domain.agent_health import AgentHealth
from sendpost_platform.errors import BadRequest
from sendpost_platform.store import events as event_store
from sendpost_platform.store.dashboard_queries import Buckets

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
SHOWN_TYPES: tuple[EventType, ...] = tuple(t for t in EventType if t is not EventType.CSDeferred)
"""Every event type that can be stored (CSDeferred is counted, never stored)."""

FILTER_KEYS = (
    "providerId",
    "from",
    "to",
    "subAccountId",
    "messageId",
    "recipient",
    "sender",
    "subject",
    "limit",
)
TZ_COOKIE = "sp_tz"


def zone(name: str | None) -> dt.tzinfo:
    """The IANA time zone called ``name``, or UTC when it is empty or unknown."""
    if not name or name == "UTC" or len(name) > 64 or name not in _zone_names():
        return dt.UTC
    return zoneinfo.ZoneInfo(name)


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_choices() -> list[str]:
    """Every time zone a viewer may pick, UTC first."""
    return ["UTC", *sorted(n for n in _zone_names() if n != "UTC" and "/" in n)]


@dataclasses.dataclass(frozen=True, slots=True)
class EventQuery:
    """The parsed events page request: what to list, and the raw values to echo in the form."""

    where: event_store.EventFilter | None
    """None when a parameter is invalid (``errors`` says which)."""
    limit: int
    after: event_store.Position | None
    before: event_store.Position | None
    values: dict[str, str]
    types: list[int]
    errors: list[str]

    def link(self, **changes: str | None) -> str:
        """The query string of this filter with ``changes`` applied (None removes a key)."""
        pairs = [(k, v) for k, v in self.values.items() if v and k not in changes]
        pairs += [("type", str(t)) for t in self.types]
        pairs += [(k, v) for k, v in changes.items() if v is not None]
        return "?" + urlencode(pairs)


def _int(value: str, field: str, errors: list[str]) -> int | None:
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 2**62:
        errors.append(f"{field}: not an ID ({value!r})")
        return None
    return int(value)


def parse_time(value: str, tz: dt.tzinfo = dt.UTC) -> dt.datetime | None:
    """RFC 3339, or a browser's ``datetime-local`` value (``2026-02-19T12:00``) taken in the
    viewer's time zone ``tz``."""
    parsed = parse_timestamp(value)
    if parsed is not None:
        return parsed
    try:
        naive = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return naive if naive.tzinfo else naive.replace(tzinfo=tz).astimezone(dt.UTC)


def _time(value: str, field: str, errors: list[str], tz: dt.tzinfo) -> dt.datetime | None:
    if not value:
        return None
    parsed = parse_time(value, tz)
    if parsed is None:
        errors.append(f"{field}: not a date and time ({value!r})")
    return parsed


def parse_event_filters(
    account_id: int, single: Mapping[str, str], types: Sequence[str], tz: dt.tzinfo = dt.UTC
) -> EventQuery:
    """Parse the events page's query (``single``: one value per key; ``types``: every ``type``).

    ``recipient``, ``sender`` and ``subject`` match any part, ignoring case (the events API's
    ``recipient`` is exact; the dashboard is for people looking). ``from`` and ``to`` without an
    offset are in the viewer's time zone ``tz``. ``cursor`` continues towards older events,
    ``before`` back towards newer ones."""
    values = {k: single.get(k, "").strip() for k in FILTER_KEYS}
    errors: list[str] = []
    try:
        type_ids = parse_types([t for t in types if t])
    except BadRequest as exc:
        type_ids = []
        errors += [f"type: {e['message']}" for e in exc.errors]
    message = values["messageId"]
    if message:
        try:
            message = str(uuid.UUID(message))
        except ValueError:
            errors.append(f"messageId: not a message UUID ({message!r})")
    for key in ("recipient", "sender", "subject"):
        if len(values[key]) > 320:
            errors.append(f"{key}: longer than 320 characters")
    limit = DEFAULT_PAGE_SIZE
    if values["limit"]:
        if values["limit"].isdigit() and 1 <= int(values["limit"]) <= 500:
            limit = int(values["limit"])
        else:
            errors.append(f"limit: not a page size from 1 to 500 ({values['limit']!r})")
    where = event_store.EventFilter(
        account_id=account_id,
        provider_id=_int(values["providerId"], "providerId", errors),
        event_types=type_ids,
        subaccount_id=_int(values["subAccountId"], "subAccountId", errors),
        message_uuid=message or None,
        recipient_contains=values["recipient"] or None,
        sender_contains=values["sender"] or None,
        subject_contains=values["subject"] or None,
        since=_time(values["from"], "from", errors, tz),
        until=_time(values["to"], "to", errors, tz),
    )
    if where.since and where.until and where.since >= where.until:
        errors.append("from: must be earlier than to (nothing can match)")
    after = before = None
    for key in ("cursor", "before"):
        text = single.get(key, "")
        if not text:
            continue
        try:
            position = decode_cursor(text[:200])
        except BadRequest:
            errors.append(f"{key}: not a cursor from this page (start again from the newest)")
            continue
        if key == "cursor":
            after = position
        else:
            before = position
    return EventQuery(
        where=None if errors else where,
        limit=limit,
        after=after,
        before=None if after else before,
        values=values,
        types=type_ids,
        errors=errors,
    )


# --- counts over time ---------------------------------------------------------------------------

STATS_RANGES: dict[str, tuple[str, dt.timedelta, int]] = {
    "24h": ("last 24 hours, per hour", dt.timedelta(hours=1), 24),
    "7d": ("last 7 days, per day", dt.timedelta(days=1), 7),
    "30d": ("last 30 days, per day", dt.timedelta(days=1), 30),
}


def stats_range(name: str, now: dt.datetime) -> Buckets:
    """Intervals aligned to whole hours or days (UTC), the last one holding ``now``."""
    _label, step, count = STATS_RANGES[name]
    now = now.astimezone(dt.UTC)
    if step >= dt.timedelta(days=1):
        current = now.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        current = now.replace(minute=0, second=0, microsecond=0)
    return Buckets(start=current - step * (count - 1), step=step, count=count)


@dataclasses.dataclass(frozen=True, slots=True)
class StatsView:
    rows: list[tuple[dt.datetime, list[int], int]]
    """Per interval: its start, a count per type of ``types``, and the total."""
    types: list[EventType]
    totals: list[int]
    grand_total: int
    wide: charts.Chart
    narrow: charts.Chart
    rates: charts.Rates


def stats_view(
    buckets: Buckets, counts: Mapping[tuple[int, int], int], label_format: str = "%H:00"
) -> StatsView:
    """The table (every storable type), the outcome chart at two widths, and the rates."""
    types = list(SHOWN_TYPES)
    rows = []
    for i, start in enumerate(buckets.edges()):
        per_type = [counts.get((i, int(t)), 0) for t in types]
        rows.append((start, per_type, sum(per_type)))
    totals = [sum(row[1][j] for row in rows) for j in range(len(types))]
    starts = buckets.edges()

    def chart(width: int) -> charts.Chart:
        return charts.outcome_chart(
            starts, buckets.step, counts, width=width, label_format=label_format
        )

    return StatsView(
        rows=rows,
        types=types,
        totals=totals,
        grand_total=sum(totals),
        wide=chart(CHART_WIDE),
        narrow=chart(CHART_NARROW),
        rates=charts.rates({int(t): n for t, n in zip(types, totals, strict=True)}),
    )


CHART_WIDE = 1100
CHART_NARROW = 340


# --- formatting ---------------------------------------------------------------------------------


def when(value: dt.datetime | None, tz: dt.tzinfo = dt.UTC) -> str:
    """``2026-02-19 12:05:00 UTC``, or in the viewer's zone ``2026-02-19 13:05:00 CET``
    (``—`` for None)."""
    if value is None:
        return "—"
    if tz is dt.UTC:
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def form_time(value: str, tz: dt.tzinfo = dt.UTC) -> str:
    """A ``from``/``to`` value as a ``datetime-local`` input shows it (in ``tz``), else as
    given."""
    parsed = parse_time(value, tz) if value else None
    if parsed is None:
        return value
    return parsed.astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S")


@dataclasses.dataclass(frozen=True, slots=True)
class AgentBadge:
    ok: bool
    symbol: str
    text: str


def agent_badge(health: AgentHealth) -> AgentBadge:
    """✓ when the agent is alive and well, else ⚠️ with what is wrong."""
    return AgentBadge(health.ok, "✓" if health.ok else "⚠️", health.summary)


def type_name(value: int) -> str:
    try:
        return EventType(value).name
    except ValueError:
        return str(value)


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One shown field: a text, or nested groups of fields (a merged report is one group)."""

    name: str
    text: str | None = None
    groups: tuple[tuple[Field, ...], ...] = ()


_FIELD_DEPTH = 3


def details_fields(details: Mapping[str, Any] | None, depth: int = 0) -> list[Field]:
    """An event's ``details`` as fields, sorted by name: objects and lists of objects (the
    reports merged into this event) become nested groups of fields, up to a few levels; other
    values are text."""
    fields = []
    for key, value in sorted((details or {}).items()):
        name = str(key)
        if depth < _FIELD_DEPTH and isinstance(value, Mapping):
            fields.append(Field(name, groups=(tuple(details_fields(value, depth + 1)),)))
        elif (
            depth < _FIELD_DEPTH
            and isinstance(value, list)
            and value
            and all(isinstance(v, Mapping) for v in value)
        ):
            groups = tuple(tuple(details_fields(v, depth + 1)) for v in value)
            fields.append(Field(name, groups=groups))
        elif isinstance(value, str):
            fields.append(Field(name, text=value))
        elif isinstance(value, int) and value in _TYPE_VALUES and name.lower().endswith("type"):
            fields.append(Field(name, text=f"{EventType(value).name} ({value})"))
        else:
            fields.append(Field(name, text=json.dumps(value, sort_keys=True)))
    return fields


_TYPE_VALUES = frozenset(int(t) for t in EventType)

LIFECYCLE: dict[int, int] = {
    EventType.CSProcessed: 0,
    EventType.CSSent: 1,
    EventType.CSDeferred: 2,
    EventType.CSDelivered: 3,
    EventType.CSSoftBounced: 3,
    EventType.CSHardBounced: 3,
    EventType.CSDropped: 3,
    EventType.CSOpen: 4,
    EventType.CSClick: 5,
    EventType.CSSpamReport: 6,
    EventType.CSUnsubscribe: 7,
}
"""Where each type comes in a message's life; breaks ties between times in the same second."""


def timeline(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A message's events oldest first. Times within the same second count as a tie, broken by
    lifecycle: the agent reads Postfix times in whole seconds, so a delivery logged at
    12:00:00 must still come after the platform's CSSent at 12:00:00.4."""

    def key(event: Mapping[str, Any]) -> tuple[dt.datetime, int, dt.datetime, int]:
        at: dt.datetime = event["occurred_at"]
        stage = LIFECYCLE.get(int(event["event_type"]), 9)
        return (at.replace(microsecond=0), stage, at, int(event["id"]))

    return sorted(events, key=key)


TERMINAL: dict[int, tuple[str, str]] = {
    EventType.CSDelivered: ("delivered", "Delivered"),
    EventType.CSHardBounced: ("bounced", "Hard bounce"),
    EventType.CSSoftBounced: ("bounced", "Soft bounce"),
    EventType.CSDropped: ("dropped", "Dropped"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    state: str
    """``delivered``, ``bounced``, ``dropped``, or the message's own state while in flight."""
    label: str
    at: dt.datetime | None = None
    code: str = ""
    reply: str = ""
    reason: str = ""


def outcome(message_state: str | None, ordered: Sequence[Mapping[str, Any]]) -> Outcome:
    """The message's result in one line: its last terminal event (a hard bounce after a soft
    one wins, as in the timeline), else where it stands (queued, sent, …)."""
    last = None
    for event in ordered:
        if int(event["event_type"]) in TERMINAL:
            last = event
    if last is None:
        state = message_state or "unknown"
        labels = {"queued": "Queued for relay", "sent": "Sent; waiting for the outcome"}
        return Outcome(state, labels.get(state, state.capitalize()))
    state, label = TERMINAL[int(last["event_type"])]
    code = " ".join(
        str(part) for part in (last.get("smtp_code"), last.get("enhanced_status")) if part
    )
    return Outcome(
        state,
        label,
        at=last["occurred_at"],
        code=code,
        reply=last.get("description") or "",
        reason=last.get("reason") or "",
    )
