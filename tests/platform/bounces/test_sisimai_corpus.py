"""The bounce processor over every email of Sisimai's public bounce set (issue 14).

``tests/corpus/bounces/sisimai`` is a copy of ``/work/shared/corpus/bounces/sisimai`` (316 emails,
337 per-recipient records in ``truth.jsonl``). Each record is scored as the bounce server would
handle it (``devtools/bounce_corpus.py``: the parser, the attribution fallback and the classifier
with the server's arguments), and checked against ``truth.jsonl``, except where
``sisimai_exceptions.tsv`` says otherwise: a *policy* row (docs/classification.md decides
differently from Sisimai) or an *open* row (a known miss). The table is exact: a record that
starts passing while listed as open fails, so the table shrinks as readers improve.

The totals must meet the issue's targets: recipient found in ≥ 97% of the bounce records,
hard/soft as expected (truth, or the policy's verdict) in ≥ 95% of the stored bounces, and no
record whose reason is about the sender, the sending host, content, policy or rates ever hard.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from devtools.bounce_corpus import Scored, figures, score
from tests.support.corpus import BOUNCES

FOLDER = BOUNCES / "sisimai"
EXCEPTIONS = Path(__file__).with_name("sisimai_exceptions.tsv")

FOUND_TARGET = 0.97
AGREEMENT_TARGET = 0.95

# Sisimai reasons that are never about the recipient's address or domain.
SENDER_OR_HOST_REASONS = frozenset(
    {
        "authfailure",
        "badreputation",
        "blocked",
        "contenterror",
        "exceedlimit",
        "expired",
        "failedstarttls",
        "mailererror",
        "mesgtoobig",
        "networkerror",
        "norelaying",
        "notcompliantrfc",
        "policyviolation",
        "ratelimited",
        "rejected",
        "requireptr",
        "securityerror",
        "spamdetected",
        "speeding",
        "syntaxerror",
        "systemerror",
        "systemfull",
        "toomanyconn",
        "virusdetected",
    }
)


@functools.cache
def _scored() -> dict[str, Scored]:
    return {item.key: item for item in score(FOLDER)}


@functools.cache
def _exceptions() -> dict[tuple[str, str], tuple[str, str]]:
    table: dict[tuple[str, str], tuple[str, str]] = {}
    for line in EXCEPTIONS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, check, expect, why = line.split("\t")
        assert (key, check) not in table, f"duplicate row {key} {check}"
        table[(key, check)] = (expect, why)
    return table


def _policy_hard(item: Scored) -> bool:
    """The verdict we aim for: the policy's where a policy row says so, else truth's."""
    expect, _ = _exceptions().get((item.key, "hard"), ("", ""))
    return expect == "hard" if expect in ("hard", "soft") else item.expected_hard


def _expected_hard(item: Scored) -> bool:
    """What the record's hard/soft must be: truth, the policy's verdict, or (open) the miss."""
    expect, _ = _exceptions().get((item.key, "hard"), ("", ""))
    if expect == "open":
        return not item.expected_hard
    if expect in ("hard", "soft"):
        return expect == "hard"
    return item.expected_hard


def _keys() -> list[str]:
    return list(_scored())


@pytest.mark.parametrize("key", _keys())
def test_each_record_is_read_stored_and_classified_as_expected(key: str) -> None:
    """Per record: recipient found (bounces), stored or not (delay warnings and non-bounces
    never), hard/soft as truth.jsonl says unless the exceptions table decides otherwise."""
    item = _scored()[key]
    exceptions = _exceptions()
    if item.record["class"] in ("hard", "soft"):
        found = exceptions.get((key, "found"), ("yes", ""))[0] == "yes"
        assert found == item.found, exceptions.get((key, "found"))
    stored = exceptions.get((key, "stored"), ("yes" if item.must_store else "no", ""))[0]
    assert (stored == "yes") == item.stored, exceptions.get((key, "stored"))
    if item.must_store and item.stored:
        expected = "hard" if _expected_hard(item) else "soft"
        actual = "hard" if item.hard else "soft"
        assert expected == actual, (item.reason, item.rule, exceptions.get((key, "hard")))


def test_every_exception_names_a_record_of_the_folder() -> None:
    """The exceptions table lists only records of truth.jsonl, with known checks and values."""
    allowed = {"found": {"no"}, "stored": {"yes", "no"}, "hard": {"hard", "soft", "open"}}
    for (key, check), (expect, why) in _exceptions().items():
        assert key in _scored(), key
        assert expect in allowed[check], (key, check, expect)
        assert why.startswith(("policy:", "open:")), (key, why)


def test_the_folder_meets_the_issue_targets() -> None:
    """Recipient found in ≥ 97% of bounce records; hard/soft as expected (truth or policy) in
    ≥ 95% of stored bounces (open misses count against it); no sender/host-side record hard."""
    items = list(_scored().values())
    total, _ = figures(items)
    in_scope = [i for i in items if i.agrees is not None]
    agree = sum(1 for i in in_scope if i.hard == _policy_hard(i))
    sender_side_hard = [
        i.key for i in in_scope if i.hard and i.record["reason"] in SENDER_OR_HOST_REASONS
    ]
    assert [] == sender_side_hard
    assert total.found / total.bounce_records >= FOUND_TARGET, total.row("found")
    assert agree / len(in_scope) >= AGREEMENT_TARGET, (agree, len(in_scope))
