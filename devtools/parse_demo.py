"""A real Postfix, a few messages, and what ``sendpost-agent parse`` makes of its log.

(This was ``make demo`` until the whole loop existed; ``make demo`` is now ``devtools.demo``.)

Starts a private Postfix (Debian's package) relaying to a local receiving server that accepts some
recipients, rejects some permanently and defers others, sends a handful of messages prepared as
the platform prepares them, waits until Postfix has finished with each, runs the real
``sendpost-agent parse`` on Postfix's log and prints the events as a table. Everything runs on
loopback and is removed on exit, Ctrl-C included (``--keep`` leaves the Postfix directory).

Run: ``.venv/bin/python -m devtools.parse_demo [--content-filter] [--keep]`` from the repository
root. The pieces it uses live in ``devtools.rig``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import uuid as uuidlib
from collections import Counter
from collections.abc import Sequence
from types import FrameType
from typing import Any

from devtools.postfix import PostfixError
from devtools.rig import LocalMta

# (what the receiving server does, recipients' local-part prefixes)
MESSAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("accepted", ("accept",)),
    ("accepted", ("accept",)),
    ("rejected at RCPT: unknown user", ("reject",)),
    ("rejected at RCPT: mailbox full", ("full",)),
    ("rejected after DATA: content", ("dataerr",)),
    ("deferred at RCPT until the queue lifetime ends", ("defer",)),
    ("three recipients, three outcomes", ("accept", "reject", "greylist")),
)
COLUMNS = ("message", "recipient", "event", "code", "status", "command", "queue_id")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def event_row(event: dict[str, Any]) -> list[str]:
    return [
        str(event.get("message_id", ""))[:8],
        str(event.get("recipient", "")),
        str(event.get("event_type", "")),
        str(event.get("smtp_code") or ""),
        str(event.get("enhanced_status") or ""),
        str(event.get("smtp_command") or ""),
        str(event.get("queue_id") or ""),
    ]


def run(content_filter: bool, keep: bool) -> int:
    with LocalMta(
        content_filter=content_filter, long_queue_ids=content_filter, keep_dir=keep
    ) as rig:
        print(f"Postfix {rig.mta.root} listening on 127.0.0.1:{rig.mta.smtp_port}")
        print(f"receiving server on {rig.sink.nexthop}, bounce server on {rig.bounce_sink.nexthop}")
        queue_ids = []
        for number, (what, prefixes) in enumerate(MESSAGES, start=1):
            uuid = str(uuidlib.uuid4())
            recipients = [f"{prefix}-{number}@sink.test" for prefix in prefixes]
            queue_ids.append(rig.send(uuid, recipients))
            print(f"sent {uuid[:8]} to {', '.join(recipients)}: {what}")
        print("waiting for Postfix to finish with every message ...")
        trace = rig.settle(queue_ids, timeout=60)
        result = rig.parse(stats=True)
        print(f"\n$ sendpost-agent parse --stats {rig.log_path}\n")
        print(format_table([event_row(e) for e in result.events], COLUMNS))
        counts = Counter(str(e.get("event_type")) for e in result.events)
        print("\nevents by type: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        print(f"notifications Postfix sent to the return path: {len(trace.notifications)}")
        print("parse --stats:\n  " + "\n  ".join(result.stderr.strip().splitlines()))
        return result.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.parse_demo", description=__doc__)
    parser.add_argument("--content-filter", action="store_true", help="add a re-injection hop")
    parser.add_argument("--keep", action="store_true", help="keep the Postfix directory")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return run(args.content_filter, args.keep)
    except KeyboardInterrupt:
        print("\ninterrupted: Postfix and the SMTP servers are stopped", file=sys.stderr)
        return 130
    except (PostfixError, TimeoutError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
