"""Benchmark: DSN parsing and classification time against input size, real and adversarial.

    .venv/bin/python bench/bounce_parse.py [--max-size MB] [--budget SECONDS] [--only TEXT]
                                           [--platform-src DIR]

For each shape, times ``parse_report`` (a whole bounce message) or ``classify`` (one reply text)
at 1 KB, 4 KB, ... ×4 up to ``--max-size`` (10 MB, the bounce server's message limit), and
prints milliseconds per call, the time per KB and its ratio to the time per KB at 64 KB (flat for
linear code, ×4 per step for quadratic code). Each figure is the best of three rounds on this
thread's CPU clock, a round repeating the call until it takes 20 ms
(``tests/support/scaling.py``); a shape stops growing when the next size's call would take more
than ``--budget`` seconds, extrapolated from the growth so far (the old code would otherwise run
for hours).

Shapes: a real Postfix bounce (``sisimai-lhost-postfix-03.eml`` from the corpus) whose returned
message is padded with a base64 attachment, and a real reply padded with words, as the realistic
cases; then the adversarial shapes of ``tests/support/adversarial.py`` (those of the growth
tests).

``--platform-src DIR`` imports ``sendpost_platform`` from DIR instead (e.g. an older commit's
``packages/platform/src``, from ``git archive``) to measure the code before a change.
"""

from __future__ import annotations

import argparse
import base64
import functools
import math
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KB = 1024
MB = 1024 * KB
POSTFIX_BOUNCE = ROOT / "tests" / "corpus" / "bounces" / "dsn" / "sisimai-lhost-postfix-03.eml"
REAL_REPLY = (
    "host mx.example.com[192.0.2.7] said: 550-5.1.1 The email account that you tried to reach "
    "does not exist. Please try double-checking the recipient's email address for typos or "
    "unnecessary spaces. (in reply to RCPT TO command)"
)


def _padded_bounce(size: int) -> bytes:
    """The real Postfix bounce with a base64 attachment making it about ``size`` bytes."""
    raw = POSTFIX_BOUNCE.read_bytes()
    boundary = raw.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    payload = base64.encodebytes(random.Random(size).randbytes(max(0, size - len(raw)) * 3 // 4))
    return (
        raw + b"\n--" + boundary + b"\nContent-Type: application/octet-stream\n"
        b"Content-Transfer-Encoding: base64\n\n" + payload + b"\n--" + boundary + b"--\n"
    )


def shapes() -> list[tuple[str, str, Callable[[int], Any], Callable[[Any], object]]]:
    """(part, shape, make input of a size, function) for every measured shape."""
    from sendpost_platform.domain.classify import classify
    from sendpost_platform.smtp.dsn import parse_report

    from tests.support.adversarial import DSN_SHAPES, REPLY_SHAPES

    def classify_text(text: str) -> object:
        return classify(smtp_code=None, enhanced_status=None, smtp_command=None, text=text)

    def padded_reply(size: int) -> str:
        return REAL_REPLY + (" padding" * (size // 8))[: max(0, size - len(REAL_REPLY))]

    found: list[tuple[str, str, Callable[[int], Any], Callable[[Any], object]]] = [
        ("parse_report", "real Postfix bounce + base64 attachment", _padded_bounce, parse_report)
    ]
    found += [("parse_report", name, make, parse_report) for name, make in DSN_SHAPES.items()]
    found.append(("classify", "real reply + words", padded_reply, classify_text))
    found += [("classify", name, make, classify_text) for name, make in REPLY_SHAPES.items()]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-size", type=float, default=10, help="largest input, MB")
    parser.add_argument("--budget", type=float, default=5.0, help="stop a shape past this, s")
    parser.add_argument("--only", default="", help="only shapes whose name contains this")
    parser.add_argument("--platform-src", type=Path, help="import sendpost_platform from here")
    args = parser.parse_args()
    if args.platform_src is not None:
        sys.path.insert(0, str(args.platform_src.resolve()))
    import sendpost_platform

    from tests.support.scaling import best_time

    print(f"sendpost_platform from {Path(sendpost_platform.__file__).parent}")
    sizes = [KB * 4**i for i in range(20) if KB * 4**i < args.max_size * MB]
    sizes.append(int(args.max_size * MB))
    for part, name, make, function in shapes():
        if args.only not in name:
            continue
        print(f"\n{part}: {name}")
        print(f"{'size':>8} {'ms/call':>10} {'µs/KB':>9} {'vs 64 KB':>9}")
        per_kb_at_64 = None
        previous: tuple[int, float] | None = None
        for size, following in zip(sizes, [*sizes[1:], None], strict=True):
            seconds = best_time(functools.partial(function, make(size)), runs=3)
            per_kb = seconds / (size / KB) * 1e6
            if size == 64 * KB:
                per_kb_at_64 = per_kb
            ratio = f"x{per_kb / per_kb_at_64:.2f}" if per_kb_at_64 else ""
            label = f"{size // MB} MB" if size >= MB else f"{size // KB} KB"
            print(f"{label:>8} {seconds * 1000:>10.3f} {per_kb:>9.2f} {ratio:>9}", flush=True)
            if following is None:
                break
            # The next call's time, extrapolated with the growth exponent seen so far (2 at first).
            exponent = 2.0
            if previous is not None and seconds > 0.01:
                exponent = math.log(seconds / previous[1]) / math.log(size / previous[0])
            predicted = seconds * (following / size) ** min(3.0, max(1.0, exponent))
            if predicted > args.budget:
                print(f"{'':>8} (stopped: the next size would take about {predicted:.3g} s)")
                break
            previous = (size, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
