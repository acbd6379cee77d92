"""The whole loop with real processes: send API → relay → real Postfix → sink, and back through
``sendpost-agent run`` (and the bounce processor) → ingestion → processing → events API.

Orchestration is ``devtools.stack`` (shared with ``make demo``); the batch and what each recipient
must end as are ``devtools.demo.PLAN``: the receiving server accepts ``accept-*``, rejects
``reject-*`` (550 5.1.1), ``full-*`` (552 5.2.2) and ``dataerr-*`` (554 after DATA) permanently and
defers ``defer-*``/``greylist-*`` until Postfix gives up (one attempt, then ``status=expired``).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools import demo
from devtools.processes import deadline_loop
from devtools.stack import TERMINAL, Outcome, Sent, Stack

pytestmark = [pytest.mark.postfix, pytest.mark.slow]

DEFERRING = ("defer-", "greylist-")


@dataclass
class Run:
    stack: Stack
    sent: list[Sent]
    outcome: Outcome


def _deferring(sent: list[Sent]) -> list[Sent]:
    return [s for s in sent if s.recipient.startswith(DEFERRING)]


def _sources(event: dict[str, object]) -> set[str]:
    return set(demo.reported_by(event).split(" + "))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The demo's batch through the whole stack, Postfix's notifications going to the platform's
    bounce processor; waits until every message has its final event and until both reports of
    every bounce (the agent's and the DSN's) and the agent's deferrals have been processed."""
    with Stack(workdir=tmp_path_factory.mktemp("stack")) as stack:
        sent = stack.send(demo.recipients())
        stack.wait_for_outcomes(sent, timeout=60)
        deferring = len(_deferring(sent))
        for _ in deadline_loop("the agent's reports to be processed", 30, 0.25):
            outcome = stack.outcome(sent)
            bounces = [e for e in outcome.final_event.values() if e["typeName"] != "CSDelivered"]
            if stack.platform_counter("ingest.deferred") >= deferring and all(
                {"agent", "dsn"} <= _sources(e) for e in bounces
            ):
                break
        yield Run(stack, sent, outcome)


def test_every_recipient_ends_as_the_receiving_server_decided(run: Run) -> None:
    """accepted → CSDelivered, 550 5.1.1 → CSHardBounced, mailbox full, content rejection and
    deferrals until expiry → CSSoftBounced; and the sink really answered so."""
    expected = {s.recipient: demo.expected_final(s.recipient) for s in run.sent}
    assert expected == run.outcome.final
    said = {s.recipient: run.stack.receiving_server_said(s.recipient)[:9] for s in run.sent}
    expected_said = {
        s.recipient: {
            "accept": "DATA: 250",
            "reject": "RCPT: 550",
            "full": "RCPT: 552",
            "dataerr": "DATA: 554",
            "defer": "RCPT: 450",
            "greylist": "RCPT: 451",
        }[s.recipient.split("-", 1)[0]]
        for s in run.sent
    }
    assert expected_said == said


def test_each_message_is_processed_sent_and_finished_exactly_once(run: Run) -> None:
    """Per (message, recipient): exactly one CSProcessed (stored first), one CSSent and one final
    event — nothing is stored twice although the agent and the bounce processor both report."""
    by_message: dict[str, list[dict[str, object]]] = {}
    for event in sorted(run.outcome.events, key=lambda e: int(e["id"])):
        by_message.setdefault(str(event["messageId"]), []).append(event)
    shapes = {}
    for item in run.sent:
        events = by_message[item.message_id]
        assert {item.recipient} == {e["recipient"] for e in events}
        kinds = Counter(
            "final" if e["typeName"] in TERMINAL else str(e["typeName"]) for e in events
        )
        shapes[item.recipient] = (str(events[0]["typeName"]), dict(kinds))
    expected = {
        s.recipient: ("CSProcessed", {"CSProcessed": 1, "CSSent": 1, "final": 1}) for s in run.sent
    }
    assert expected == shapes


def test_bounces_reported_twice_are_stored_once_with_both_reports(run: Run) -> None:
    """Every bounce was reported by the bounce processor (Postfix's DSN) and by the agent (the
    log); the stored event keeps one and merges the other's details."""
    sources = {
        r: _sources(e) for r, e in run.outcome.final_event.items() if e["typeName"] != "CSDelivered"
    }
    assert {r: {"dsn", "agent"} for r in sources} == sources
    delivered = {
        r: _sources(e) for r, e in run.outcome.final_event.items() if e["typeName"] == "CSDelivered"
    }
    assert {r: {"agent"} for r in delivered} == delivered


def test_deferrals_are_counted_and_never_stored(run: Run) -> None:
    """The agent reported a deferral for each deferred recipient; the platform counted them and
    stored none: the events API has no CSDeferred, by name or by ID."""
    assert run.stack.agent.metric("events_total", 'type="deferred"') >= len(_deferring(run.sent))
    assert run.stack.platform_counter("ingest.deferred") >= len(_deferring(run.sent))
    assert [] == run.stack.events(type="CSDeferred")
    assert [] == run.stack.events(type="61")
    assert [] == [e for e in run.outcome.events if e["typeName"] == "CSDeferred"]


def test_sigkilled_agent_restarts_and_loses_nothing(tmp_path: Path) -> None:
    """With Postfix's notifications discarded (the agent is the only source of deliveries and
    bounces): SIGKILL the agent while Postfix delivers the first batch, send a second batch
    while it is dead, restart it, SIGKILL it again once its catch-up has shipped something,
    restart: every recipient of both batches ends in the right state, each exactly once."""
    with Stack(workdir=tmp_path, notifications_to_platform=False) as stack:
        first = stack.send(demo.recipients(".b1"))
        for _ in deadline_loop("the first relayed message", 60, 0.05):
            if stack.events(type="CSSent"):  # Postfix is delivering batch 1 right now
                break
        stack.agent.kill()
        second = stack.send(demo.recipients(".b2"))
        for _ in deadline_loop("batch 2 relayed and Postfix idle", 60, 0.2):
            sent_events = stack.events(type="CSSent")
            relayed = {e["messageId"] for e in sent_events}
            if all(s.message_id in relayed for s in second) and stack.postfix.queue_is_empty():
                break
        everything = first + second
        stack.agent.start()
        for _ in deadline_loop("the catch-up's first outcome", 60, 0.05):
            if stack.outcome(everything).final:
                break
        stack.agent.kill()
        stack.agent.start()
        outcome = stack.wait_for_outcomes(everything, timeout=60)
        expected = {s.recipient: demo.expected_final(s.recipient) for s in everything}
        assert expected == outcome.final
        finals = Counter(
            (e["messageId"], e["recipient"]) for e in outcome.events if e["typeName"] in TERMINAL
        )
        assert {(s.message_id, s.recipient): 1 for s in everything} == dict(finals)
        assert {"agent"} == {e["source"] for e in outcome.final_event.values()}


def test_demo_once_prints_final_states_matching_the_receiving_server() -> None:
    """``python -m devtools.demo --once`` (what ``make demo`` runs) exits 0 and prints, per
    recipient, the final event the receiving server's answer leads to, and the type counts."""
    done = subprocess.run(
        [sys.executable, "-m", "devtools.demo", "--once"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        cells = line.split()
        if cells and cells[0].endswith("@sink.test"):
            rows[cells[0]] = next(c for c in cells if c.startswith("CS"))
    expected = {r: demo.expected_final(r) for r in demo.recipients()}
    assert expected == rows
    counts = {}
    for line in done.stdout.splitlines():
        cells = line.split()
        if len(cells) >= 2 and cells[0] in demo.TYPE_ORDER and cells[1].isdigit():
            counts[cells[0]] = int(cells[1])
    finals = Counter(expected.values())
    total = len(expected)
    assert {"CSProcessed": total, "CSSent": total, **finals} == counts
