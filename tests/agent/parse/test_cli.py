"""``sendpost-agent parse`` run as operators run it: the installed command, in a subprocess."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest
from sendpost_agent.parse import Pipeline, command, scan
from sendpost_agent.parse.command import event_json

ROOT = Path(__file__).resolve().parents[3]
AGENT = ROOT / ".venv" / "bin" / "sendpost-agent"
GOLDEN = Path(__file__).parent / "golden"
MTIME = dt.datetime(2024, 1, 10, tzinfo=dt.UTC).timestamp()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TZ="UTC")
    return subprocess.run(
        [str(AGENT), "parse", *args], capture_output=True, text=True, timeout=60, env=env
    )


def _split_log(tmp_path: Path) -> tuple[Path, Path, list[dict[str, object]]]:
    """lifecycle.log cut in two: the older half gzip-compressed (as logrotate leaves it)."""
    lines = (GOLDEN / "lifecycle.log").read_bytes().splitlines(keepends=True)
    old, new = tmp_path / "mail.log.1.gz", tmp_path / "mail.log"
    old.write_bytes(gzip.compress(b"".join(lines[:20])))
    new.write_bytes(b"".join(lines[20:]).rstrip(b"\n"))  # no final newline
    for path in (old, new):
        os.utime(path, (MTIME, MTIME))
    golden = (GOLDEN / "lifecycle.golden.jsonl").read_text().splitlines()
    expected = [json.loads(row) for row in golden]
    return old, new, expected


def test_parse_reads_gzip_and_plain_files_in_order(tmp_path: Path) -> None:
    """A gzip file then a plain one (told apart by magic bytes, not names) give the same events
    as the whole log, one JSON object per line with queue_id."""
    old, new, expected = _split_log(tmp_path)
    result = _run(str(old), str(new))
    got = [json.loads(row) for row in result.stdout.splitlines()]
    assert (result.returncode, result.stderr, got) == (0, "", expected)


def test_parse_stats_on_stderr(tmp_path: Path) -> None:
    """--stats prints the counters on stderr, events stay alone on stdout."""
    old, new, expected = _split_log(tmp_path)
    result = _run("--stats", "--mta", "postfix", str(old), str(new))
    assert (result.returncode, len(result.stdout.splitlines())) == (0, len(expected))
    assert result.stderr.splitlines() == [
        "lines 47",
        "parsed 29",
        "ignored 18",
        "invalid_utf8 0",
        "uncorrelated 2",
        "events.bounced 2",
        "events.deferred 3",
        "events.delivered 3",
        "events.soft_bounced 3",
        f"scanner {'compiled' if scan.NATIVE is not None else 'python'}",
    ]


def test_unreadable_file_exits_2_naming_it(tmp_path: Path) -> None:
    """A missing file: one line on stderr naming it, exit status 2, no events printed."""
    missing = tmp_path / "nope.log"
    result = _run(str(GOLDEN / "lifecycle.log"), str(missing))
    assert (result.returncode, result.stdout, len(result.stderr.splitlines())) == (2, "", 1)
    assert str(missing) in result.stderr


def test_corrupt_gzip_exits_2(tmp_path: Path) -> None:
    """A file with gzip magic bytes but a broken body is unreadable: exit 2, named."""
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    result = _run(str(broken))
    assert (result.returncode, str(broken) in result.stderr) == (2, True)


def test_event_json_matches_to_wire() -> None:
    """The fast JSON writer produces exactly the wire object of each event."""
    pipeline = Pipeline(reference_time=dt.datetime(2024, 1, 10, tzinfo=dt.UTC), tz=dt.UTC)
    events = pipeline.feed((GOLDEN / "lifecycle.log").read_bytes())
    assert [json.loads(event_json(e)) for e in events] == [e.to_wire() for e in events]


def test_feed_json_is_the_events_json_text() -> None:
    """Pipeline.feed_json (what parse prints and the WAL stores) gives, byte for byte, the
    JSON text of the events Pipeline.feed gives for the same lines."""
    data = (GOLDEN / "lifecycle.log").read_bytes() + (GOLDEN / "lines.log").read_bytes()
    reference = dt.datetime(2024, 1, 10, tzinfo=dt.UTC)
    events = Pipeline(reference_time=reference, tz=dt.UTC).feed(data)
    rendered = Pipeline(reference_time=reference, tz=dt.UTC).feed_json(data)
    assert [event_json(e).rstrip("\n") for e in events] == rendered


def test_chunk_reader_with_a_small_buffer_gives_the_whole_file_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """parse reads through one reused buffer: with a buffer smaller than most lines (so it
    grows, and lines straddle reads) plain and gzip files give exactly the events of feeding
    the whole file at once."""
    data = (GOLDEN / "lifecycle.log").read_bytes() + (GOLDEN / "lines.log").read_bytes()
    plain, packed = tmp_path / "mail.log", tmp_path / "mail.log.gz"
    plain.write_bytes(data.rstrip(b"\n"))
    packed.write_bytes(gzip.compress(data))
    reference = dt.datetime(2024, 1, 10, tzinfo=dt.UTC)
    expected = Pipeline(reference_time=reference, tz=dt.UTC).feed_jsonl(data)
    assert expected.count(b"\n") > 10
    monkeypatch.setattr(command, "CHUNK", 48)
    for path in (plain, packed):
        pipeline = Pipeline(reference_time=reference, tz=dt.UTC)
        with path.open("rb") as handle:
            got = b"".join(
                pipeline.feed_jsonl(chunk) for chunk in command._ChunkReader("x", handle)
            )
        assert expected == got
