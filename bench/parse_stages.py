"""Benchmark: the CPU of each stage of ``parse`` with two processes, in one process.

    .venv/bin/python bench/parse_stages.py LOG [--buffer 262144] [--rounds 3]
    valgrind --tool=callgrind .venv/bin/python bench/parse_stages.py LOG --upto STAGE

Cuts LOG into whole-line buffers (``--buffer`` bytes, as ``parse`` reads them with two
processes), pauses the cyclic GC (as the pipeline does per buffer) and times with
``time.process_time``, best of ``--rounds``: ``scan`` (the line-local half), ``pack`` and
``unpack`` (the transport between the processes: marshal), ``apply`` + render after unpacking
(the parent's half), pickle for comparison, and one process's ``feed_jsonl``. Prints which code
ran (``compiled`` or ``python``: ``SENDPOST_AGENT_PURE_PYTHON=1``).

``--upto scan|pack|unpack|apply`` runs each buffer once through the stages up to that one (apply
includes rendering and writing the JSON lines to /dev/null), untimed, for counting instructions
under callgrind: the difference between two stages' counts is the later stage's cost, free of
the machine's load (docs/benchmarks.md, "8×").
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import pickle
import time
from pathlib import Path

from sendpost_agent.parse import CODE
from sendpost_agent.parse.postfix.pipeline import Pipeline, pack, unpack
from sendpost_agent.parse.postfix.scan import scan

STAGES = ("scan", "pack", "unpack", "apply")


def run_once(buffers: list[bytes], reference: dt.datetime, last: int) -> None:
    """Each buffer once through stages 0..``last`` of :data:`STAGES`, as the two processes of
    ``parse`` run them, one buffer after the other."""
    pipeline = Pipeline(reference_time=reference)
    gc.disable()
    with open("/dev/null", "wb") as out:
        for buffer in buffers:
            scanned = scan(buffer)
            if last < 1:
                continue
            packed = pack(scanned)
            if last < 2:
                continue
            unpacked = unpack(packed)
            if last < 3:
                continue
            events = pipeline.render(pipeline.apply(unpacked))
            out.write("".join(e + "\n" for e in events).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--buffer", type=int, default=256 * 1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--upto", choices=STAGES, help="run the stages once, untimed (callgrind)")
    args = parser.parse_args()
    data = args.log.read_bytes()
    buffers, start = [], 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + args.buffer) + 1 or len(data)
        buffers.append(data[start:end])
        start = end
    reference = dt.datetime.fromtimestamp(args.log.stat().st_mtime, dt.UTC)
    if args.upto:
        run_once(buffers, reference, STAGES.index(args.upto))
        return
    best: dict[str, float] = {}

    def took(name: str, since: float) -> None:
        best[name] = min(best.get(name, float("inf")), time.process_time() - since)

    gc.disable()
    packed_size = 0
    for _ in range(args.rounds):
        t = time.process_time()
        scanned = [scan(b) for b in buffers]
        took("scan", t)
        t = time.process_time()
        packed = [pack(s) for s in scanned]
        took("pack (marshal)", t)
        packed_size = sum(map(len, packed))
        del scanned
        t = time.process_time()
        unpacked = [unpack(p) for p in packed]
        took("unpack (marshal)", t)
        pipeline = Pipeline(reference_time=reference)
        t = time.process_time()
        for s in unpacked:
            pipeline.render(pipeline.apply(s))
        took("apply + render (unpacked)", t)
        del unpacked, packed
        scanned = [scan(b) for b in buffers]
        t = time.process_time()
        pickled = [pickle.dumps(s, pickle.HIGHEST_PROTOCOL) for s in scanned]
        took("pickle dumps (comparison)", t)
        t = time.process_time()
        for p in pickled:
            pickle.loads(p)  # noqa: S301 - our own bytes
        took("pickle loads (comparison)", t)
        del pickled, scanned
        pipeline = Pipeline(reference_time=reference)
        t = time.process_time()
        for b in buffers:
            pipeline.feed_jsonl(b)
        took("feed_jsonl (one process)", t)
    print(f"code {CODE}, {len(buffers)} buffers of {args.buffer} bytes, packed {packed_size:,} B")
    for name, seconds in best.items():
        print(f"{name:28} {seconds:7.3f} s")


if __name__ == "__main__":
    main()
