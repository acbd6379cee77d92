"""Benchmark: CPU to read one big Postfix log, ``sendpost-agent parse`` against the two Postfix
log readers Debian packages (written in Go): ``prometheus-postfix-exporter`` and ``mtail`` with its
``postfix.mtail`` program.

    .venv/bin/python bench/peer_cpu.py [--lines 500000] [--messages 150] [--repeat 3]

The log is the one ``bench/parse_throughput.py`` builds (a private Postfix's ``maillog_file``,
replicated with fresh queue IDs and UUIDs). Each tool reads the whole log once per round, round
robin, and its CPU time (user + system, from the kernel's accounting of the process) is recorded:

- ``sendpost-agent parse LOG`` (events to /dev/null): the agent's whole parse path;
- ``mtail -one_shot -progs postfix.mtail -logs LOG``: reads the file to its end and exits;
- ``prometheus-postfix-exporter``: it only follows a log (it starts at the end), so it is started
  on an empty file, the log is appended to it, and its CPU time is read from ``/proc`` once it
  has stopped growing for two seconds (its idle cost over that wait is measured first and taken
  off).

Prints the best CPU seconds of each and each peer's ratio to ``parse``. Tools missing from the
machine are skipped with a line saying so (``make setup`` does not install them; ``apt-get install
prometheus-postfix-exporter mtail``).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from parse_throughput import AGENT, capture, replicate  # noqa: E402

EXPORTER = shutil.which("prometheus-postfix-exporter")
MTAIL = shutil.which("mtail")
MTAIL_PROGRAM = Path("/usr/share/doc/mtail/examples/postfix.mtail")
TICKS = os.sysconf("SC_CLK_TCK")


def child_cpu(argv: list[str]) -> float:
    """CPU seconds (user + system) of one run of ``argv``, its output discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exporter_cpu(log: Path, workdir: Path) -> float:
    """CPU seconds the exporter spends on ``log`` appended to the file it follows."""
    assert EXPORTER is not None
    followed = workdir / "followed.log"
    followed.write_bytes(b"")
    proc = subprocess.Popen(
        [
            EXPORTER,
            f"--postfix.logfile_path={followed}",
            f"--web.listen-address=127.0.0.1:{free_port()}",
            f"--postfix.showq_path={workdir / 'no-showq'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        idle_start, t0 = proc_cpu(proc.pid), time.monotonic()
        time.sleep(2.0)
        idle_rate = (proc_cpu(proc.pid) - idle_start) / (time.monotonic() - t0)
        start, started = proc_cpu(proc.pid), time.monotonic()
        with open(log, "rb") as src, open(followed, "ab") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        last, still_since = proc_cpu(proc.pid), time.monotonic()
        deadline = time.monotonic() + 600
        while time.monotonic() - still_since < 2.0 and time.monotonic() < deadline:
            time.sleep(0.2)
            now = proc_cpu(proc.pid)
            if now != last:
                last, still_since = now, time.monotonic()
        busy = still_since - started
        return max(0.0, last - start - idle_rate * busy)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--messages", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    text, source = capture(args.messages)
    workdir = Path(tempfile.mkdtemp(prefix="peer-cpu-"))
    try:
        log = workdir / "mail.log"
        lines = replicate(text, args.lines, log)
        print(f"log: {lines:,} lines, {log.stat().st_size / 1e6:.1f} MB, from {source}")
        tools: dict[str, object] = {
            "sendpost-agent parse": [str(AGENT), "parse", str(log)],
        }
        if MTAIL and MTAIL_PROGRAM.exists():
            tools["mtail postfix.mtail"] = [
                MTAIL, "-one_shot", "-one_shot_format", "prometheus",
                "-progs", str(MTAIL_PROGRAM), "-logs", str(log),
            ]  # fmt: skip
        else:
            print("mtail: not installed (apt-get install mtail); skipped")
        if EXPORTER:
            tools["prometheus-postfix-exporter"] = "exporter"
        else:
            print("prometheus-postfix-exporter: not installed; skipped")
        runs: dict[str, list[float]] = {name: [] for name in tools}
        for _ in range(args.repeat):
            for name, how in tools.items():
                if how == "exporter":
                    runs[name].append(exporter_cpu(log, workdir))
                else:
                    assert isinstance(how, list)
                    runs[name].append(child_cpu(how))
        ours = min(runs["sendpost-agent parse"])
        for name, seconds in runs.items():
            best = min(seconds)
            ratio = "" if name.startswith("sendpost") else f"  {best / ours:5.1f}x the CPU of parse"
            print(
                f"{name:28} best {best:7.2f} s CPU  {lines / best:>12,.0f} lines per CPU second"
                f"{ratio}"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
