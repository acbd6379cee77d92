"""Deferred-queue benchmark: ``sendpost-agent run`` holding 100,000 deferred queue IDs while a
steady 300 lines/s arrive; reports the agent's CPU share of one core, its RSS, the bytes it
writes per second and the time one save of the correlation state takes.

1. The log starts with ``--deferred`` messages that are deferred and never removed (the UUID
   header line and a ``status=deferred`` line each): a provider outage with that many messages
   in Postfix's deferred queue. The agent reads them (not measured) and holds each queue ID
   with its pending recipient.
2. Measured, ``--seconds`` long: ``--rate`` lines per second, half of them new messages (sent,
   bounced or deferred), half retries of held queue IDs
   (another ``status=deferred`` line for a random one of them, as Postfix logs its retries).
   CPU is the agent process's user+system time from /proc; RSS is ``VmRSS`` at the end and
   ``VmHWM`` (the peak, which includes reading the backlog); bytes written are the process's
   ``write_bytes`` (what reached the block layer) and ``wchar`` (every ``write`` call, the WAL,
   the state and HTTP requests) from ``/proc/PID/io``.
3. Save time, in this process: a pipeline fed the same backlog, then one second of the steady
   lines, then one save of the cursor with its state through the agent's own store (the
   current code's API, or the old ``CursorStore.save(Cursor(...))`` when run against an older
   checkout); ``--saves`` rounds, median and worst.
4. Entry size, in this process: ``tracemalloc``'s bytes per held queue ID once the backlog is
   fed (``--entries-only``: only this).

Targets: < 3% of a core, < 100 MB RSS, a save < 50 ms.

    .venv/bin/python bench/agent_deferred.py [--deferred 100000] [--rate 300] [--seconds 60]
                                             [--saves 20] [--saves-only | --entries-only]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.agent_catchup import AckServer, free_port, health
from tests.agent.daemon.loglines import message_uuid, queue_id

HOST = "mx postfix"


def stamp_at(moment: float) -> str:
    """A classic syslog timestamp (host time zone) of ``moment`` (seconds since the epoch)."""
    t = time.localtime(moment)
    return time.strftime(f"%b {t.tm_mday:2d} %H:%M:%S", t)


def deferred_lines(i: int, stamp: str, retry: bool = False) -> list[str]:
    """Message ``i`` deferred (its UUID header line and the deferral), or a retry of it."""
    qid, rcpt = queue_id(i), f"user{i}@example.net"
    deferral = (
        f"{stamp} {HOST}/smtp[3301]: {qid}: to=<{rcpt}>, relay=none, delay=30, "
        "delays=0.05/0.01/30/0, dsn=4.4.1, status=deferred (connect to "
        "mx.example.net[203.0.113.9]:25: Connection timed out)\n"
    )
    if retry:
        return [deferral]
    return [
        f"{stamp} {HOST}/cleanup[2212]: {qid}: info: header X-Sendpost-Message-UUID: "
        f"{message_uuid(i)} from app.sendpost.example[192.0.2.10]; from=<bounces@sp-bounce."
        f"example.com> to=<{rcpt}> proto=ESMTP helo=<app.sendpost.example>\n",
        deferral,
    ]


def new_message_lines(i: int, stamp: str) -> list[str]:
    """A new message: its UUID header line, then sent and removed (7 in 10), bounced and removed
    (2 in 10) or deferred (1 in 10, then held like the others)."""
    qid, rcpt = queue_id(i), f"user{i}@example.org"
    kind = i % 10
    if kind == 9:
        return deferred_lines(i, stamp)
    if kind < 7:
        result = "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4QpLx21Z0hz9rwP)"
    else:
        result = (
            f"dsn=5.1.1, status=bounced (host mx.example.org[198.51.100.7] said: 550 5.1.1 "
            f"<{rcpt}>: Recipient address rejected: User unknown (in reply to RCPT TO command))"
        )
    return [
        deferred_lines(i, stamp)[0],
        f"{stamp} {HOST}/smtp[3301]: {qid}: to=<{rcpt}>, relay=mx.example.org[198.51.100.7]:25, "
        f"delay=1.2, delays=0.05/0.01/0.6/0.54, {result}\n",
        f"{stamp} {HOST}/qmgr[1001]: {qid}: removed\n",
    ]


def steady_lines(deferred: int, rng: random.Random, message: int, stamp: str) -> list[str]:
    """One new message and as many retries of held queue IDs."""
    lines = new_message_lines(deferred + message, stamp)
    for _ in range(len(lines)):
        lines += deferred_lines(rng.randrange(deferred), stamp, retry=True)
    return lines


def backlog(deferred: int, start: float) -> str:
    """The deferred messages, logged over the hour before ``start``."""
    step = 3600 / deferred
    return "".join(
        line
        for i in range(deferred)
        for line in deferred_lines(i, stamp_at(start - 3600 + i * step))
    )


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def process_io(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, value = line.split(":")
        fields[name] = int(value)
    return fields


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_caught_up(port: int, size: int, proc: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    while True:
        time.sleep(0.2)
        log_state = health(port).get("log")
        if isinstance(log_state, dict) and log_state.get("offset") == size:
            return time.monotonic() - started
        if proc.poll() is not None:
            raise SystemExit("agent exited early")


def run_agent(args: argparse.Namespace, work: Path) -> str:
    log = work / "mail.log"
    log.write_text(backlog(args.deferred, time.time()))
    size = log.stat().st_size
    (work / "none.yaml").write_text("")
    server = AckServer()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_AGENT_")}
    cmd = [
        sys.executable, "-m", "sendpost_agent.cli", "run", "--api-key", "bench",
        "--endpoint", f"http://127.0.0.1:{server.port}/api/v1/tpsp/custom-smtp/events",
        "--log-path", str(log), "--state-dir", str(work / "state"),
        "--listen", f"127.0.0.1:{port}", "--config", str(work / "none.yaml"),
        "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    try:
        while not health(port):
            time.sleep(0.1)
        catch_up = wait_caught_up(port, size, proc)
        time.sleep(3)  # the save after the backlog
        rng = random.Random(7)
        cpu0, io0, t0 = cpu_seconds(proc.pid), process_io(proc.pid), time.monotonic()
        written, message = 0, 0
        with open(log, "a") as fh:
            while time.monotonic() - t0 < args.seconds:
                due = int((time.monotonic() - t0) * args.rate)
                while written < due:
                    lines = steady_lines(args.deferred, rng, message, stamp_at(time.time()))
                    fh.writelines(lines)
                    written += len(lines)
                    message += 1
                fh.flush()
                time.sleep(0.02)
        cpu1, io1, t1 = cpu_seconds(proc.pid), process_io(proc.pid), time.monotonic()
        rss, peak = memory_mb(proc.pid, "VmRSS"), memory_mb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    span = t1 - t0
    user, system = ((b - a) / span * 100 for a, b in zip(cpu0, cpu1, strict=True))
    disk = (io1["write_bytes"] - io0["write_bytes"]) / span
    calls = (io1["wchar"] - io0["wchar"]) / span
    return (
        f"agent: {args.deferred} deferred queue IDs read in {catch_up:.0f} s; then {written} "
        f"lines in {span:.0f} s ({written / span:.0f} lines/s), {server.events} events "
        f"acknowledged; CPU {user + system:.1f}% of a core (user {user:.1f}%, system "
        f"{system:.1f}%), RSS {rss:.0f} MB (peak {peak:.0f} MB), "
        f"written {disk / 1e3:,.0f} kB/s to disk ({calls / 1e3:,.0f} kB/s of write calls)"
    )


def measure_saves(args: argparse.Namespace, work: Path) -> str:
    """Median and worst time of one save after one second of steady lines (in this process)."""
    from sendpost_agent import checkpoint
    from sendpost_agent.checkpoint import FileId, Position
    from sendpost_agent.parse.postfix import Pipeline

    new_api = hasattr(checkpoint, "StateDb")
    pipeline = Pipeline(track_changes=True) if new_api else Pipeline()
    start = time.time()
    text = backlog(args.deferred, start).encode()
    pipeline.feed_jsonl(text)
    offset = len(text)
    state = work / "save-state"
    state.mkdir()
    file_id = FileId(1, 2, "0" * 64, 64)
    if new_api:
        store = checkpoint.StateDb(state / checkpoint.DB_NAME)
        store.load()

        def save(position: Position) -> None:
            store.save(position, pipeline)

    else:
        old = checkpoint.CursorStore(state / "cursor")

        def save(position: Position) -> None:
            old.save(checkpoint.Cursor(position, pipeline.snapshot()))

    save(Position(file_id, offset, "mail.log"))  # the first save holds everything: not timed
    rng = random.Random(11)
    times, message = [], 0
    for n in range(args.saves):
        second: list[str] = []
        while len(second) < args.rate:
            second += steady_lines(args.deferred, rng, message, stamp_at(start + n))
            message += 1
        chunk = "".join(second).encode()
        pipeline.feed_jsonl(chunk)
        offset += len(chunk)
        started = time.perf_counter()
        save(Position(file_id, offset, "mail.log"))
        times.append(time.perf_counter() - started)
    size = sum(p.stat().st_size for p in state.iterdir())
    return (
        f"save ({'changed rows only' if new_api else 'whole state rewritten'}): "
        f"median {statistics.median(times) * 1000:.1f} ms, worst {max(times) * 1000:.1f} ms "
        f"over {len(times)} saves of one second of lines each; state on disk {size / 1e6:.1f} MB"
    )


def measure_entries(args: argparse.Namespace) -> str:
    """Bytes of Python memory per held queue ID (``tracemalloc``, in this process): the backlog
    fed to a pipeline in 1 MB chunks, the whole state taken once as the first save does."""
    import gc
    import tracemalloc

    from sendpost_agent.parse.postfix import Pipeline

    text = backlog(args.deferred, time.time()).encode()
    pipeline = Pipeline(track_changes=True)
    tracemalloc.start()
    pos = 0
    while pos < len(text):
        end = text.rfind(b"\n", pos, pos + (1 << 20)) + 1 or len(text)
        pipeline.feed_jsonl(text[pos:end])
        pos = end
    pipeline.changes()
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (
        f"correlator entries: {current / args.deferred:,.0f} bytes of Python memory per held "
        f"queue ID ({current / 1e6:.1f} MB for {args.deferred}; "
        f"peak while reading {peak / 1e6:.1f} MB)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deferred", type=int, default=100_000, help="queue IDs held")
    parser.add_argument("--rate", type=int, default=300, help="lines per second")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--saves-only", action="store_true", help="skip the agent process")
    parser.add_argument("--entries-only", action="store_true", help="only the bytes per entry")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agent-deferred-"))
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    try:
        if args.entries_only:
            print(measure_entries(args))
            return 0
        if not args.saves_only:
            print(run_agent(args, work), flush=True)
        print(measure_saves(args, work))
        print(measure_entries(args))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"targets: < 3% of a core, < 100 MB RSS, a save < 50 ms; load average now {load:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
