"""Golden tests: representative lines → records, and a log of lifecycles → events.

``UPDATE_GOLDEN=1`` rewrites the golden files from the current code (review the diff).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from sendpost_agent.parse.postfix import Pipeline, parse_line

GOLDEN = Path(__file__).parent / "golden"
REFERENCE = dt.datetime(2024, 1, 10, tzinfo=dt.UTC)


def _record_json(line: bytes) -> dict[str, Any]:
    rec = parse_line(line)
    out: dict[str, Any] = {"type": type(rec).__name__}
    out.update({k: v for k, v in rec._asdict().items() if k != "line"})
    if out.get("final_recipient", "") is None:
        del out["final_recipient"]  # only lines with orig_to= have one
    return out


def _check(name: str, actual: list[dict[str, Any]]) -> None:
    path = GOLDEN / name
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in actual)
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    expected = [json.loads(row) for row in path.read_text(encoding="utf-8").splitlines()]
    assert expected == actual


def test_lines_golden() -> None:
    """Each representative line (every envelope, daemon, relay and status form) parses to
    exactly the record in lines.golden.jsonl."""
    lines = (GOLDEN / "lines.log").read_bytes().splitlines()
    _check("lines.golden.jsonl", [_record_json(line) for line in lines])


def test_lifecycle_golden() -> None:
    """The lifecycles in lifecycle.log (New Year, UUID from each source, deferral then
    delivery, expiry, queue-ID reuse, content-filter hop, SOFTBOUNCE, 4.x.x bounce, address
    probe, bounce notification) give exactly the events in lifecycle.golden.jsonl."""
    pipeline = Pipeline(reference_time=REFERENCE, tz=dt.UTC)
    events = pipeline.feed((GOLDEN / "lifecycle.log").read_bytes())
    events += pipeline.flush()
    _check("lifecycle.golden.jsonl", [event.to_wire() for event in events])
    assert (pipeline.stats.uncorrelated, pipeline.stats.events) == (
        2,
        {"bounced": 2, "deferred": 3, "delivered": 3, "soft_bounced": 3},
    )


def test_hops_golden() -> None:
    """hops.log (a content filter linked by orig_queue_id; postfix-in handing two recipients to
    postfix-out, whose lines come after the parent's 'queued as'; a loopback smarthost whose log
    is elsewhere, released when the window ends and at the end of input; a NEWID first seen
    after its window, not linked; virtual_alias_maps rewrites for delivered, bounced, deferred
    and expired recipients) gives exactly the events in hops.golden.jsonl, and the hop and
    orig_to counters."""
    pipeline = Pipeline(reference_time=REFERENCE, tz=dt.UTC)
    events = pipeline.feed((GOLDEN / "hops.log").read_bytes())
    events += pipeline.flush()
    _check("hops.golden.jsonl", [event.to_wire() for event in events])
    stats = pipeline.stats
    assert (3, 3, 4, 1) == (
        stats.hops_resolved,
        stats.hops_unresolved,
        stats.recipients_from_orig_to,
        stats.uncorrelated,
    )
