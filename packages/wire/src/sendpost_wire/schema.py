"""The agent event schema and the ingestion batch format, with validation.

A batch is ``{"events": [event, ...]}``. Each event needs ``message_id`` (a UUID) and
``event_type`` (one of :data:`AGENT_EVENT_TYPES`); ``timestamp`` is RFC 3339 when present;
``smtp_code`` is an integer 200–599; ``smtp_description``, ``recipient``, ``event_id``,
``enhanced_status``, ``smtp_command``, ``queue_id`` and ``final_recipient`` are optional strings
(``final_recipient``: the address after the MTA's alias or canonical rewriting, when
``recipient`` is the address the platform sent to and they differ; like ``recipient`` it needs
an ``@``). Unknown fields are ignored. Validation never raises on bad input: it returns the list
of problems, each naming the event index and the field, so that the platform can answer 400 with
all of them at once.

The validator accepts exactly what the platform's store can keep (SPEC "Wire contract"): each
string field is at most :data:`MAX_LENGTHS` characters (the length of the column that keeps it;
``tests/platform/core/test_wire_limits.py`` compares the two), a recipient stays within that
length once lower-cased (the dedup key), and no string holds a NUL character (PostgreSQL text
cannot) or a lone surrogate (not Unicode: neither database can encode it). An event may nest
at most :data:`MAX_EVENT_DEPTH` levels (values of unknown fields are ignored, but the raw batch
is kept and decoded again by the worker), and a body nested deeper than the JSON decoder's
recursion limit is refused like malformed JSON. Events have no free-form objects.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import operator
import re
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from sendpost_wire.events import AGENT_EVENT_TYPES

MAX_BATCH_EVENTS = 1000
MAX_BATCH_BYTES = 1024 * 1024

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
MAX_LENGTHS: Mapping[str, int] = {
    "smtp_description": 10_000,  # events.description is TEXT: the contract's own bound
    "recipient": 320,  # events.recipient, events.recipient_key
    "event_id": 200,  # events.agent_event_id
    "enhanced_status": 16,  # events.enhanced_status
    "smtp_command": 64,  # events.smtp_command
    "queue_id": 64,  # kept in events.details: Postfix queue IDs are at most 16 characters
    "final_recipient": 320,  # kept in events.details (finalRecipient), an address like recipient
}
"""The longest value of each string field, in characters (code points)."""
MAX_EVENT_DEPTH = 16
"""How deep an event may nest (the event object is level 1; unknown fields' values count): a
stored batch must decode again in the worker, whatever its stack depth."""
_MAX_DESCRIPTION = MAX_LENGTHS["smtp_description"]
_MAX_RECIPIENT = MAX_LENGTHS["recipient"]
_MAX_EVENT_ID = MAX_LENGTHS["event_id"]
_MAX_COMMAND = MAX_LENGTHS["smtp_command"]
_MAX_QUEUE_ID = MAX_LENGTHS["queue_id"]
_OPTIONAL_TEXT = ("event_id", "smtp_command", "queue_id")
_CANONICAL_UUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_ALL_TEXT = ("smtp_description", "recipient", "enhanced_status", *_OPTIONAL_TEXT)
_TEXT_LIMITS = tuple(MAX_LENGTHS[name] for name in _ALL_TEXT)
_TEXT_FOLDED = tuple(name == "recipient" for name in _ALL_TEXT)
"""Per text field of ``_ALL_TEXT``: its length limit, and whether it is compared case-folded."""
_KNOWN_FIELDS = frozenset(
    ("message_id", "event_type", "timestamp", "smtp_code", "final_recipient", *_ALL_TEXT)
)


@dataclasses.dataclass(frozen=True, slots=True)
class AgentEvent:
    """One validated agent event, normalised (UUID lower-case, timestamp timezone-aware UTC)."""

    message_id: str
    event_type: str
    timestamp: dt.datetime | None = None
    smtp_code: int | None = None
    smtp_description: str | None = None
    recipient: str | None = None
    event_id: str | None = None
    enhanced_status: str | None = None
    smtp_command: str | None = None
    queue_id: str | None = None
    final_recipient: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON object for this event, without absent optional fields."""
        out: dict[str, Any] = {"message_id": self.message_id, "event_type": self.event_type}
        for field in dataclasses.fields(self)[2:]:
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, dt.datetime):
                value = format_timestamp(value)
            out[field.name] = value
        return out


class EventValues(NamedTuple):
    """The fields of one valid agent event, in :class:`AgentEvent`'s order and normalised the
    same way: what :func:`split_values` gives the platform's processing of stored batches, where
    a tuple costs a fraction of building a frozen dataclass (a worker builds thousands a second)."""

    message_id: str
    event_type: str
    timestamp: dt.datetime | None
    smtp_code: int | None
    smtp_description: str | None
    recipient: str | None
    event_id: str | None
    enhanced_status: str | None
    smtp_command: str | None
    queue_id: str | None
    final_recipient: str | None


_event_values = operator.attrgetter(*EventValues._fields)


@dataclasses.dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of one event (``index`` is None for the batch itself)."""

    index: int | None
    field: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class BatchError(ValueError):
    """A batch that cannot be accepted; ``errors`` names every problem found."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.index}.{e.field}: {e.message}" for e in errors))
        self.errors = errors


def format_timestamp(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, microseconds only when present."""
    value = value.astimezone(dt.UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def parse_timestamp(text: str) -> dt.datetime | None:
    """Parse an RFC 3339 timestamp (offset required) to an aware datetime, or None if invalid."""
    if not _RFC3339.match(text):
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("z", "Z"))
        # Already UTC (a "Z" or "+00:00" suffix, the common case): nothing to shift.
        return parsed if parsed.tzinfo is dt.UTC else parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
        return None


def _text(raw: Mapping[str, Any], name: str, index: int, errors: list[FieldError]) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(FieldError(index, name, "must be a string"))
        return None
    problem = text_problem(value, MAX_LENGTHS[name], folded=name == "recipient")
    if problem is not None:
        errors.append(FieldError(index, name, problem))
        return None
    return value


def text_problem(value: str, limit: int, *, folded: bool = False) -> str | None:
    """Why ``value`` cannot be stored in a column of ``limit`` characters, or None if it can.

    ``folded``: the lower-cased value is stored too (a recipient's dedup key), and lower-casing
    can lengthen a string (``"İ".lower()`` is two characters)."""
    if len(value) > limit:
        return f"longer than {limit} characters ({len(value)})"
    if "\x00" in value:
        return f"contains a NUL character (at {value.index(chr(0))})"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"contains a lone surrogate (at {exc.start}), which is not valid Unicode"
        if folded and len(value.lower()) > limit:
            return f"longer than {limit} characters once lower-cased"
    return None


def _clean(value: object, limit: int, *, folded: bool = False) -> bool:
    """True for a string that :func:`text_problem` accepts (the fast paths' check)."""
    if type(value) is not str or len(value) > limit or "\x00" in value:
        return False
    return value.isascii() or text_problem(value, limit, folded=folded) is None


def _fast_event(raw: dict[str, Any]) -> AgentEvent | None:
    """One straight pass for the common, valid event; None sends it to the detailed validator.

    Accepts a subset of what :func:`_checked_event` accepts (canonical UUID spelling only), and
    builds the same event for it, so the two never disagree on a valid event.
    """
    values = _fast_values(raw, False, {})
    return None if values is None else AgentEvent(*values)


def _fast_values(
    raw: dict[str, Any], plain: bool, stamps: dict[str, dt.datetime]
) -> EventValues | None:
    """:func:`_fast_event`'s pass, giving the event's values. ``plain``: the body the event
    comes from is ASCII UTF-8 without a backslash (see :func:`_event_ok`), so a string of
    allowed length has no other problem. ``stamps``: timestamps already parsed in this batch."""
    get = raw.get
    message_id = get("message_id")
    if type(message_id) is not str or _uuid_match(message_id) is None:
        return None
    event_type = get("event_type")
    if type(event_type) is not str or event_type not in AGENT_EVENT_TYPES:
        return None
    timestamp = None
    raw_ts = get("timestamp")
    if raw_ts is not None:
        if type(raw_ts) is not str:
            return None
        timestamp = stamps.get(raw_ts)
        if timestamp is None:
            timestamp = parse_timestamp(raw_ts)
            if timestamp is None:
                return None
            stamps[raw_ts] = timestamp
    smtp_code = get("smtp_code")
    if smtp_code is not None and (type(smtp_code) is not int or not 200 <= smtp_code <= 599):
        return None
    if get("final_recipient") is not None:
        return None  # rare (rewritten recipients): the detailed validator builds it
    # In ``_ALL_TEXT``'s order.
    texts = (
        get("smtp_description"),
        get("recipient"),
        get("enhanced_status"),
        get("event_id"),
        get("smtp_command"),
        get("queue_id"),
    )
    if plain:
        for value, limit in zip(texts, _TEXT_LIMITS):  # noqa: B905 (both of _ALL_TEXT's length)
            if value is not None and (type(value) is not str or len(value) > limit):
                return None
    else:
        for value, limit, folded in zip(texts, _TEXT_LIMITS, _TEXT_FOLDED):  # noqa: B905
            if value is not None and not _clean(value, limit, folded=folded):
                return None
    description, recipient, enhanced, event_id, smtp_command, queue_id = texts
    if recipient is not None and "@" not in recipient:
        return None
    if enhanced is not None and _enhanced_match(enhanced) is None:
        return None
    return EventValues(
        message_id.lower(),
        event_type,
        timestamp,
        smtp_code,
        description,
        recipient,
        event_id,
        enhanced,
        smtp_command,
        queue_id,
        None,
    )


def validate_event(raw: object, index: int) -> AgentEvent | list[FieldError]:
    """Validate one event object; returns the event, or every problem found in it."""
    if type(raw) is dict:
        event = _fast_event(raw)
        if event is not None:
            return event
    return _checked_event(raw, index)


def _checked_event(raw: object, index: int) -> AgentEvent | list[FieldError]:
    """The detailed validator: collects every problem, naming the field."""
    if not isinstance(raw, Mapping):
        return [FieldError(index, "", "event must be a JSON object")]
    errors: list[FieldError] = []

    message_id = raw.get("message_id")
    parsed_id: str | None = None
    if message_id is None:
        errors.append(FieldError(index, "message_id", "is required"))
    elif not isinstance(message_id, str):
        errors.append(FieldError(index, "message_id", "must be a UUID string"))
    else:
        try:
            parsed_id = str(uuid.UUID(message_id))
        except ValueError:
            errors.append(FieldError(index, "message_id", f"not a UUID: {message_id[:80]!r}"))

    event_type = raw.get("event_type")
    if event_type is None:
        errors.append(FieldError(index, "event_type", "is required"))
    elif not isinstance(event_type, str) or event_type not in AGENT_EVENT_TYPES:
        allowed = ", ".join(sorted(AGENT_EVENT_TYPES))
        errors.append(FieldError(index, "event_type", f"must be one of {allowed}"))

    timestamp: dt.datetime | None = None
    raw_ts = raw.get("timestamp")
    if raw_ts is not None:
        if not isinstance(raw_ts, str):
            errors.append(FieldError(index, "timestamp", "must be an RFC 3339 string"))
        else:
            timestamp = parse_timestamp(raw_ts)
            if timestamp is None:
                errors.append(FieldError(index, "timestamp", f"not RFC 3339: {raw_ts[:80]!r}"))

    smtp_code = raw.get("smtp_code")
    if smtp_code is not None and (
        isinstance(smtp_code, bool) or not isinstance(smtp_code, int) or not 200 <= smtp_code <= 599
    ):
        errors.append(FieldError(index, "smtp_code", "must be an integer from 200 to 599"))
        smtp_code = None

    description = _text(raw, "smtp_description", index, errors)
    recipient = _text(raw, "recipient", index, errors)
    if recipient is not None and "@" not in recipient:
        errors.append(FieldError(index, "recipient", "must be an email address"))
    enhanced = _text(raw, "enhanced_status", index, errors)
    if enhanced is not None and not _ENHANCED.match(enhanced):
        errors.append(FieldError(index, "enhanced_status", "must look like 5.1.1"))
    extras = {name: _text(raw, name, index, errors) for name in _OPTIONAL_TEXT}
    final = extras["final_recipient"] = _text(raw, "final_recipient", index, errors)
    if final is not None and "@" not in final:
        errors.append(FieldError(index, "final_recipient", "must be an email address"))

    if errors or parsed_id is None or not isinstance(event_type, str):
        return errors
    return AgentEvent(
        message_id=parsed_id,
        event_type=event_type,
        timestamp=timestamp,
        smtp_code=smtp_code,
        smtp_description=description,
        recipient=recipient,
        enhanced_status=enhanced,
        **extras,
    )


def _event_ok(raw: object, good_stamps: set[str], plain: bool) -> bool:
    """True when the detailed validator certainly accepts ``raw``; a check only, nothing built.

    Like :func:`_fast_event` it takes the common shape in one pass and answers False for
    anything unusual (which the caller then hands to the detailed validator), so it never
    accepts what :func:`_checked_event` refuses. ``good_stamps`` remembers the timestamps already
    found valid in this batch (events logged in the same second share one). ``plain``: the body
    is ASCII UTF-8 without a backslash, so no string in it holds a NUL (JSON must escape one),
    a lone surrogate or a character that lengthens when lower-cased. An event with a field
    outside the contract goes to the detailed path too, which checks how deep it nests.
    """
    if type(raw) is not dict or not raw.keys() <= _KNOWN_FIELDS:
        return False
    get = raw.get
    value = get("message_id")
    if type(value) is not str or _uuid_match(value) is None:
        return False
    value = get("event_type")
    if type(value) is not str or value not in AGENT_EVENT_TYPES:
        return False
    value = get("timestamp")
    if value is not None and value not in good_stamps:
        if type(value) is not str or _rfc3339_match(value) is None:
            return False
        try:
            parsed = _fromisoformat(value.replace("z", "Z"))
        except ValueError:
            return False
        if parsed.year in (1, 9999):  # could overflow when shifted to UTC: the slow path decides
            return False
        good_stamps.add(value)
    value = get("smtp_code")
    if value is not None and (type(value) is not int or not 200 <= value <= 599):
        return False
    # The strings, unrolled (this runs for every event of every batch).
    value = get("recipient")
    if value is not None and (
        type(value) is not str or len(value) > _MAX_RECIPIENT or "@" not in value
    ):
        return False
    value = get("enhanced_status")
    if value is not None and (type(value) is not str or _enhanced_match(value) is None):
        return False
    value = get("smtp_description")
    if value is not None and (type(value) is not str or len(value) > _MAX_DESCRIPTION):
        return False
    value = get("event_id")
    if value is not None and (type(value) is not str or len(value) > _MAX_EVENT_ID):
        return False
    value = get("smtp_command")
    if value is not None and (type(value) is not str or len(value) > _MAX_COMMAND):
        return False
    value = get("queue_id")
    if value is not None and (type(value) is not str or len(value) > _MAX_QUEUE_ID):
        return False
    value = get("final_recipient")
    if value is not None and (
        type(value) is not str or len(value) > _MAX_RECIPIENT or "@" not in value
    ):
        return False
    return plain or _strings_clean(raw)


def _strings_clean(raw: dict[str, Any]) -> bool:
    """No string field of ``raw`` (each known to be a string of allowed length) has a problem."""
    for name in (*_ALL_TEXT, "final_recipient"):
        value = raw.get(name)
        if value is not None and text_problem(value, MAX_LENGTHS[name], folded=name == "recipient"):
            return False
    return True


_uuid_match = _CANONICAL_UUID.match
_rfc3339_match = _RFC3339.match
_enhanced_match = _ENHANCED.match
_fromisoformat = dt.datetime.fromisoformat


def _raw_events(body: bytes) -> list[Any]:
    """The batch's event list; raises :class:`BatchError` for batch-level problems."""
    if not body.strip():
        raise BatchError([FieldError(None, "", "empty body")])
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchError([FieldError(None, "", f"malformed JSON: {exc}")]) from None
    except RecursionError:
        raise BatchError([FieldError(None, "", "malformed JSON: nested too deeply")]) from None
    if not isinstance(doc, dict):
        raise BatchError([FieldError(None, "", "body must be a JSON object")])
    raw_events = doc.get("events")
    if not isinstance(raw_events, list):
        raise BatchError([FieldError(None, "events", "must be a list of events")])
    if not raw_events:
        raise BatchError([FieldError(None, "events", "no events")])
    return raw_events


def _too_deep(value: object) -> bool:
    """True when ``value`` (an event: level 1) nests deeper than :data:`MAX_EVENT_DEPTH`."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_EVENT_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _deep_events(body: bytes, raw_events: list[Any]) -> dict[int, FieldError]:
    """The events nested deeper than :data:`MAX_EVENT_DEPTH`, by index.

    An event that deep holds more than that many brackets, every other event at least one, and
    the batch two more: a body with fewer brackets in all (counting those inside strings too)
    has no such event, which rules out nearly every batch at the cost of two byte counts."""
    brackets = body.count(b"{") + body.count(b"[")
    if brackets < len(raw_events) + MAX_EVENT_DEPTH + 2:
        return {}
    message = f"nested deeper than {MAX_EVENT_DEPTH} levels"
    return {i: FieldError(i, "", message) for i, raw in enumerate(raw_events) if _too_deep(raw)}


def _validated(raw_events: list[Any], deep: dict[int, FieldError]) -> list[AgentEvent]:
    events: list[AgentEvent] = []
    errors: list[FieldError] = []
    for index, raw in enumerate(raw_events):
        if index in deep:
            errors.append(deep[index])
            continue
        result = validate_event(raw, index)
        if isinstance(result, list):
            errors.extend(result)
        else:
            events.append(result)
    if errors:
        raise BatchError(errors)
    return events


@dataclasses.dataclass(frozen=True, slots=True)
class Rejected:
    """One event of a batch that the validator refuses: its index, the raw JSON value, why."""

    index: int
    raw: object
    errors: list[FieldError]

    @property
    def reason(self) -> str:
        return "; ".join(f"{e.field}: {e.message}" for e in self.errors)


def split_batch(body: bytes) -> tuple[list[tuple[int, AgentEvent]], list[Rejected]]:
    """A body's valid events with their indexes, and apart from them the events it refuses.

    For processing stored batches: one bad event must not take the others with it. Raises
    :class:`BatchError` only for problems of the whole body (malformed JSON, no event list).
    """
    values, rejected = split_values(body)
    return [(index, AgentEvent(*event)) for index, event in values], rejected


def split_values(body: bytes) -> tuple[list[tuple[int, EventValues]], list[Rejected]]:
    """:func:`split_batch` with each valid event as its :class:`EventValues` (the same events,
    the same refusals), without building :class:`AgentEvent` objects."""
    events: list[tuple[int, EventValues]] = []
    rejected: list[Rejected] = []
    raw_events = _raw_events(body)
    deep = _deep_events(body, raw_events)
    # UTF-8 (no NUL byte, which UTF-16 and UTF-32 text has) and ASCII without escapes.
    plain = body.isascii() and b"\\" not in body and b"\x00" not in body
    stamps: dict[str, dt.datetime] = {}
    for index, raw in enumerate(raw_events):
        if index in deep:
            rejected.append(Rejected(index, raw, [deep[index]]))
            continue
        values = _fast_values(raw, plain, stamps) if type(raw) is dict else None
        if values is None:
            result = _checked_event(raw, index)
            if isinstance(result, list):
                rejected.append(Rejected(index, raw, result))
                continue
            values = EventValues._make(_event_values(result))
        events.append((index, values))
    return events, rejected


def parse_batch(body: bytes) -> list[AgentEvent]:
    """Decode and validate a whole ingestion body; raises :class:`BatchError` naming each problem.

    The size limits are the caller's to enforce before calling (they map to 413, not 400).
    """
    raw_events = _raw_events(body)
    return _validated(raw_events, _deep_events(body, raw_events))


def check_batch(body: bytes) -> int:
    """Validate a whole ingestion body without building events; returns how many it holds.

    Accepts and refuses exactly what :func:`parse_batch` does (same :class:`BatchError`), at a
    fraction of the cost for valid batches: the ingestion endpoint stores the raw body and
    needs only the verdict.
    """
    raw_events = _raw_events(body)
    good_stamps: set[str] = set()
    # UTF-8 (no NUL byte, which UTF-16 and UTF-32 text has) and ASCII without escapes.
    plain = body.isascii() and b"\\" not in body and b"\x00" not in body
    for raw in raw_events:
        if not _event_ok(raw, good_stamps, plain):
            return len(_validated(raw_events, _deep_events(body, raw_events)))
    return len(raw_events)
