"""Benchmark: how fast the journald source gives lines, against the file source and the parser.

    .venv/bin/python bench/journal_source.py [--messages 20000] [--repeat 3]

1. Not timed: ``--messages`` messages of the daemon tests' realistic lines (5 lines each: smtpd,
   cleanup with the UUID header, qmgr, smtp, removed) are written as journal entries (facility
   mail) into a real journal file by Debian's ``systemd-journal-remote``, plus one entry of
   another facility for every mail entry (what a busy host's journal also holds); the same
   lines, as the journald source gives them, go to a plain file.
2. Timed, ``--repeat`` rounds (best and median): ``JournalTail`` reading every line from the
   journal directory (``journalctl --output=json`` as a child process, JSON decoding, line
   building) until it has them all; ``FileTail`` reading the file; the Postfix parser
   (``feed_json``) over the lines, for scale. Prints lines/s for each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sendpost_agent.parse import adapter  # noqa: E402
from sendpost_agent.sources.file import FileTail  # noqa: E402
from sendpost_agent.sources.journal import JournalTail  # noqa: E402

from tests.agent.daemon.loglines import log_text  # noqa: E402
from tests.support.journal import Entry, append, micros, syslog_entries  # noqa: E402

START = micros(dt.datetime(2026, 2, 19, 8, 0, tzinfo=dt.UTC))


def build(directory: Path, messages: int) -> bytes:
    """Write the journal (in batches) and return the lines the source must give."""
    out: list[bytes] = []
    batch = 2000
    for first in range(0, messages, batch):
        lines = log_text(first, min(messages, first + batch)).encode().splitlines()
        entries = syslog_entries(lines, START + first * 5 * 1000)
        others = [
            Entry(e.micros, e.host, b"sshd", b"812", b"Accepted publickey for root", 4)
            for e in entries
        ]
        mixed = [x for pair in zip(entries, others, strict=True) for x in pair]
        append(directory / "system.journal", mixed)
        out += [e.line() for e in entries]
    return b"".join(out)


def time_journal(directory: Path, size: int) -> float:
    tail = JournalTail(None, directory, chunk_bytes=1 << 20)
    got = 0
    start = time.perf_counter()
    try:
        while got < size:
            data = tail.read()
            if data is None:
                time.sleep(0.001)
                continue
            got += len(data)
    finally:
        elapsed = time.perf_counter() - start
        tail.close()
    return elapsed


def time_file(path: Path, size: int) -> float:
    tail = FileTail(path, None, chunk_bytes=1 << 20)
    got = 0
    start = time.perf_counter()
    while got < size:
        data = tail.read()
        assert data is not None
        got += len(data)
    elapsed = time.perf_counter() - start
    tail.close()
    return elapsed


def time_parser(text: bytes) -> float:
    parser = adapter("postfix").parser()
    start = time.perf_counter()
    parser.feed_json(text)
    return time.perf_counter() - start


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--messages", type=int, default=20000)
    args.add_argument("--repeat", type=int, default=3)
    opts = args.parse_args()
    with tempfile.TemporaryDirectory(prefix="journal-bench-") as tmp:
        directory = Path(tmp) / "journal"
        directory.mkdir()
        text = build(directory, opts.messages)
        (Path(tmp) / "mail.log").write_bytes(text)
        lines = text.count(b"\n")
        print(f"{lines:,} mail entries (+ {lines:,} of another facility), {len(text):,} bytes")
        runs: dict[str, list[float]] = {"journal": [], "file": [], "parser": []}
        for _ in range(opts.repeat):
            runs["journal"].append(time_journal(directory, len(text)))
            runs["file"].append(time_file(Path(tmp) / "mail.log", len(text)))
            runs["parser"].append(time_parser(text))
        for name, label in (
            ("journal", "JournalTail (journalctl JSON → lines)"),
            ("file", "FileTail (plain file)"),
            ("parser", f"parser feed_json ({adapter('postfix').scanner})"),
        ):
            best, median = min(runs[name]), statistics.median(runs[name])
            print(
                f"{label:42s} best {best:6.2f} s  {lines / best:>10,.0f} lines/s   "
                f"median {median:6.2f} s  {lines / median:>10,.0f} lines/s"
            )


if __name__ == "__main__":
    main()
