"""``parse`` with two processes (sendpost_agent.parse.split): the same bytes as one process, and
failures of the second process are errors, never lost events."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sendpost_agent.parse import command, split
from sendpost_agent.parse.postfix import Pipeline, scan_packed
from sendpost_agent.parse.postfix.pipeline import pack, unpack
from sendpost_agent.parse.postfix.scan import scan

ROOT = Path(__file__).resolve().parents[3]
AGENT = ROOT / ".venv" / "bin" / "sendpost-agent"
GOLDEN = Path(__file__).parent / "golden"
CORPUS = Path("/work/shared/corpus/postfix-logs")
REFERENCE = dt.datetime(2024, 1, 10, tzinfo=dt.UTC)


def _real_logs() -> bytes:
    """Logs of real Postfix runs: the golden fixtures (captured from Postfix 3.7), the trace of
    the real-Postfix tests and, when present, the shared corpus of published Postfix logs."""
    paths = [*sorted(GOLDEN.glob("*.log")), ROOT / "tests/agent/postfix/data/trace.log"]
    if CORPUS.is_dir():
        paths += sorted(CORPUS.glob("*.log"))
    data = b""
    for path in paths:
        data += path.read_bytes().rstrip(b"\n") + b"\n"
    return data


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    """Whole lines, about ``size`` bytes at a time (as the chunk reader gives them)."""
    start = 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + size) + 1 or data.find(b"\n", start) + 1
        yield data[start:end]
        start = end


def _single(data: bytes) -> tuple[bytes, dict[str, object]]:
    pipeline = Pipeline(reference_time=REFERENCE, tz=dt.UTC)
    out = pipeline.feed_jsonl(data) + "".join(t + "\n" for t in pipeline.flush_json()).encode()
    return out, pipeline.stats.to_json()


def _two(data: bytes, size: int, share: float = 0.4) -> tuple[bytes, dict[str, object]]:
    pipeline = Pipeline(reference_time=REFERENCE, tz=dt.UTC)
    written: list[bytes] = []
    split.feed_split(
        lambda: _chunks(data, size),
        scan_packed,
        pipeline.feed_packed_jsonl,
        pipeline.feed_jsonl,
        written.append,
        share=share,
    )
    written.append("".join(t + "\n" for t in pipeline.flush_json()).encode())
    return b"".join(written), pipeline.stats.to_json()


def test_two_processes_give_the_single_process_bytes_on_real_logs() -> None:
    """Real Postfix logs in small buffers (hundreds of them, so that queue IDs, UUIDs and hops
    straddle buffers, and buffers go both ways: packed by the child, raw to this process):
    the events, byte for byte, and the counters are those of one process fed the whole log."""
    data = _real_logs()
    expected = _single(data)
    assert expected[0].count(b"\n") > 20
    for size, share in ((2048, 0.4), (300, 0.0), (4096, 1.0)):
        assert _two(data, size, share) == expected, (size, share)


def test_pack_round_trip_is_the_scan() -> None:
    """What travels between the processes unpacks to the operations scan gave, record
    operations (expiry, re-injection, invalid UTF-8 lines) included."""
    data = _real_logs() + b"Jan 10 00:00:01 h postfix/smtp[1]: ABC123: to=<a\xff@x.test>, " \
        b"relay=x[1.2.3.4]:25, dsn=2.0.0, status=sent (250 ok)\n"  # fmt: skip
    kinds = {op[0] for op in scan(data).ops}
    assert len(kinds) == 6  # every kind of operation is in this input
    got = unpack(pack(scan(data)))
    want = scan(data)
    assert got[1:] == want[1:]
    assert [tuple(op) for op in got.ops] == [tuple(op) for op in want.ops]


def test_cli_two_processes_equal_one_on_a_real_log(tmp_path: Path) -> None:
    """The installed command, ``--processes 2`` against ``--processes 1`` on real logs made
    larger than one buffer (copies of them): same stdout, same counters."""
    data = _real_logs()
    log = tmp_path / "mail.log"
    log.write_bytes(data * (4 * command.SPLIT_CHUNK // len(data) + 4))  # several buffers
    env = dict(os.environ, TZ="UTC")
    runs = [
        subprocess.run(
            [str(AGENT), "parse", "--stats", "--processes", n, str(log)],
            capture_output=True,
            timeout=120,
            env=env,
            check=True,
        )
        for n in ("1", "2")
    ]
    assert runs[0].stdout.count(b"\n") > 50
    assert (runs[0].stdout, runs[0].stderr) == (runs[1].stdout, runs[1].stderr)


def test_cli_unreadable_input_in_the_child_exits_2_naming_it(tmp_path: Path) -> None:
    """A broken gzip file read by the second process: the same error as with one process
    (one line naming the file, exit 2), after the events of the files before it."""
    good = tmp_path / "mail.log.2"
    good.write_bytes(_real_logs())
    broken = tmp_path / "mail.log.1.gz"
    broken.write_bytes(gzip.compress(os.urandom(100_000))[:50_000])  # cut: no end of stream
    env = dict(os.environ, TZ="UTC")
    runs = [
        subprocess.run(
            [str(AGENT), "parse", "--processes", n, str(good), str(broken)],
            capture_output=True,
            timeout=60,
            env=env,
        )
        for n in ("1", "2")
    ]
    assert runs[0].returncode == runs[1].returncode == 2
    assert runs[0].stderr == runs[1].stderr
    assert str(broken).encode() in runs[1].stderr
    assert runs[0].stdout == runs[1].stdout
    assert runs[1].stdout.count(b"\n") > 20


def test_an_exception_in_the_child_is_raised_with_its_traceback() -> None:
    """A failure in the second process is not a short output: ``ChildError`` carries the
    child's exception and traceback; the events before it were written, none after."""
    data = _real_logs()

    def chunks() -> Iterator[bytes]:
        for n, chunk in enumerate(_chunks(data, 1024)):
            if n == 5:
                raise ValueError("broken input source")
            yield chunk

    pipeline = Pipeline(reference_time=REFERENCE, tz=dt.UTC)
    written: list[bytes] = []
    with pytest.raises(split.ChildError) as caught:
        split.feed_split(
            chunks, scan_packed, pipeline.feed_packed_jsonl, pipeline.feed_jsonl, written.append
        )
    assert not caught.value.expected
    assert "ValueError: broken input source" in str(caught.value)
    assert "Traceback" in str(caught.value)
    assert len(written) == 5
    _no_children()


def test_a_killed_child_is_an_error_not_a_short_output() -> None:
    """The second process dies mid-way (SIGKILL, as the OOM killer does): ``ChildError``
    naming the signal, never a normal end with events missing."""
    data = _real_logs()

    def chunks() -> Iterator[bytes]:
        for n, chunk in enumerate(_chunks(data, 1024)):
            if n == 3:
                os.kill(os.getpid(), signal.SIGKILL)  # runs in the child
            yield chunk

    pipeline = Pipeline(reference_time=REFERENCE, tz=dt.UTC)
    with pytest.raises(split.ChildError, match="killed by signal 9"):
        split.feed_split(
            chunks, scan_packed, pipeline.feed_packed_jsonl, pipeline.feed_jsonl, lambda b: None
        )
    _no_children()


def test_when_the_parent_stops_the_child_is_killed_and_reaped() -> None:
    """An error on this side (here: the output's reader went away) ends the child too: no
    process left behind."""
    data = _real_logs() * 20
    pipeline = Pipeline(reference_time=REFERENCE, tz=dt.UTC)

    def write(events: bytes) -> None:
        raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        split.feed_split(
            lambda: _chunks(data, 1024), scan_packed, pipeline.feed_packed_jsonl,
            pipeline.feed_jsonl, write,
        )  # fmt: skip
    _no_children()


def _no_children() -> None:
    """No forked copy of this process is left, running or unreaped (a zombie keeps its name).
    Only copies count: other children of the test process, such as the packaging tests' builds
    running in the background, are not the parser's (and must not be reaped here)."""
    assert [pid for pid in _children() if _name(pid) == _name("self")] == []


def _children() -> list[str]:
    found: list[str] = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            found += (task / "children").read_text().split()
    return found


def _name(pid: str) -> str | None:
    """The process's name (``comm``) as ``/proc/PID/stat`` gives it; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.partition("(")[2].rpartition(")")[0]
