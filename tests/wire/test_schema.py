"""The ingestion batch format: what is accepted, and how each problem is named."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sendpost_wire import (
    AgentEvent,
    BatchError,
    EventType,
    check_batch,
    parse_batch,
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


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
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
        "smtp_description": st.text(max_size=40),
        "recipient": st.emails(),
        "enhanced_status": st.sampled_from(["5.1.1", "4.2.2", "2.0.0", "9.9.9", "5.1"]),
        "event_id": st.text(max_size=20),
        "smtp_command": st.sampled_from(["RCPT TO", "DATA", None]),
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
