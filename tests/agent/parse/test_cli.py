"""``sendpost-agent parse`` run as operators run it: the installed command, in a subprocess."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest
from sendpost_agent.parse import adapter, command
from sendpost_agent.parse.command import event_json
from sendpost_agent.parse.linematch import ENGINE
from sendpost_agent.parse.postfix import Pipeline

ROOT = Path(__file__).resolve().parents[3]
AGENT = ROOT / ".venv" / "bin" / "sendpost-agent"
GOLDEN = Path(__file__).parent / "golden"
MTIME = dt.datetime(2024, 1, 10, tzinfo=dt.UTC).timestamp()


def _run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TZ="UTC")
    if stdin is None:
        return subprocess.run(
            [str(AGENT), "parse", *args], capture_output=True, text=True, timeout=60, env=env
        )
    done = subprocess.run(
        [str(AGENT), "parse", *args], input=stdin, capture_output=True, timeout=60, env=env
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
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
        "hops_resolved 1",
        "hops_unresolved 0",
        "recipients_from_orig_to 0",
        "events.bounced 2",
        "events.deferred 3",
        "events.delivered 3",
        "events.soft_bounced 3",
        f"scanner {adapter('postfix').scanner}",
        f"matcher {ENGINE}",
    ]


def _stats(stderr: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stderr.splitlines())


def test_parse_reads_standard_input(tmp_path: Path) -> None:
    """`-` reads the log from standard input (a pipe, gzip or plain), between files too: the
    same events as the files themselves (first on the command line, a pipe has no modification
    time: classic timestamps take their year from now, so only the timestamps differ)."""
    old, new, expected = _split_log(tmp_path)
    piped = _run(str(old), "-", stdin=new.read_bytes())
    got = [json.loads(row) for row in piped.stdout.splitlines()]
    assert (0, "", expected) == (piped.returncode, piped.stderr, got)
    gz = _run("-", str(new), stdin=old.read_bytes())
    undated = [{k: v for k, v in e.items() if k != "timestamp"} for e in expected]
    got = [json.loads(row) for row in gz.stdout.splitlines()]
    assert (0, undated) == (
        gz.returncode,
        [{k: v for k, v in e.items() if k != "timestamp"} for e in got],
    )


SMARTHOST_LOG = (GOLDEN / "hops.log").read_bytes()


def test_internal_relay_flag_and_stats_name_hops_and_orig_to() -> None:
    """--stats names hops resolved, unresolved and recipients from orig_to; with
    --internal-relay naming only the filter port, the loopback smarthost's lines are
    deliveries from the start (no longer counted as unresolved hops)."""
    default = _run("--stats", "-", stdin=SMARTHOST_LOG)
    named = _run(
        "--stats", "--internal-relay", "127.0.0.1:10024,127.0.0.1:10026", "-", stdin=SMARTHOST_LOG
    )
    wanted = ("hops_resolved", "hops_unresolved", "recipients_from_orig_to")
    assert [("3", "3", "4"), ("3", "0", "4")] == [
        tuple(_stats(r.stderr)[k] for k in wanted) for r in (default, named)
    ]
    assert sorted(default.stdout.splitlines()) == sorted(named.stdout.splitlines())


def test_config_file_gives_the_daemons_internal_relays(tmp_path: Path) -> None:
    """--config FILE takes internal-relays from the daemon's YAML (other keys checked, not
    needed: no api-key required); --internal-relay wins over it; a bad entry or an unknown key
    exits 2 naming it."""
    good = tmp_path / "agent.yaml"
    good.write_text("api-key: k\ninternal-relays: ['127.0.0.1:10024', '127.0.0.1:10026']\n")
    from_file = _run("--stats", "--config", str(good), "-", stdin=SMARTHOST_LOG)
    overridden = _run(
        "--stats", "--config", str(good), "--internal-relay", "10.0.0.0/8", "-", stdin=SMARTHOST_LOG
    )
    # from the file: the smarthost (port 2525) is no candidate; the flag's network matches
    # no relay of the log: no candidates at all
    assert (0, "3", "0") == (
        from_file.returncode,
        _stats(from_file.stderr)["hops_resolved"],
        _stats(from_file.stderr)["hops_unresolved"],
    )
    assert (0, "0", "0") == (
        overridden.returncode,
        _stats(overridden.stderr)["hops_resolved"],
        _stats(overridden.stderr)["hops_unresolved"],
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("internal-relays: ['127.0.0.1:99999']\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("relays: x\n")
    for path, named in ((bad, "internal-relays"), (unknown, "relays")):
        result = _run("--config", str(path), "-", stdin=SMARTHOST_LOG)
        assert (2, "", 1) == (result.returncode, result.stdout, len(result.stderr.splitlines()))
        assert named in result.stderr
    flag = _run("--internal-relay", "a b", "-", stdin=b"")
    assert (2, True) == (flag.returncode, "--internal-relay" in flag.stderr)


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
