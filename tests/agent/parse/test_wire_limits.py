"""Every event the agent produces fits the wire contract's limits, so the platform never
refuses it: over-long recipients and SMTP commands are dropped, long queue IDs cut, NUL
characters replaced — in both CI passes (compiled, and SENDPOST_AGENT_PURE_PYTHON=1)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sendpost_agent.parse import events as agent_events
from sendpost_agent.parse.postfix import Pipeline
from sendpost_agent.parse.postfix import scan as scan_module
from sendpost_wire import MAX_LENGTHS, check_batch, parse_batch

UUID = "1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01"
QID = "3E06E12011A"
HEADER = (
    f"Dec 31 23:59:58 mx postfix/cleanup[701]: {QID}: info: header X-Sendpost-Message-UUID: "
    f"{UUID} from platform.example.net[192.0.2.10]; from=<s@example.com> to=<a@b.example>\n"
)


def delivery(recipient: str, reply: str, qid: str = QID) -> str:
    return (
        f"Jan  1 00:00:01 mx postfix/smtp[703]: {qid}: to=<{recipient}>, relay=mx[192.0.2.1]:25,"
        f" delay=2, dsn=5.1.1, status=bounced (host mx[192.0.2.1] said: {reply})\n"
    )


LONG_RECIPIENT = "r" * 330 + "@example.com"
CASES = [
    ("long recipient", delivery(LONG_RECIPIENT, "550 5.1.1 unknown (in reply to RCPT TO command)")),
    (
        "long command",
        delivery("a@b.example", "550 5.1.1 no (in reply to " + "X" * 70 + " command)"),
    ),
    (
        "nul in reply",
        delivery("a@b.example", "550 5.1.1 no\x00such user (in reply to RCPT TO command)"),
    ),
    ("nul in recipient", delivery("a\x00b@b.example", "550 5.1.1 unknown")),
]


def test_the_agents_limits_are_the_wire_contracts() -> None:
    """The agent's own copies of the limits (parse starts without importing the wire schema)
    are the wire's."""
    assert (
        MAX_LENGTHS["smtp_description"],
        MAX_LENGTHS["recipient"],
        MAX_LENGTHS["smtp_command"],
        MAX_LENGTHS["queue_id"],
    ) == (
        agent_events.MAX_TEXT,
        agent_events.MAX_RECIPIENT,
        agent_events.MAX_COMMAND,
        agent_events.MAX_QUEUE_ID,
    )


def _pipeline() -> Pipeline:
    return Pipeline(reference_time=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), tz=dt.UTC)


@pytest.mark.parametrize(("name", "line"), CASES, ids=[c[0] for c in CASES])
def test_events_from_odd_lines_are_accepted_by_the_platform_validator(name: str, line: str) -> None:
    """A bounce line with an over-long recipient or command, or a NUL, still gives exactly one
    event, and the batch the agent would ship of it passes check_batch (no 400 to dead-letter)."""
    data = (HEADER + line).encode()
    as_json = _pipeline().feed_json(data)
    as_objects = [json.dumps(e.to_wire()) for e in _pipeline().feed(data)]
    for events in (as_json, as_objects):
        body = ('{"events":[' + ",".join(events) + "]}").encode()
        assert 1 == check_batch(body)
    [event] = parse_batch(('{"events":[' + as_json[0] + "]}").encode())
    assert (UUID, "bounced") == (event.message_id, event.event_type)
    if name == "long recipient":
        assert event.recipient is None  # the platform falls back to the message's recipient
    if name == "long command":
        assert (event.smtp_command, event.smtp_code) == (None, 550)
    if name == "nul in reply":
        assert "5.1.1 no?such user" == event.smtp_description


def test_a_long_queue_id_is_cut_to_the_limit() -> None:
    """scan.prepare keeps at most MAX_QUEUE_ID characters of a queue ID."""
    reply = agent_events.analyse_reply("550 5.1.1 unknown")
    prepared = scan_module.prepare("bounced", reply, "a@b.example", "5.1.1", "Q" * 100, "line")
    _, _, head, tail = prepared
    rendered = json.loads(f'{{"message_id":"{UUID}{head}{tail}')
    assert "Q" * MAX_LENGTHS["queue_id"] == rendered["queue_id"]
