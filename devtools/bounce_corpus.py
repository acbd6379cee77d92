"""Score the bounce processor on Sisimai's public bounce emails (issue 14).

    .venv/bin/python -m devtools.bounce_corpus [--folder DIR] [--families] [--misses]

Runs the platform's bounce parser (``smtp/dsn.py``, ``parse_report``) and classifier
(``domain/classify.py``, with the same arguments the bounce server passes) over every email of
the folder (default ``tests/corpus/bounces/sisimai``, a copy of
``/work/shared/corpus/bounces/sisimai``) and compares each record of its
``truth.jsonl`` with what the platform would do:

- **found** (over bounce records: ``class`` hard or soft): a parsed recipient block names the
  record's recipient (or one of its ``recipient_alternatives``), Original- or Final-Recipient;
- **stored**: the bounce server would store an event for it: the block is terminal
  (``Action: failed``). Records that must not be stored (``class`` ``none``, delay warnings) count
  as right when nothing is stored for them;
- **hard/soft**: for stored bounce records, the classifier's verdict against ``class``;
  **policy**: against the verdict docs/classification.md asks for (``class``, except the policy
  rows of ``tests/platform/bounces/sisimai_exceptions.tsv``).

Prints the totals and, with ``--families``, the figures per family (``category``); ``--misses``
lists every record that is not found or whose hard/soft differs. :func:`score` is what
``tests/platform/bounces/test_sisimai_corpus.py`` uses.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
from pathlib import Path

from sendpost_platform.domain.bounces import attribute
from sendpost_platform.domain.classify import classify
from sendpost_platform.smtp.dsn import DsnRecipient, DsnReport, parse_report

FOLDER = Path("/work/shared/corpus/bounces/sisimai")
EXCEPTIONS = (
    Path(__file__).resolve().parent.parent / "tests/platform/bounces/sisimai_exceptions.tsv"
)


def load_policy(path: Path = EXCEPTIONS) -> dict[str, bool]:
    """Record → hard, for the exceptions table's policy rows (``check`` hard, ``expect``
    hard/soft): where docs/classification.md decides otherwise than Sisimai."""
    policy: dict[str, bool] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.strip() and not line.startswith("#"):
            key, check, expect, _ = line.split("\t")
            if check == "hard" and expect in ("hard", "soft"):
                policy[key] = expect == "hard"
    return policy


@dataclasses.dataclass(frozen=True)
class Scored:
    """One truth record and what the platform does with it."""

    record: dict[str, object]
    format: str
    found: bool
    stored: bool
    hard: bool | None
    """The verdict when stored, else None."""
    reason: str | None
    rule: str | None

    @property
    def key(self) -> str:
        return f"{self.record['file']}#{self.record['index']}"

    @property
    def must_store(self) -> bool:
        """A terminal bounce: an event is expected (delay warnings and non-bounces get none)."""
        return self.record["class"] in ("hard", "soft") and not self.record["delay_warning"]

    @property
    def expected_hard(self) -> bool:
        return self.record["class"] == "hard"

    @property
    def agrees(self) -> bool | None:
        """Hard/soft agrees with the truth; None when not in scope (not a stored bounce)."""
        if not self.must_store or not self.stored:
            return None
        return self.hard == self.expected_hard


def load_truth(folder: Path = FOLDER) -> list[dict[str, object]]:
    lines = (folder / "truth.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _match(report: DsnReport, names: set[str]) -> DsnRecipient | None:
    for block in report.recipients:
        for address in (block.original_recipient, block.final_recipient):
            if address and address.strip().lower() in names:
                return block
    return None


def score(folder: Path = FOLDER) -> list[Scored]:
    """Every truth record of ``folder``, scored."""
    reports: dict[str, DsnReport] = {}
    results: list[Scored] = []
    for record in load_truth(folder):
        name = str(record["file"])
        if name not in reports:
            reports[name] = parse_report((folder / name).read_bytes())
        report = reports[name]
        alternatives = record.get("recipient_alternatives") or []
        assert isinstance(alternatives, list)
        names = {str(a).lower() for a in [record["recipient"], *alternatives]}
        block = _match(report, names)
        found = block is not None
        if block is None:
            # A platform message has one recipient: when no block names it, the server's own
            # rule (domain/bounces.py, ``attribute``) gives it every terminal block; the first
            # is scored.
            inferred = attribute(report.recipients, "")
            block = inferred[0].recipient if inferred else None
        stored = block is not None and block.terminal
        verdict = None
        if block is not None and stored:
            verdict = classify(
                smtp_code=block.smtp_code,
                enhanced_status=block.status,
                smtp_command=block.smtp_command,
                text=block.diagnostic,
            )
        results.append(
            Scored(
                record=record,
                format=report.format,
                found=found,
                stored=stored,
                hard=None if verdict is None else verdict.hard,
                reason=None if verdict is None else verdict.reason,
                rule=None if verdict is None else verdict.rule,
            )
        )
    return results


@dataclasses.dataclass
class Figures:
    records: int = 0
    bounce_records: int = 0
    """Records of bounces (class hard or soft, delay warnings included): found is over these."""
    found: int = 0
    store_right: int = 0
    bounces: int = 0
    stored: int = 0
    in_scope: int = 0
    agree: int = 0
    policy_agree: int = 0
    """Agreement with the verdict the written policy asks for (truth unless a policy row)."""
    sender_side_hard: int = 0

    def add(self, item: Scored, policy: dict[str, bool] | None = None) -> None:
        self.records += 1
        if item.record["class"] in ("hard", "soft"):
            self.bounce_records += 1
            self.found += item.found
        self.store_right += item.stored == item.must_store
        if item.must_store:
            self.bounces += 1
            self.stored += item.stored
        if item.agrees is not None:
            self.in_scope += 1
            self.agree += item.agrees
            wanted = (policy or {}).get(item.key, item.expected_hard)
            self.policy_agree += item.hard == wanted

    @staticmethod
    def pct(part: int, whole: int) -> str:
        return f"{100 * part / whole:5.1f}%" if whole else "    -"

    def row(self, label: str) -> str:
        return (
            f"{label:28} {self.records:4} found {self.pct(self.found, self.bounce_records)}"
            f"  stored {self.pct(self.stored, self.bounces)} ({self.stored}/{self.bounces})"
            f"  store-right {self.pct(self.store_right, self.records)}"
            f"  hard/soft {self.pct(self.agree, self.in_scope)} ({self.agree}/{self.in_scope})"
            f"  policy {self.pct(self.policy_agree, self.in_scope)}"
        )


def figures(
    results: list[Scored], policy: dict[str, bool] | None = None
) -> tuple[Figures, dict[str, Figures]]:
    total = Figures()
    families: dict[str, Figures] = collections.defaultdict(Figures)
    for item in results:
        total.add(item, policy)
        families[str(item.record["category"])].add(item, policy)
    return total, dict(families)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=FOLDER)
    parser.add_argument("--families", action="store_true", help="figures per family")
    parser.add_argument("--misses", action="store_true", help="list records not found or wrong")
    args = parser.parse_args()
    results = score(args.folder)
    total, families = figures(results, load_policy())
    if args.families:
        ordered = sorted(
            families.items(), key=lambda kv: (kv[1].found - kv[1].bounce_records, kv[0])
        )
        for family, numbers in ordered:
            print(numbers.row(family))
        print()
    if args.misses:
        for item in results:
            if not item.found and item.must_store:
                print(f"NOT FOUND  {item.key} [{item.format}] {item.record['recipient']}")
            elif item.agrees is False:
                print(
                    f"HARD/SOFT  {item.key} truth {item.record['class']} "
                    f"({item.record['reason']} {item.record['status']}) ours "
                    f"{'hard' if item.hard else 'soft'} ({item.reason}, {item.rule})"
                )
        print()
    print(total.row("TOTAL"))


if __name__ == "__main__":
    main()
