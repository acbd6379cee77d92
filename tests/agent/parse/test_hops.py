"""Hops by evidence, internal relays with ports, and the platform's address (orig_to=)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sendpost_agent.parse.postfix import Pipeline
from sendpost_agent.parse.postfix.correlate import HOP_WINDOW_US
from sendpost_agent.parse.relays import InternalRelays, parse_entry

from tests.agent.parse.test_correlate import REF, UUID, brief, header, log, removed, run, to

SMARTHOST = "127.0.0.1[127.0.0.1]:2525"
FILTER = "127.0.0.1[127.0.0.1]:10024"
WINDOW_S = HOP_WINDOW_US // 1_000_000


def queued(qid: str, child: str, relay: str = SMARTHOST, at: str = "12:00:01") -> bytes:
    return to(qid, relay=relay, text=f"250 2.0.0 Ok: queued as {child}", at=at)


def later(seconds: int) -> str:
    t = dt.datetime(2024, 2, 19, 12, 0, 1) + dt.timedelta(seconds=seconds)
    return t.strftime("%H:%M:%S")


def test_queued_as_to_a_loopback_smarthost_is_a_delivery_once_the_window_ends() -> None:
    """A `queued as NEWID` from a loopback relay whose NEWID never shows in the log waits one
    window of log time, then is `delivered` with the relay's reply, timed by its own line, and
    counted as an unresolved hop; a line still inside the window releases nothing."""
    pipeline = Pipeline(reference_time=REF, tz=dt.UTC)
    first = pipeline.feed(header("3A0000001") + queued("3A0000001", "912265B1F5"))
    inside = pipeline.feed(to("OTHER0001", at=later(WINDOW_S - 1)))
    after = pipeline.feed(to("OTHER0001", at=later(WINDOW_S)))
    assert ([], []) == (first, inside)
    assert [(UUID, "delivered", 250, "2.0.0 Ok: queued as 912265B1F5", "2024-02-19T12:00:01Z")] == [
        (e.message_id, e.event_type, e.smtp_code, e.smtp_description, e.to_wire()["timestamp"])
        for e in after
    ]
    assert (0, 1) == (pipeline.stats.hops_resolved, pipeline.stats.hops_unresolved)


def test_newid_seen_within_the_window_makes_a_hop() -> None:
    """NEWID's lines arriving after the parent's `queued as` (two Postfix instances, one log),
    within the window: no event for the hop, NEWID's delivery carries the parent's UUID."""
    events, pipeline = run(
        header("2A0000001")
        + queued("2A0000001", "2B0000001", relay="127.0.0.1[127.0.0.1]:10026")
        + removed("2A0000001"),
        to("2B0000001", "r@example.org", text="250 2.0.0 Ok", at=later(WINDOW_S - 1)),
    )
    assert [(UUID, "delivered", "r@example.org", "2B0000001")] == brief(events)
    assert (1, 0) == (pipeline.stats.hops_resolved, pipeline.stats.hops_unresolved)


def test_newid_removed_before_the_queued_as_line_is_evidence() -> None:
    """A filter that answers only after the re-injected copy (with its own UUID header) was
    delivered and removed: that removal is remembered, so the later `queued as` is a hop, not a
    second delivery."""
    events, pipeline = run(
        header("1A0000001")
        + header("1B0000001")
        + to("1B0000001", text="250 2.0.0 Ok")
        + removed("1B0000001")
        + queued("1A0000001", "1B0000001", relay=FILTER, at="12:00:03")
    )
    assert [(UUID, "delivered", "r@example.org", "1B0000001")] == brief(events)
    assert (1, 0) == (pipeline.stats.hops_resolved, pipeline.stats.hops_unresolved)


def test_end_of_input_and_a_quiet_log_release_candidates() -> None:
    """parse's end of input (flush) and the daemon's idle expire(now) turn waiting candidates
    into deliveries; expire before the window ends keeps them."""
    events, _ = run(header("3A0000001") + queued("3A0000001", "912265B1F5"))
    assert [(UUID, "delivered", "r@example.org", "3A0000001")] == brief(events)
    daemon = Pipeline(reference_time=REF, tz=dt.UTC)
    daemon.feed(header("3A0000001") + queued("3A0000001", "912265B1F5"))
    sent_at = dt.datetime(2024, 2, 19, 12, 0, 1, tzinfo=dt.UTC)
    early = daemon.expire(sent_at + dt.timedelta(seconds=WINDOW_S - 1))
    late = daemon.expire(sent_at + dt.timedelta(seconds=WINDOW_S + 1))
    assert [] == early
    assert [("delivered", "3A0000001")] == [
        (e["event_type"], e["queue_id"]) for e in map(json.loads, late)
    ]
    assert 1 == daemon.stats.hops_unresolved


def test_a_relay_named_with_its_port_tells_filter_and_smarthost_apart() -> None:
    """internal_relays = 127.0.0.1:10024: the filter's `queued as` is a hop candidate (its
    NEWID follows), the smarthost on 127.0.0.1:2525 is a delivery at once, without waiting."""
    pipeline = Pipeline(reference_time=REF, tz=dt.UTC, internal_relays=("127.0.0.1:10024",))
    smarthost = pipeline.feed(header("3A0000001") + queued("3A0000001", "912265B1F5"))
    hop = pipeline.feed(header("1A0000001") + queued("1A0000001", "1B0000001", relay=FILTER))
    child = pipeline.feed(to("1B0000001", at="12:00:02"))
    assert [("delivered", "3A0000001")] == [(e.event_type, e.queue_id) for e in smarthost]
    assert [] == hop
    assert [(UUID, "delivered", "r@example.org", "1B0000001")] == brief(
        [e.to_wire() for e in child]
    )


def test_a_waiting_candidate_survives_a_restart() -> None:
    """A pipeline rebuilt from snapshot() (through JSON) after every line releases the waiting
    candidate and resolves the hop exactly as one uninterrupted pipeline."""
    lines = [
        header("3A0000001"),
        queued("3A0000001", "912265B1F5"),
        removed("3A0000001"),
        header("2A0000001", UUID.replace("1b", "2b")),
        queued("2A0000001", "2B0000001", at="12:00:05"),
        to("2B0000001", at="12:00:06"),
        to("OTHER0001", at=later(WINDOW_S + 1)),
    ]
    whole, _ = run(b"".join(lines))
    pieces: list[dict] = []
    state = None
    for line in lines:
        pipeline = Pipeline(reference_time=REF, tz=dt.UTC, state=state)
        pieces += [e.to_wire() for e in pipeline.feed(line)]
        state = json.loads(json.dumps(pipeline.snapshot()))
    assert whole == pieces
    assert [("delivered", "2B0000001"), ("delivered", "3A0000001")] == [
        (e["event_type"], e["queue_id"]) for e in whole
    ]


def test_orig_to_is_the_recipient_and_to_the_final_recipient() -> None:
    """With virtual_alias_maps the line says to=<ok.team@dest.test>, orig_to=<info@brand.test>:
    the event's recipient is info@brand.test (the platform's), final_recipient the rewritten
    one; the event id hashes the reported recipient; counted once per event."""
    line = log(
        "4A0000001",
        "to=<ok.team@dest.test>, orig_to=<info@brand.test>, relay=mx[192.0.2.9]:25, delay=1, "
        "dsn=5.1.1, status=bounced (host mx[192.0.2.9] said: 550 5.1.1 unknown)",
    )
    events, pipeline = run(header("4A0000001") + line)
    assert [("bounced", "info@brand.test", "ok.team@dest.test")] == [
        (e["event_type"], e["recipient"], e["final_recipient"]) for e in events
    ]
    assert 1 == pipeline.stats.recipients_from_orig_to


@pytest.mark.parametrize(
    ("entry", "relay", "expected"),
    [
        ("127.0.0.0/8", FILTER, True),
        ("127.0.0.1:10024", FILTER, True),
        ("127.0.0.1:10024", SMARTHOST, False),
        ("[::1]:10024", "localhost[::1]:10024", True),
        ("[::1]:10024", "localhost[ipv6:::1]:2525", False),
        ("localhost:10024", "localhost[127.0.0.1]:10024", True),
        ("localhost:10024", "localhost[127.0.0.1]:25", False),
        ("private/amavis", "amavis[private/amavis]", True),
        ("filter.lan", "filter.lan[10.1.2.3]:10024", True),
        ("10.0.0.0/8", "mx.example.org[192.0.2.9]:25", False),
    ],
)
def test_internal_relay_entries(entry: str, relay: str, expected: bool) -> None:
    """Networks, names and host:port (IPv6 in brackets) match relay= values as documented."""
    assert expected == (relay in InternalRelays([entry]))


@pytest.mark.parametrize("entry", ["127.0.0.1:99999", "a b", "[::1", "host:port", ""])
def test_bad_internal_relay_entries_are_refused(entry: str) -> None:
    """An entry that is no network, name or host:port is a ValueError naming it."""
    with pytest.raises(ValueError, match=r"port|not an address"):
        parse_entry(entry)


def test_removed_queue_ids_are_evidence_for_the_window_only() -> None:
    """A queue ID removed within the hop window (log time, as delivery lines tell it) before
    the `queued as` still makes a hop; one removed longer ago is forgotten (short IDs are
    reused), so the line waits its window and is a delivery; the memory of removals stays
    bounded while the log advances."""
    from sendpost_agent.parse.postfix.correlate import Correlator

    def outcome(gap_s: int) -> tuple[int, int]:
        _, pipeline = run(
            header("1B0000001") + to("1B0000001", at="12:00:01") + removed("1B0000001"),
            header("1A0000001") + queued("1A0000001", "1B0000001", relay=FILTER, at=later(gap_s)),
        )
        return pipeline.stats.hops_resolved, pipeline.stats.hops_unresolved

    assert [(1, 0), (0, 1)] == [
        outcome(WINDOW_S - 1),
        outcome(WINDOW_S + 1),
    ]
    corr = Correlator(lambda relay: False)
    for n in range(20_000):
        corr.last_us = n * 1_000_000
        corr.removed(f"{n:010X}", [])
    assert len(corr.recent) <= 2 * (WINDOW_S + 1) + 1024


def test_newid_first_seen_after_the_window_is_not_linked() -> None:
    """The window is a promise: once a candidate was reported delivered, a NEWID showing up
    later is not linked (its delivery line has no UUID and is counted as uncorrelated), so the
    message is never reported delivered twice."""
    events, pipeline = run(
        header("3A0000001") + queued("3A0000001", "3B0000001"),
        to("3B0000001", at=later(WINDOW_S + 5)),
    )
    assert [(UUID, "delivered", "r@example.org", "3A0000001")] == brief(events)
    assert (0, 1, 1) == (
        pipeline.stats.hops_resolved,
        pipeline.stats.hops_unresolved,
        pipeline.stats.uncorrelated,
    )


def test_waiting_candidates_are_bounded() -> None:
    """Beyond MAX_HOP_LINES waiting candidate lines the oldest is released as a delivery at
    once, so memory stays bounded and nothing is lost."""
    from sendpost_agent.parse.postfix.correlate import MAX_HOP_LINES

    lines = [header("3A0000001")] + [
        queued("3A0000001", f"9{n:09X}") for n in range(MAX_HOP_LINES + 2)
    ]
    pipeline = Pipeline(reference_time=REF, tz=dt.UTC)
    early = pipeline.feed(b"".join(lines))
    assert (2, 2) == (len(early), pipeline.stats.hops_unresolved)
    assert [f"9{n:09X}" for n in range(2)] == [
        e.smtp_description.rsplit(" ", 1)[-1] for e in early if e.smtp_description
    ]
    assert MAX_HOP_LINES + 2 == len(early) + len(pipeline.flush())
