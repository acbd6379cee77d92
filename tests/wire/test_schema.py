"""The ingestion batch format: what is accepted, and how each problem is named."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sendpost_wire import (
    MAX_EVENT_DEPTH,
    MAX_LENGTHS,
    AgentEvent,
    BatchError,
    EventType,
    check_batch,
    parse_batch,
    split_batch,
    split_values,
    validate_event,
)

UUID = "8f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"


def test_event_type_ids_are_the_contract() -> None:
    """IDs 58–68 map to the names in SPEC.md, in order."""
    expected = [
        "CSProcessed", "CSSent", "CSDelivered", "CSDeferred", "CSDropped", "CSHardBounced",
        "CSSoftBounced", "CSOpen", "CSClick", "CSSpamReport", "CSUnsubscribe",
    ]  # fmt: skip
    assert expected == [EventType(i).name for i in range(58, 69)]


def test_full_event_round_trips() -> None:
    """Every optional field survives validation and comes back out in to_wire()."""
    raw = {
        "message_id": UUID.upper(),
        "event_type": "bounced",
        "timestamp": "2026-02-19T13:00:00.5+01:00",
        "smtp_code": 550,
        "smtp_description": "5.1.1 user unknown",
        "recipient": "user@example.com",
        "event_id": "abc",
        "enhanced_status": "5.1.1",
        "smtp_command": "RCPT TO",
        "queue_id": "4PbCb40W49z3tG3",
        "final_recipient": "ok.team@dest.test",
        "unknown_field": "ignored",
    }
    event = validate_event(raw, 0)
    assert isinstance(event, AgentEvent)
    assert dt.datetime(2026, 2, 19, 12, 0, 0, 500000, tzinfo=dt.UTC) == event.timestamp
    wire = event.to_wire()
    assert wire["message_id"] == UUID
    assert wire["timestamp"] == "2026-02-19T12:00:00.500000Z"
    assert "unknown_field" not in wire
    assert {k: v for k, v in raw.items() if k not in ("message_id", "timestamp")} | {
        "unknown_field": "ignored"
    } == {k: v for k, v in wire.items() if k not in ("message_id", "timestamp")} | {
        "unknown_field": "ignored"
    }


def test_final_recipient_must_be_an_address() -> None:
    """final_recipient is optional; when present it is a string with an @, else the event is
    refused naming that field."""
    raw = {"message_id": UUID, "event_type": "delivered", "final_recipient": "root"}
    body = json.dumps({"events": [raw]}).encode()
    with pytest.raises(BatchError) as info:
        parse_batch(body)
    assert [(0, "final_recipient")] == [(e.index, e.field) for e in info.value.errors]
    assert _verdict(parse_batch, body) == _verdict(check_batch, body)


def test_every_bad_field_is_named_with_its_index() -> None:
    """A batch with several bad events is refused whole, each problem named by index and field."""
    body = json.dumps(
        {
            "events": [
                {"message_id": UUID, "event_type": "delivered"},
                {"message_id": "nope", "event_type": "opened"},
                {"event_type": "delivered", "timestamp": "yesterday", "smtp_code": 99},
            ]
        }
    ).encode()
    with pytest.raises(BatchError) as info:
        parse_batch(body)
    named = {(e.index, e.field) for e in info.value.errors}
    expected = {(1, "message_id"), (1, "event_type"), (2, "message_id"), (2, "timestamp"),
                (2, "smtp_code")}  # fmt: skip
    assert expected == named


@pytest.mark.parametrize(
    ("body", "field"),
    [(b"", ""), (b"{", ""), (b"[]", ""), (b'{"events": []}', "events"), (b'{"x": 1}', "events")],
)
def test_malformed_bodies_are_refused(body: bytes, field: str) -> None:
    """Empty, malformed and event-less bodies each give one batch-level error."""
    with pytest.raises(BatchError) as info:
        parse_batch(body)
    assert [(None, field)] == [(e.index, e.field) for e in info.value.errors]
    assert _verdict(parse_batch, body) == _verdict(check_batch, body)


_JSON: st.SearchStrategy[object] = st.deferred(
    lambda: (
        st.none()
        | st.booleans()
        | st.integers()
        | st.text()
        | st.lists(_JSON, max_size=4)
        | st.dictionaries(st.text(), _JSON, max_size=4)
    )
)


@given(_JSON)
def test_validation_never_raises_on_arbitrary_json(value: object) -> None:
    """Any JSON value as an event gives an event or a list of errors, never an exception."""
    result = validate_event(value, 3)
    assert isinstance(result, AgentEvent | list)


_events = st.fixed_dictionaries(
    {
        "message_id": st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper()),
        "event_type": st.sampled_from(["delivered", "bounced", "deferred", "soft_bounced"]),
    },
    optional={
        "timestamp": st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.isoformat()),
        "smtp_code": st.integers(150, 650),
        "smtp_description": st.text(max_size=40) | st.sampled_from(["a\x00b", "\ud800", "é" * 5]),
        "recipient": st.emails() | st.sampled_from(["a\x00@b.c", "\udfff@b.c", "İ" * 200 + "@b"]),
        "enhanced_status": st.sampled_from(["5.1.1", "4.2.2", "2.0.0", "9.9.9", "5.1"]),
        "event_id": st.text(max_size=20),
        "smtp_command": st.sampled_from(["RCPT TO", "DATA", None, "X" * 65, "RCPT\x00TO"]),
        "queue_id": st.text(max_size=16) | st.integers(),
        "final_recipient": st.emails() | st.text(max_size=8) | st.integers(),
    },
)


@given(_events)
def test_fast_path_agrees_with_the_detailed_validator(raw: dict[str, object]) -> None:
    """The one-pass path for valid events accepts exactly what the detailed validator accepts."""
    from sendpost_wire.schema import _checked_event

    assert _checked_event(raw, 0) == validate_event(raw, 0)


def _verdict(function: Any, body: bytes) -> object:
    try:
        result = function(body)
    except BatchError as exc:
        return [e.to_json() for e in exc.errors]
    return len(result) if isinstance(result, list) else result


@given(st.lists(_events, min_size=1, max_size=5))
def test_check_batch_agrees_with_parse_batch(raws: list[dict[str, object]]) -> None:
    """check_batch (no events built) gives parse_batch's count, or exactly its errors."""
    body = json.dumps({"events": raws}).encode()
    assert _verdict(parse_batch, body) == _verdict(check_batch, body)


@pytest.mark.parametrize(
    "extra",
    [
        {"event_type": ["delivered"]},
        {"event_type": {"a": 1}},
        {"timestamp": "0001-01-01T00:00:00+01:00"},
        {"timestamp": "9999-12-31T23:59:59-01:00"},
        {"timestamp": "2026-13-01T00:00:00Z"},
        {"smtp_code": True},
        {"message_id": "{3b241101-e2bb-4255-8caf-4136c566a962}"},
    ],
)
def test_unusual_values_are_judged_alike_and_never_raise(extra: dict[str, object]) -> None:
    """Unhashable types, out-of-range years and odd UUID spellings: both paths agree, no crash."""
    raw = {"message_id": "3b241101-e2bb-4255-8caf-4136c566a962", "event_type": "delivered"}
    body = json.dumps({"events": [{**raw, **extra}]}).encode()
    assert _verdict(parse_batch, body) == _verdict(check_batch, body)


@given(
    st.lists(_events, min_size=2, max_size=4),
    st.sampled_from(["2026-02-19T12:00:00Z", "2026-13-01T00:00:00Z", "0001-01-01T00:00:00+01:00"]),
)
def test_check_batch_agrees_when_events_share_a_timestamp(
    raws: list[dict[str, object]], stamp: str
) -> None:
    """A timestamp repeated across a batch (remembered once found valid) gets the same verdict."""
    body = json.dumps({"events": [{**raw, "timestamp": stamp} for raw in raws]}).encode()
    assert _verdict(parse_batch, body) == _verdict(check_batch, body)


_VALID = {"message_id": UUID, "event_type": "bounced"}
_BAD_VALUES = [
    ("smtp_command", "X" * 65, "longer than 64 characters (65)"),
    ("recipient", "u" * 310 + "@example.com", "longer than 320 characters (322)"),
    ("recipient", "İ" * 300 + "@example.com", "longer than 320 characters once lower-cased"),
    ("event_id", "e" * 201, "longer than 200 characters (201)"),
    ("queue_id", "Q" * 65, "longer than 64 characters (65)"),
    ("enhanced_status", "5.1.1" + " " * 12, "longer than 16 characters (17)"),
    ("enhanced_status", "5.1.1 ", "must look like 5.1.1"),
    ("smtp_description", "d" * 10_001, "longer than 10000 characters (10001)"),
    ("smtp_description", "550 user\x00unknown", "contains a NUL character (at 8)"),
    ("recipient", "us\x00er@example.com", "contains a NUL character (at 2)"),
    ("event_id", "ab\x00", "contains a NUL character (at 2)"),
    ("smtp_command", "RCPT\x00TO", "contains a NUL character (at 4)"),
    ("queue_id", "\x004PbCb", "contains a NUL character (at 0)"),
    (
        "smtp_description",
        "bad \ud800 text",
        "contains a lone surrogate (at 4), which is not valid Unicode",
    ),
    (
        "recipient",
        "\udc80@example.com",
        "contains a lone surrogate (at 0), which is not valid Unicode",
    ),
    ("event_id", "x\udfff", "contains a lone surrogate (at 1), which is not valid Unicode"),
    ("smtp_command", "\ud83d", "contains a lone surrogate (at 0), which is not valid Unicode"),
]


@pytest.mark.parametrize(("field", "value", "message"), _BAD_VALUES)
def test_values_the_store_cannot_keep_are_refused_precisely(
    field: str, value: str, message: str
) -> None:
    """Over-long strings, NUL and lone surrogates are refused by both paths, naming index,
    field and the exact problem (the JSON text escapes them, as an agent would send them)."""
    good = [{**_VALID, "event_id": f"ok-{i}"} for i in range(3)]
    body = json.dumps({"events": [*good, {**_VALID, field: value}]}).encode()
    expected = [{"index": 3, "field": field, "message": message}]
    assert expected == _verdict(check_batch, body)
    assert expected == _verdict(parse_batch, body)


@pytest.mark.parametrize("field", sorted(MAX_LENGTHS))
def test_values_at_the_limit_are_accepted(field: str) -> None:
    """A value exactly as long as its column is accepted, and a non-ASCII one too."""
    limit = MAX_LENGTHS[field]
    value = {
        "recipient": "u" * (limit - 12) + "@example.com",
        "final_recipient": "é" * (limit - 12) + "@example.com",
        "enhanced_status": "5.100.100",
    }.get(field, "é" * limit)
    body = json.dumps({"events": [{**_VALID, field: value}]}).encode()
    assert 1 == check_batch(body)
    [event] = parse_batch(body)
    assert value == getattr(event, field)


def test_split_batch_keeps_the_valid_events_and_names_the_bad_ones() -> None:
    """Processing's view of a stored body: the valid events, and each bad one with its reason."""
    raws = [{**_VALID, "event_id": f"ok-{i}"} for i in range(9)]
    raws.insert(4, {**_VALID, "smtp_command": "\x00"})
    events, rejected = split_batch(json.dumps({"events": raws}).encode())
    expected = [(i if i < 4 else i + 1, f"ok-{i}") for i in range(9)]
    assert expected == [(index, e.event_id) for index, e in events]
    assert [(4, "smtp_command: contains a NUL character (at 0)")] == [
        (r.index, r.reason) for r in rejected
    ]
    assert raws[4] == rejected[0].raw


@given(
    st.lists(_events, min_size=1, max_size=5),
    st.booleans(),
    st.sampled_from(
        [None, "2026-02-19T12:00:00Z", "2026-02-19T13:00:00+01:00", "2026-13-01T00:00:00Z"]
    ),
)
def test_split_values_judges_each_event_as_the_validator_does(
    raws: list[dict[str, object]], ascii_only: bool, stamp: str | None
) -> None:
    """Processing's one pass over a stored body (plain ASCII or not, a timestamp repeated or
    not) keeps exactly the events validate_event accepts, with the same values, and refuses the
    others with validate_event's reasons, by index; split_batch gives the same events."""
    if stamp is not None:
        raws = [{**raw, "timestamp": stamp} for raw in raws]
    try:
        body = json.dumps({"events": raws}, ensure_ascii=ascii_only).encode()
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form: escaped, as JSON allows
        body = json.dumps({"events": raws}).encode()
    decoded = json.loads(body)["events"]
    verdicts = [validate_event(raw, i) for i, raw in enumerate(decoded)]
    values, rejected = split_values(body)
    expected_kept = [(i, v) for i, v in enumerate(verdicts) if isinstance(v, AgentEvent)]
    assert expected_kept == [(i, AgentEvent(*v)) for i, v in values]
    expected_refused = [(i, v) for i, v in enumerate(verdicts) if isinstance(v, list)]
    assert expected_refused == [(r.index, r.errors) for r in rejected]
    events, _ = split_batch(body)
    assert expected_kept == events


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_an_event_nested_too_deep_is_refused_by_index() -> None:
    """An event may nest 16 levels (itself level 1, unknown fields included); one deeper is
    refused by index by check_batch, parse_batch and split_batch alike, the others kept."""
    ok = {**_VALID, "extra": _nested(MAX_EVENT_DEPTH - 1)}
    deep = {**_VALID, "extra": _nested(MAX_EVENT_DEPTH)}
    assert 2 == check_batch(json.dumps({"events": [ok, ok]}).encode())
    body = json.dumps({"events": [ok, deep, ok]}).encode()
    expected = [{"index": 1, "field": "", "message": "nested deeper than 16 levels"}]
    assert expected == _verdict(check_batch, body)
    assert expected == _verdict(parse_batch, body)
    events, rejected = split_batch(body)
    assert ([0, 2], [1]) == ([i for i, _ in events], [r.index for r in rejected])


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    """A body nested beyond the decoder's recursion limit is a 400-style batch error."""
    body = b'{"events": [{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    expected = [{"index": None, "field": "", "message": "malformed JSON: nested too deeply"}]
    assert expected == _verdict(check_batch, body)
    with pytest.raises(BatchError):
        split_batch(body)


def test_a_utf16_body_gets_the_full_checks() -> None:
    """A UTF-16 body is all bytes below 128 for this recipient (U+0130 is 0x30 0x01), yet its
    lower-cased form is too long: it is still refused (no fast-path shortcut for it)."""
    raw = {**_VALID, "recipient": "İ" * 300 + "@example.com"}
    body = json.dumps({"events": [raw]}, ensure_ascii=False).encode("utf-16-le")
    assert body.isascii()
    expected = [
        {"index": 0, "field": "recipient", "message": "longer than 320 characters once lower-cased"}
    ]
    assert expected == _verdict(check_batch, body)
