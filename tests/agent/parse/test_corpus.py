"""The parser against the shared corpus of real Postfix lines (tests/corpus/postfix-logs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sendpost_agent.parse import Delivery, Expired, Unparsed
from sendpost_agent.parse.postfix import Pipeline, parse_line
from sendpost_wire import validate_event

from tests.support.corpus import POSTFIX_LOGS

CORPUS = POSTFIX_LOGS
LOG_FILES = sorted(CORPUS.glob("*.log")) + sorted(CORPUS.glob("lightmeterio-ControlCenter/*.log"))
EXPECTED_FILES = sorted(CORPUS.glob("*.expected.jsonl"))
DELIVERY_STATUSES = {"sent", "bounced", "deferred", "softbounce", "deliverable", "undeliverable"}

# Deliberate disagreements with the corpus's expectations: (file, line index) -> (field, reason).
# Also listed in docs/parsing.md.
DISAGREEMENTS: dict[tuple[str, int], tuple[str, str]] = {
    ("lightmeterio-ControlCenter.parser_test.expected.jsonl", 1): (
        "to",
        "Lightmeter strips the quotes of a quoted local part (user 1234 with space@icloud.com);"
        ' we keep the address as Postfix logged it ("user 1234 with space"@icloud.com), the only'
        " form that is a valid address",
    ),
}


def _expectations() -> list[tuple[str, int, dict[str, Any]]]:
    rows = []
    for path in EXPECTED_FILES:
        for index, text in enumerate(path.read_text(encoding="utf-8").splitlines()):
            rows.append((path.name, index, json.loads(text)))
    return rows


def test_corpus_is_present() -> None:
    """The corpus folder is where the tests expect it (else every corpus test would be empty)."""
    assert (len(LOG_FILES) > 30, len(EXPECTED_FILES)) == (True, 3)


@pytest.mark.parametrize("path", LOG_FILES, ids=lambda p: p.name)
def test_every_corpus_line_parses_without_exception(path: Path) -> None:
    """Each line gives a record or a reason, never an exception; the Pipeline's buffer scan
    recognises exactly the lines parse_line recognises."""
    data = path.read_bytes()
    lines = data.splitlines()
    results = [parse_line(line) for line in lines]
    recognised = sum(1 for r in results if not isinstance(r, Unparsed))
    pipeline = Pipeline()
    for event in pipeline.feed(data if data.endswith(b"\n") else data + b"\n"):
        assert validate_event(event.to_wire(), 0) == event
    pipeline.flush()
    truncated = sum(1 for r in results if isinstance(r, Unparsed) and r.reason == "truncated")
    assert (pipeline.stats.lines, pipeline.stats.parsed, pipeline.stats.unparsed) == (
        len(lines),
        recognised,
        {"truncated": truncated} if truncated else {},
    )


def test_corpus_delivery_lines_are_recognised() -> None:
    """Every ``QID: to=<...>, ... status=`` line of the corpus is a Delivery (sanity: the corpus
    holds hundreds, in every envelope and daemon variant)."""
    count = 0
    for path in LOG_FILES:
        for line in path.read_bytes().splitlines():
            if b": to=" in line and b", status=" in line and b"NOQUEUE" not in line:
                rec = parse_line(line)
                assert isinstance(rec, Delivery), line
                count += 1
    assert count > 300


@pytest.mark.parametrize(
    ("name", "index", "expected"),
    _expectations(),
    ids=lambda v: v if isinstance(v, str | int) else "",
)
def test_fields_agree_with_expected_files(name: str, index: int, expected: dict[str, Any]) -> None:
    """Where the source projects asserted queue ID, status, recipient, dsn, relay or the status
    text, we agree (except the disagreements listed in DISAGREEMENTS, with their reasons)."""
    rec = parse_line(expected["line"].encode())
    status = expected.get("status")
    skip = DISAGREEMENTS.get((name, index), ("", ""))[0]
    if status == "expired":
        assert isinstance(rec, Expired)
        assert rec.queue_id == expected["queue_id"]
        return
    if status is None:
        if not isinstance(rec, Unparsed) and "queue_id" in expected:
            assert rec.queue_id == expected["queue_id"]
        return  # the source asserted no outcome for this line
    if status.lower() not in DELIVERY_STATUSES and not status.startswith("undeliverable"):
        assert not isinstance(rec, Delivery), f"the source calls it {status!r}"
        return
    assert isinstance(rec, Delivery)
    got: dict[str, Any] = {}
    want: dict[str, Any] = {}
    if "queue_id" in expected:
        want["queue_id"], got["queue_id"] = expected["queue_id"], rec.queue_id
    if status is not None:
        want["status"], got["status"] = status.lower(), rec.status
    # the sources' "to" is the logged to= address: ours is final_recipient when orig_to= was
    # logged (recipient is then the orig_to= address, the one the platform sent to)
    logged_to = rec.recipient if rec.final_recipient is None else rec.final_recipient
    if "to" in expected:
        want["to"], got["to"] = expected["to"], logged_to
    if "to_local" in expected:
        want["to"] = f"{expected['to_local']}@{expected['to_domain']}"
        got["to"] = logged_to
    if "dsn" in expected:
        want["dsn"], got["dsn"] = expected["dsn"], rec.dsn
    if "relay" in expected:
        name_only = rec.relay.split("[", 1)[0]
        want["relay"] = expected["relay"]
        got["relay"] = rec.relay if expected["relay"] == rec.relay else name_only
    if "relay_port" in expected:
        want["relay_port"] = expected["relay_port"]
        got["relay_port"] = rec.relay.rsplit("]:", 1)[1] if "]:" in rec.relay else "0"
    if "extra_message" in expected:
        want["text"], got["text"] = expected["extra_message"], f"({rec.text})"
    want.pop(skip, None)
    got.pop(skip, None)
    assert want == got
