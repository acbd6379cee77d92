"""Steady-state benchmark: 1,000 Postfix lines per second for 60 s into a log followed by
``sendpost-agent run``; reports the agent's CPU share of one core and its peak RSS.

CPU is the agent process's user+system time (from /proc) over the writing period; peak RSS is
``VmHWM``. The endpoint is the minimal acknowledging server of ``agent_catchup.py``.
Targets: < 3% of a core, < 60 MB RSS.

    .venv/bin/python bench/agent_steady.py [--rate 1000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.agent_catchup import AckServer, free_port, health
from bench.agent_catchup import agent_cpu_seconds as cpu_seconds
from tests.agent.daemon.loglines import message_lines


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1000, help="lines per second")
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agent-steady-"))
    log = work / "mail.log"
    log.touch()
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
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        written, message = 0, 0
        with open(log, "a") as fh:
            while time.monotonic() - t0 < args.seconds:
                due = int((time.monotonic() - t0) * args.rate)
                while written < due:
                    lines = message_lines(message)
                    fh.writelines(lines)
                    written += len(lines)
                    message += 1
                fh.flush()
                time.sleep(0.02)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    share = (cpu1 - cpu0) / (t1 - t0) * 100
    print(
        f"steady: {written} lines in {t1 - t0:.0f} s ({written / (t1 - t0):.0f} lines/s), "
        f"{server.events} events acknowledged; agent CPU {share:.1f}% of a core, "
        f"peak RSS {rss:.0f} MB; targets < 3%, < 60 MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
