"""Benchmark: where the test suite's time goes, one top-level test directory at a time.

    .venv/bin/python bench/suite_time.py [DIR ...] [--top N] [--pure]

Runs ``.venv/bin/pytest DIR --durations=N -q`` for each directory (default: every directory
``make test`` covers, ``tests/agent/packaging`` last; about 10 minutes on a quiet 2-core machine,
give a few directories for a shorter run) and prints, per directory, the load average before it,
pytest's own time, the wall time and the CPU time (user + system) of pytest and every process it
started; then the totals and the N slowest test phases of the whole run. ``--pure`` runs them as
``make pytest-pure`` does (``SENDPOST_AGENT_PURE_PYTHON=1``, agent directories only). The
directories run one after the other, never at once, so the figures add up to the suite's time.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTEST = ROOT / ".venv" / "bin" / "pytest"
DURATION = re.compile(r"^(\d+\.\d+)s (call|setup|teardown)\s+(.+)$")
SUMMARY = re.compile(r"in (\d+\.\d+)s")


def directories(pure: bool) -> list[str]:
    agent = ["tests/agent/daemon", "tests/agent/parse", "tests/agent/postfix"]
    if pure:
        return agent
    platform = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests" / "platform").iterdir()
        if p.is_dir() and p.name != "__pycache__"
    )
    return [*agent, "tests/e2e", "tests/wire", *platform, "tests/agent/packaging"]


def run(directory: str, top: int, env: dict[str, str]) -> tuple[float, float, float, str, list]:
    """(pytest's seconds, wall seconds, CPU seconds, last line, durations) of one directory."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    result = subprocess.run(
        [str(PYTEST), directory, f"--durations={top}", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = result.stdout.strip().splitlines()
    last = lines[-1] if lines else result.stderr.strip()[-200:]
    found = SUMMARY.search(last)
    durations = [
        (float(m.group(1)), m.group(2), m.group(3))
        for m in (DURATION.match(line) for line in lines)
        if m
    ]
    return float(found.group(1)) if found else wall, wall, cpu, last, durations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", help="test directories (default: all of make test's)")
    parser.add_argument("--top", type=int, default=40, help="slowest test phases to list")
    parser.add_argument("--pure", action="store_true", help="as make pytest-pure runs them")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.pure:
        env["SENDPOST_AGENT_PURE_PYTHON"] = "1"
    chosen = args.dirs or directories(args.pure)
    print(f"{'directory':32} {'load':>5} {'pytest s':>9} {'wall s':>8} {'CPU s':>8}  result")
    totals = [0.0, 0.0, 0.0]
    slowest: list[tuple[float, str, str]] = []
    for directory in chosen:
        load = os.getloadavg()[0]
        pytest_s, wall, cpu, last, durations = run(directory, args.top, env)
        totals = [totals[0] + pytest_s, totals[1] + wall, totals[2] + cpu]
        slowest.extend(durations)
        print(f"{directory:32} {load:5.2f} {pytest_s:9.1f} {wall:8.1f} {cpu:8.1f}  {last}")
        sys.stdout.flush()
    print(f"{'total':32} {'':5} {totals[0]:9.1f} {totals[1]:8.1f} {totals[2]:8.1f}")
    print(f"\nslowest {args.top} test phases:")
    for seconds, phase, test in sorted(slowest, reverse=True)[: args.top]:
        print(f"{seconds:8.2f}s {phase:8} {test}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
