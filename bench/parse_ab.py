"""Benchmark: ``sendpost-agent parse`` of this checkout against another build of the agent, in
alternating runs on the same log (before/after in one window of a noisy machine).

    .venv/bin/python bench/parse_ab.py LOG --base DIR [--rounds 10] [-- PARSE OPTIONS...]

``--base`` is the ``src`` folder of another agent package, built in place (for example main's:
``git archive main packages/agent | tar -x -C /tmp/base``, then ``python setup.py build_ext
--inplace`` in ``/tmp/base/packages/agent`` with Cython, and ``python -m compileall`` on its
``src``: the environment may forbid writing bytecode, which would charge it a compile per run).
It runs first through ``PYTHONPATH``, ahead of this checkout's editable install; each round runs
both, base first. Prints, for each, the median and best wall time, the median user and system
CPU of the command and its children, and the median page faults; then the ratio of the medians.
Output goes to /dev/null; both outputs are compared once before timing (``cmp``), so that a
faster build that prints something else is not taken for a faster build.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / ".venv" / "bin" / "sendpost-agent"


def _env(base: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if base is not None:
        env["PYTHONPATH"] = base
    return env


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """(wall, user, system, minor page faults) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (
        wall,
        after.ru_utime - before.ru_utime,
        after.ru_stime - before.ru_stime,
        after.ru_minflt - before.ru_minflt,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--base", required=True, help="the other agent's src folder")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("options", nargs="*", help="passed to parse (after --)")
    args = parser.parse_args()
    argv = [str(AGENT), "parse", *args.options, str(args.log)]
    builds = {"base": _env(args.base), "this": _env(None)}
    outputs = [
        subprocess.run(argv, capture_output=True, env=env, check=True).stdout
        for env in builds.values()
    ]
    if outputs[0] != outputs[1]:
        print("the two builds print different events: nothing to compare", file=sys.stderr)
        return 1
    runs: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in builds}
    for _ in range(args.rounds):
        for name, env in builds.items():
            runs[name].append(_run(argv, env))
    medians = {}
    for name, rows in runs.items():
        columns = zip(*rows, strict=True)
        wall, user, system, faults = (statistics.median(column) for column in columns)
        medians[name] = wall
        best = min(row[0] for row in rows)
        print(
            f"{name:5} wall median {wall:6.3f} s  best {best:6.3f} s  "
            f"user {user:6.3f} s  system {system:6.3f} s  page faults {faults:9,.0f}"
        )
    print(f"this / base, median wall: {medians['this'] / medians['base']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
