"""Runs the parser over given inputs and prints everything it produced, as JSON, for
test_compiled.py, which runs this once with the compiled modules and once with
SENDPOST_AGENT_PURE_PYTHON=1 and compares the two outputs.

    python -m tests.agent.parse.differential INPUT.json

INPUT: ``{"feeds": [[hex buffer, ...], ...], "replies": [text, ...], "prepare": [[args], ...]}``:
each list of buffers is fed to one pipeline in turn (``feed_json``, then ``feed`` on a second
pipeline); the output holds, per buffer, the scan's ops, the events, the counters and the saved
state, then what ``flush`` gives; per reply text ``analyse_reply``; per argument list
``prepare``. The first output line is ``sendpost_agent.parse.CODE``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from sendpost_agent.parse import CODE
from sendpost_agent.parse.events import analyse_reply
from sendpost_agent.parse.postfix import Pipeline
from sendpost_agent.parse.postfix.scan import prepare, scan


def _plain(value: Any) -> Any:
    """JSON-able form of ops, records (their type named), tuples and dicts."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a record (named tuple)
        return [type(value).__name__, [_plain(v) for v in value]]
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def run(spec: dict[str, Any]) -> list[Any]:
    reference = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    out: list[Any] = []
    for feeds in spec.get("feeds", []):
        as_json = Pipeline(reference_time=reference, tz=dt.UTC)
        as_events = Pipeline(reference_time=reference, tz=dt.UTC, track_changes=True)
        for hexed in feeds:
            data = bytes.fromhex(hexed)
            out.append(_plain(scan(data)))
            out.append(as_json.feed_json(data))
            out.append([e.to_wire() for e in as_events.feed(data)])
            out.append(as_json.stats.to_json())
            out.append(_plain(as_json.snapshot()))
            out.append(_plain(as_events.changes()))
        out.append(as_json.flush_json())
        out.append(as_json.stats.to_json())
    out.extend(_plain(analyse_reply(text)) for text in spec.get("replies", []))
    out.extend(_plain(prepare(*args)) for args in spec.get("prepare", []))
    return out


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    print(CODE)
    print(json.dumps(run(spec), sort_keys=True))


if __name__ == "__main__":
    main()
