"""Correlation: queue IDs → UUIDs, held lines, hops, expiry, reuse, TTL and resumable state."""

from __future__ import annotations

import datetime as dt
import json

from sendpost_agent.parse.postfix import Pipeline
from sendpost_agent.parse.postfix.correlate import MAX_HELD

UUID = "1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01"
OTHER = "2c4e6f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
REF = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def log(qid: str, payload: str, at: str = "12:00:00", prog: str = "postfix/smtp") -> bytes:
    return f"Feb 19 {at} mx {prog}[100]: {qid}: {payload}\n".encode()


def header(qid: str, uuid: str = UUID) -> bytes:
    return log(
        qid,
        f"info: header X-Sendpost-Message-UUID: {uuid} from p.example.net[192.0.2.1];"
        " from=<s@example.com> to=<r@example.org> proto=ESMTP helo=<p>",
        prog="postfix/cleanup",
    )


def sender(qid: str, uuid: str = UUID) -> bytes:
    return log(
        qid,
        f"from=<bounces+{uuid}+42@sp-bounce.example.com>, size=100, nrcpt=1 (queue active)",
        prog="postfix/qmgr",
    )


def message_id(qid: str, uuid: str = UUID) -> bytes:
    return log(qid, f"message-id=<{uuid}@platform.example.net>", prog="postfix/cleanup")


def to(
    qid: str,
    rcpt: str = "r@example.org",
    status: str = "sent",
    dsn: str = "2.0.0",
    text: str = "250 2.0.0 Ok: queued as ABCDEF",
    relay: str = "mx.example.org[192.0.2.9]:25",
    at: str = "12:00:01",
) -> bytes:
    return log(
        qid,
        f"to=<{rcpt}>, relay={relay}, delay=1, delays=0/0/0.5/0.5, dsn={dsn}, status={status}"
        f" ({text})",
        at=at,
    )


def removed(qid: str, at: str = "12:00:02") -> bytes:
    return log(qid, "removed", at=at, prog="postfix/qmgr")


def expired(qid: str, at: str = "13:00:00") -> bytes:
    return log(qid, "from=<s@example.com>, status=expired, returned to sender", at, "postfix/qmgr")


def run(*chunks: bytes, relays: tuple[str, ...] | None = None) -> tuple[list[dict], Pipeline]:
    pipeline = (
        Pipeline(reference_time=REF, tz=dt.UTC)
        if relays is None
        else Pipeline(reference_time=REF, tz=dt.UTC, internal_relays=relays)
    )
    events = []
    for chunk in chunks:
        events += pipeline.feed(chunk)
    events += pipeline.flush()
    return [e.to_wire() for e in events], pipeline


def brief(events: list[dict]) -> list[tuple[str, str, str | None, str | None]]:
    return [(e["message_id"], e["event_type"], e.get("recipient"), e["queue_id"]) for e in events]


def test_uuid_from_header_line() -> None:
    """The header_checks INFO line gives the queue ID its UUID."""
    events, _ = run(header("A1B2C3D4E5") + to("A1B2C3D4E5") + removed("A1B2C3D4E5"))
    assert brief(events) == [(UUID, "delivered", "r@example.org", "A1B2C3D4E5")]


def test_uuid_from_bounce_sender() -> None:
    """qmgr's from=<bounces+UUID+ID@sp-bounce.domain> gives the UUID."""
    events, _ = run(sender("A1B2C3D4E5") + to("A1B2C3D4E5"))
    assert brief(events) == [(UUID, "delivered", "r@example.org", "A1B2C3D4E5")]


def test_uuid_from_message_id() -> None:
    """Failing the others, a Message-ID whose local part is a UUID gives it."""
    events, _ = run(message_id("A1B2C3D4E5") + to("A1B2C3D4E5"))
    assert brief(events) == [(UUID, "delivered", "r@example.org", "A1B2C3D4E5")]


def test_header_wins_over_message_id_and_sender() -> None:
    """When sources disagree, the header beats the sender, which beats the Message-ID, in
    whatever order they are logged."""
    events, _ = run(
        message_id("A1B2C3D4E5", OTHER) + header("A1B2C3D4E5") + sender("A1B2C3D4E5", OTHER),
        to("A1B2C3D4E5"),
    )
    assert brief(events) == [(UUID, "delivered", "r@example.org", "A1B2C3D4E5")]


def test_lines_before_the_uuid_are_held_not_lost() -> None:
    """A delivery line logged before the line revealing the UUID (here in an earlier feed)
    is emitted once the UUID is known, with its own timestamp."""
    pipeline = Pipeline(reference_time=REF, tz=dt.UTC)
    first = pipeline.feed(to("A1B2C3D4E5", status="deferred", dsn="4.0.0", text="try later"))
    second = pipeline.feed(sender("A1B2C3D4E5"))
    assert (first, [(e.event_type, e.timestamp) for e in second]) == (
        [],
        [("deferred", dt.datetime(2024, 2, 19, 12, 0, 1, tzinfo=dt.UTC))],
    )


def test_queue_id_without_uuid_gives_no_event_and_is_counted() -> None:
    """Foreign mail and bounce notifications give no event; their delivery lines are counted
    as uncorrelated once the queue ID is removed and the hold time has passed."""
    events, pipeline = run(
        to("F0F0F0F0F0") + removed("F0F0F0F0F0") + header("A1B2C3D4E5"),
        to("A1B2C3D4E5", at="12:10:00"),
    )
    assert (brief(events), pipeline.stats.uncorrelated) == (
        [(UUID, "delivered", "r@example.org", "A1B2C3D4E5")],
        1,
    )


def test_reinjection_via_orig_queue_id() -> None:
    """smtpd's orig_queue_id=PARENT passes the parent's UUID to the new queue ID; the hop to
    the content filter is not a delivery."""
    hop = to(
        "PARENT0001",
        relay="127.0.0.1[127.0.0.1]:10024",
        text="250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as CHILD00001",
    )
    child_client = log(
        "CHILD00001",
        "client=localhost[127.0.0.1], orig_queue_id=PARENT0001, orig_client=x[192.0.2.3]",
        prog="postfix/10025/smtpd",
    )
    events, _ = run(header("PARENT0001") + child_client + hop + to("CHILD00001", at="12:00:05"))
    assert brief(events) == [(UUID, "delivered", "r@example.org", "CHILD00001")]


def test_reinjection_via_queued_as_when_child_lines_come_first() -> None:
    """The child's delivery and removal logged before the parent's 'queued as CHILD' line are
    held and emitted with the parent's UUID when that line arrives."""
    hop = to(
        "PARENT0001",
        relay="localhost[127.0.0.1]:10024",
        text="250 2.0.0 Ok: queued as CHILD00001",
        at="12:00:03",
    )
    events, pipeline = run(
        header("PARENT0001") + to("CHILD00001") + removed("CHILD00001") + hop,
        removed("PARENT0001", at="12:00:04"),
    )
    assert (brief(events), pipeline.stats.uncorrelated) == (
        [(UUID, "delivered", "r@example.org", "CHILD00001")],
        0,
    )


def test_queued_as_from_a_remote_relay_is_a_delivery() -> None:
    """'queued as X' in the reply of a remote server is its own queue ID: a delivery."""
    events, _ = run(header("A1B2C3D4E5") + to("A1B2C3D4E5", text="250 Ok: queued as CHILD00001"))
    assert brief(events) == [(UUID, "delivered", "r@example.org", "A1B2C3D4E5")]


def test_configured_internal_relay_is_a_hop() -> None:
    """internal_relays names the filter hosts: a network or a host name."""
    hop = to("PARENT0001", relay="filter.lan[10.1.2.3]:10024", text="250 Ok: queued as CHILD00001")
    events, _ = run(
        header("PARENT0001") + hop + to("CHILD00001"), relays=("10.0.0.0/8", "127.0.0.0/8")
    )
    assert brief(events) == [(UUID, "delivered", "r@example.org", "CHILD00001")]


def test_expiry_soft_bounces_each_pending_recipient() -> None:
    """qmgr status=expired gives soft_bounced for each recipient still deferred, with the last
    deferral's reply; delivered recipients get nothing more."""
    events, _ = run(
        header("A1B2C3D4E5")
        + to("A1B2C3D4E5", "a@x.org", "deferred", "4.2.0", "host m[192.0.2.9] said: 450 busy")
        + to("A1B2C3D4E5", "b@x.org", "deferred", "4.4.1", "connect to m[192.0.2.9]:25: refused")
        + to("A1B2C3D4E5", "b@x.org", at="12:30:00")
        + expired("A1B2C3D4E5")
    )
    last = events[-1]
    assert (brief(events[-1:]), last["smtp_code"], last["enhanced_status"]) == (
        [(UUID, "soft_bounced", "a@x.org", "A1B2C3D4E5")],
        450,
        "4.2.0",
    )
    assert [e["event_type"] for e in events] == [
        "deferred",
        "deferred",
        "delivered",
        "soft_bounced",
    ]


def test_expiry_with_no_known_recipient() -> None:
    """An expired message whose attempts we never saw still gives one soft_bounced."""
    events, _ = run(header("A1B2C3D4E5") + expired("A1B2C3D4E5"))
    assert [(e["event_type"], e.get("recipient"), e["smtp_description"]) for e in events] == [
        ("soft_bounced", None, "message expired")
    ]


def test_removed_ends_a_queue_id_that_is_then_reused() -> None:
    """After 'removed', the same short queue ID is a new message: no event with the old UUID."""
    events, pipeline = run(
        header("A1B2C3D4E5") + to("A1B2C3D4E5") + removed("A1B2C3D4E5"),
        to("A1B2C3D4E5", rcpt="other@example.net", at="12:05:00"),
    )
    assert (brief(events), pipeline.stats.uncorrelated) == (
        [(UUID, "delivered", "r@example.org", "A1B2C3D4E5")],
        1,
    )


def test_entries_expire_after_24_hours() -> None:
    """expire(now) forgets a queue ID not seen for 24 hours; a later line for it is uncorrelated."""
    pipeline = Pipeline(reference_time=REF, tz=dt.UTC)
    pipeline.feed(header("A1B2C3D4E5") + to("A1B2C3D4E5", status="deferred", dsn="4.0.0"))
    pipeline.expire(dt.datetime(2024, 2, 19, 12, 0, 0, tzinfo=dt.UTC) + dt.timedelta(hours=23))
    kept = pipeline.feed(to("A1B2C3D4E5", status="deferred", dsn="4.0.0", at="12:00:05"))
    pipeline.expire(dt.datetime(2024, 2, 19, 12, 0, 6, tzinfo=dt.UTC) + dt.timedelta(hours=24))
    lost = pipeline.feed(to("A1B2C3D4E5", at="13:00:00"))
    pipeline.flush()
    assert ([e.event_type for e in kept], lost, pipeline.stats.uncorrelated) == (
        ["deferred"],
        [],
        1,
    )


def test_snapshot_round_trip_mid_deferral() -> None:
    """A pipeline rebuilt from snapshot() (through JSON) after every line produces exactly the
    events of one uninterrupted pipeline: held lines, pending recipients, links and the year."""
    lines = [
        log("CHILD00001", "client=localhost[127.0.0.1], orig_queue_id=PARENT0001", "11:59:59"),
        to("CHILD00001", "c@x.org", at="12:00:00"),
        header("PARENT0001"),
        to("A1B2C3D4E5", "a@x.org", "deferred", "4.2.0", "host m[192.0.2.9] said: 450 busy"),
        message_id("A1B2C3D4E5", OTHER),
        to("A1B2C3D4E5", "b@x.org", "deferred", "4.2.0", "host m[192.0.2.9] said: 451 later"),
        expired("A1B2C3D4E5"),
        removed("A1B2C3D4E5", at="13:00:01"),
    ]
    whole, _ = run(b"".join(lines))
    pieces: list[dict] = []
    state = None
    for line in lines:
        pipeline = Pipeline(reference_time=REF, tz=dt.UTC, state=state)
        pieces += [e.to_wire() for e in pipeline.feed(line)]
        state = json.loads(json.dumps(pipeline.snapshot()))
    assert pieces == whole
    assert [e["event_type"] for e in whole] == [
        "delivered",
        "deferred",
        "deferred",
        "soft_bounced",
        "soft_bounced",
    ]


def test_event_ids_are_deterministic_and_distinct() -> None:
    """The same log gives the same event ids in another run; different lines differ."""
    data = header("A1B2C3D4E5") + to("A1B2C3D4E5", "a@x.org") + to("A1B2C3D4E5", "b@x.org")
    first, _ = run(data)
    second, _ = run(data)
    ids = [e["event_id"] for e in first]
    assert (ids, len(set(ids))) == ([e["event_id"] for e in second], 2)


def test_status_mapping() -> None:
    """sent → delivered, bounced 5.x.x → bounced, bounced 4.x.x and SOFTBOUNCE → soft_bounced,
    deferred → deferred, address verification → nothing."""
    qid = "A1B2C3D4E5"
    events, _ = run(
        header(qid)
        + to(qid, "a@x.org")
        + to(qid, "b@x.org", "bounced", "5.1.1", "host m[192.0.2.9] said: 550 5.1.1 unknown")
        + to(qid, "c@x.org", "bounced", "4.2.2", "host m[192.0.2.9] said: 452 4.2.2 full")
        + to(qid, "d@x.org", "SOFTBOUNCE", "4.0.0", "host m[192.0.2.9] said: 550 no")
        + to(qid, "e@x.org", "deferred", "4.0.0", "host m[192.0.2.9] said: 421 later")
        + to(qid, "f@x.org", "deliverable", "2.1.5", "250 2.1.5 Ok")
        + to(qid, "g@x.org", "undeliverable", "5.1.1", "550 5.1.1 unknown")
    )
    assert [(e["recipient"], e["event_type"]) for e in events] == [
        ("a@x.org", "delivered"),
        ("b@x.org", "bounced"),
        ("c@x.org", "soft_bounced"),
        ("d@x.org", "soft_bounced"),
        ("e@x.org", "deferred"),
    ]


def test_held_lines_are_bounded() -> None:
    """At most MAX_HELD lines wait for a UUID; the oldest beyond that are counted as
    uncorrelated straight away."""
    pipeline = Pipeline(reference_time=REF, tz=dt.UTC)
    pipeline.feed(b"".join(to(f"F{i:09d}") for i in range(MAX_HELD + 25)))
    assert pipeline.stats.uncorrelated == 25


def test_reused_queue_id_removed_twice_without_uuid_counts_both() -> None:
    """A short queue ID used twice by foreign mail within the hold time: both messages' lines
    are counted as uncorrelated, none is silently lost."""
    events, pipeline = run(
        to("F0F0F0F0F0") + removed("F0F0F0F0F0"),
        to("F0F0F0F0F0", at="12:00:03") + removed("F0F0F0F0F0", at="12:00:04"),
    )
    assert (events, pipeline.stats.uncorrelated) == ([], 2)
