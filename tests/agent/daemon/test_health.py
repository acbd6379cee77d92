"""The health decision and the retry decision, as pure functions of their inputs and a clock."""

from __future__ import annotations

import httpx
import pytest
from sendpost_agent.errors import BatchRejected, BatchTooLarge, KeyRejected, Transient
from sendpost_agent.ship import classify, retry_policy
from sendpost_agent.telemetry import Status, health


def _status(**fields: object) -> Status:
    status = Status(log_path="/var/log/mail.log", wal_max_bytes=1000)
    for name, value in fields.items():
        setattr(status, name, value)
    return status


@pytest.mark.parametrize(
    ("fields", "now", "reason"),
    [
        ({"log_error": "/var/log/mail.log: Permission denied"}, 0.0, "log unreadable"),
        ({"wal_bytes": 901}, 0.0, "WAL over 90% full"),
        ({"key_rejected": True}, 0.0, "API key rejected"),
        ({"wal_events": 3, "waiting_since": 1000.0}, 1601.0, "events waiting over 600 s"),
    ],
)
def test_each_condition_makes_health_503(
    fields: dict[str, object], now: float, reason: str
) -> None:
    """Unreadable log, WAL > 90%, rejected key, events stuck > 10 min: 503 naming the reason."""
    code, body = health(_status(**fields), now, 600.0)
    assert 503 == code
    assert [reason] == [r[: len(reason)] for r in body["reasons"]]


def test_waiting_events_are_healthy_until_ten_minutes() -> None:
    """Events waiting 600 s exactly are still fine; the clock decides, nothing sleeps."""
    status = _status(wal_events=3, waiting_since=1000.0, wal_bytes=10)
    assert 200 == health(status, 1600.0, 600.0)[0]


@pytest.mark.parametrize(
    ("code", "headers", "kind", "retry"),
    [
        (500, {}, Transient, True),
        (503, {"Retry-After": "7"}, Transient, 7.0),
        (429, {"Retry-After": "2"}, Transient, 2.0),
        (408, {}, Transient, True),
        (501, {}, BatchRejected, False),
        (400, {}, BatchRejected, False),
        (401, {}, KeyRejected, False),
        (403, {}, KeyRejected, False),
        (413, {}, BatchTooLarge, False),
    ],
)
def test_answers_map_to_one_decision(
    code: int, headers: dict[str, str], kind: type, retry: bool | float
) -> None:
    """Which answers retry (and after how long) is decided by classify + retry_policy alone."""
    error = classify(httpx.Response(code, headers=headers), now=0.0)
    assert kind is type(error)
    assert error is not None
    assert retry == retry_policy(error)


def test_network_errors_retry_and_2xx_is_success() -> None:
    """Connection failures and timeouts are retried; a 2xx is no error at all."""
    assert retry_policy(httpx.ConnectError("refused")) is True
    assert retry_policy(httpx.ReadTimeout("slow")) is True
    assert classify(httpx.Response(202), now=0.0) is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"errors": [{"index": 3, "field": "recipient"}, {"index": 0}]}', frozenset({0, 3})),
        (b'{"errors": [{"index": 3}, {"index": null, "field": ""}]}', None),
        (b'{"errors": []}', None),
        (b'{"errors": "0.recipient: too long"}', None),
        (b"not json", None),
        (b"[1]", None),
    ],
)
def test_a_400_names_the_bad_events_only_when_each_error_has_an_index(
    body: bytes, named: frozenset[int] | None
) -> None:
    """The events a 400 names are the ones dead-lettered; an answer that blames the batch
    itself (or names nothing) leaves the whole batch to the dead-letter file."""
    error = classify(httpx.Response(400, content=body), now=0.0)
    assert isinstance(error, BatchRejected)
    assert named == error.indexes
