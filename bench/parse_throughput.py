"""Benchmark: ``sendpost-agent parse`` against ``grep -c status=`` and pflogsumm on one big log.

    .venv/bin/python bench/parse_throughput.py [--lines 500000] [--messages 150] [--repeat 3]
                                               [--keep PATH]

1. Capture (not timed): a private Postfix from Debian's packages (devtools.postfix) relays
   ``--messages`` platform-like messages (UUID header, UUID Message-ID, bounce envelope sender;
   one to three recipients) to an SMTP sink that accepts, rejects at RCPT (5xx), defers at
   RCPT (4xx; the queue lifetime is 0 s, so those expire after one attempt and produce bounce
   notifications) and rejects after DATA. Its ``maillog_file`` is the template. Without a usable
   Postfix (not root, not installed) the template is a built-in lifecycle assembled from corpus
   lines instead, and the output says so.
2. Replicate (not timed): the template is repeated with fresh queue IDs and UUIDs (each copy is
   a new set of messages, its timestamps shifted to follow the previous copy) until the log has
   at least ``--lines`` lines.
3. Timed, ``--repeat`` rounds on the same file, each round running every tool once (best and
   median wall time): the real ``.venv/bin/sendpost-agent parse LOG`` with stdout to /dev/null
   (two processes on a machine with two CPUs or more, docs/parsing.md), the same with
   ``--processes 1``, ``grep -c status= LOG`` and ``pflogsumm LOG``, after one untimed warm-up
   run of each (page cache; the agent's bytecode cache, as an installed command has it).
   Prints lines/s for each and the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AGENT = ROOT / ".venv" / "bin" / "sendpost-agent"
PFLOGSUMM = Path("/usr/sbin/pflogsumm")
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# Used only when no Postfix can run here: one message's lines in the shapes Postfix 3.7 writes
# with maillog_file (taken from the corpus and from earlier runs of the capture below).
FALLBACK_TEMPLATE = """\
Feb 19 12:00:00 mta postfix/smtpd[2101]: connect from localhost[127.0.0.1]
Feb 19 12:00:00 mta postfix/smtpd[2101]: 3E06E12011A: client=localhost[127.0.0.1]
Feb 19 12:00:00 mta postfix/cleanup[2104]: 3E06E12011A: info: header X-Sendpost-Message-UUID: \
1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01 from localhost[127.0.0.1]; \
from=<bounces+1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01+7@sp-bounce.example.com> \
to=<accept1@sink.test> proto=ESMTP helo=<submitter.sendpost.test>
Feb 19 12:00:00 mta postfix/cleanup[2104]: 3E06E12011A: \
message-id=<1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01@example.com>
Feb 19 12:00:00 mta postfix/qmgr[2099]: 3E06E12011A: \
from=<bounces+1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01+7@sp-bounce.example.com>, size=712, \
nrcpt=2 (queue active)
Feb 19 12:00:00 mta postfix/smtpd[2101]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 \
rcpt=2 data=1 quit=1 commands=6
Feb 19 12:00:00 mta postfix/smtp[2105]: 3E06E12011A: to=<accept1@sink.test>, \
relay=127.0.0.1[127.0.0.1]:40125, delay=0.03, delays=0.01/0.01/0.01/0.01, dsn=2.0.0, \
status=sent (250 2.0.0 OK id=SINK000001 accepted for delivery)
Feb 19 12:00:00 mta postfix/smtp[2105]: 3E06E12011A: to=<reject1@sink.test>, \
relay=127.0.0.1[127.0.0.1]:40125, delay=0.03, delays=0.01/0.01/0.01/0.01, dsn=5.1.1, \
status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <reject1@sink.test>: Recipient \
address rejected: User unknown (in reply to RCPT TO command))
Feb 19 12:00:00 mta postfix/cleanup[2104]: 5F1A312011C: message-id=\
<20260219120000.5F1A312011C@mta.sendpost.test>
Feb 19 12:00:00 mta postfix/bounce[2106]: 3E06E12011A: sender non-delivery notification: \
5F1A312011C
Feb 19 12:00:00 mta postfix/qmgr[2099]: 5F1A312011C: from=<>, size=2410, nrcpt=1 (queue active)
Feb 19 12:00:00 mta postfix/qmgr[2099]: 3E06E12011A: removed
Feb 19 12:00:00 mta postfix/smtp[2105]: 5F1A312011C: to=\
<bounces+1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01+7@sp-bounce.example.com>, \
relay=127.0.0.1[127.0.0.1]:40125, delay=0.01, delays=0/0/0/0, dsn=2.0.0, \
status=sent (250 2.0.0 OK id=SINK000002 accepted for delivery)
Feb 19 12:00:00 mta postfix/qmgr[2099]: 5F1A312011C: removed
"""


def capture(messages: int) -> tuple[str, str]:
    """Run a private Postfix and return (its log, a description of where it came from)."""
    try:
        from devtools.mail import bounce_address, platform_message, submit
        from devtools.postfix import PostfixError, PostfixInstance, PostfixSettings
        from devtools.sinks import SmtpSink
    except ImportError as exc:
        return FALLBACK_TEMPLATE, f"built-in template (devtools not importable: {exc})"
    rng = random.Random(7)
    kinds = ["accept"] * 6 + ["reject", "defer", "dataerr"]
    try:
        with (
            SmtpSink() as sink,
            PostfixInstance(
                PostfixSettings(
                    relay=sink.nexthop, maximal_queue_lifetime="0s", bounce_queue_lifetime="0s"
                )
            ) as mta,
        ):
            queue_ids = []
            for n in range(messages):
                message_uuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
                kind = rng.choice(kinds)
                count = 1 if kind == "dataerr" else rng.randint(1, 3)
                rcpts = [f"{kind}{n}-{i}@sink.test" for i in range(count)]
                if kind != "dataerr" and rng.random() < 0.3:
                    rcpts.append(f"accept{n}-x@sink.test")
                body = platform_message(message_uuid, "news@example.com", rcpts)
                sender = bounce_address(message_uuid, 7, "example.com")
                queue_ids.append(submit(mta.smtp_port, sender, rcpts, body))
            mta.wait_until_settled(queue_ids, timeout=120)
            text = mta.read_log()
    except (PostfixError, OSError) as exc:
        return FALLBACK_TEMPLATE, f"built-in template (no usable Postfix: {exc})"
    return text, f"real Postfix 3.7 maillog_file, {messages} messages"


_STAMP = re.compile(r"^([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) ", re.MULTILINE)
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def make_template(log: str) -> tuple[str, list[str], list[str], list[dt.datetime]]:
    """The log with every queue ID, UUID and timestamp replaced by a numbered placeholder."""
    qids = sorted(set(re.findall(r"\]: ([0-9A-Za-z]{6,}): ", log)), key=len, reverse=True)
    uuids = sorted(set(re.findall(UUID_RE, log)))
    escaped = log.replace("{", "{{").replace("}", "}}")
    alternatives = [re.escape(u) for u in uuids] + [rf"\b{re.escape(q)}\b" for q in qids]
    index = {value: f"u{i}" for i, value in enumerate(uuids)}
    index.update({value: f"q{i}" for i, value in enumerate(qids)})
    pattern = re.compile("|".join(alternatives))
    template = pattern.sub(lambda m: "{" + index[m.group(0)] + "}", escaped)
    stamps: dict[str, int] = {}
    times: list[dt.datetime] = []

    def stamp(m: re.Match[str]) -> str:
        if m.group(0) not in stamps:
            stamps[m.group(0)] = len(times)
            month, day, h, mi, sec = m.groups()
            times.append(
                dt.datetime(2026, _MONTHS.index(month) + 1, int(day), int(h), int(mi), int(sec))
            )
        return "{t" + str(stamps[m.group(0)]) + "} "

    template = _STAMP.sub(stamp, template)
    return template, qids, uuids, times


def _classic(value: dt.datetime) -> str:
    return f"{_MONTHS[value.month - 1]} {value.day:2d} {value:%H:%M:%S}"


def replicate(log: str, min_lines: int, path: Path) -> int:
    """Copies of the template, each a later stretch of time with new queue IDs and UUIDs."""
    template, qids, uuids, times = make_template(log)
    per_copy = template.count("\n")
    copies = -(-min_lines // per_copy)
    span = (max(times) - min(times)) + dt.timedelta(seconds=1) if times else dt.timedelta(0)
    rng = random.Random(11)
    serial = 0
    with path.open("w", encoding="utf-8") as out:
        for copy in range(copies):
            values: dict[str, str] = {}
            for i, qid in enumerate(qids):
                serial += 1
                values[f"q{i}"] = f"{serial:0{max(len(qid), 10)}X}"
            for i in range(len(uuids)):
                values[f"u{i}"] = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
            for i, value in enumerate(times):
                values[f"t{i}"] = _classic(value + copy * span)
            out.write(template.format_map(values))
    return copies * per_copy


# Commands run as installed ones do: with their bytecode cached (an inherited
# PYTHONDONTWRITEBYTECODE=1 would make every run compile the agent's modules again).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str], repeat: int, to_devnull: bool) -> list[float]:
    """Wall times of ``repeat`` runs. GNU grep notices a /dev/null stdout and stops at the first
    match, so grep writes into a pipe instead."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(
            argv,
            stdout=subprocess.DEVNULL if to_devnull else subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            check=True,
            env=ENV,
        )
        runs.append(time.perf_counter() - start)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--messages", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="also copy the generated log here")
    args = parser.parse_args()

    log, source = capture(args.messages)
    workdir = Path(tempfile.mkdtemp(prefix="parse-bench-"))
    try:
        path = workdir / "mail.log"
        lines = replicate(log, args.lines, path)
        if args.keep:
            shutil.copyfile(path, args.keep)
        size = path.stat().st_size
        print(f"log: {lines:,} lines, {size / 1e6:.1f} MB, from {source}")
        tools = {
            "sendpost-agent parse": [str(AGENT), "parse", str(path)],
            "parse --processes 1": [str(AGENT), "parse", "--processes", "1", str(path)],
            "grep -c status=": ["grep", "-c", "status=", str(path)],
            "pflogsumm": [str(PFLOGSUMM), str(path)],
        }
        # Round robin (each tool once per round), so that a machine that speeds up or slows
        # down during the run affects every tool alike.
        for name, argv in tools.items():  # warm-up, not timed: page cache, bytecode cache
            timed(argv, 1, to_devnull=not name.startswith("grep"))
        runs_by_tool: dict[str, list[float]] = {name: [] for name in tools}
        for _ in range(args.repeat):
            for name, argv in tools.items():
                runs_by_tool[name] += timed(argv, 1, to_devnull=not name.startswith("grep"))
        best: dict[str, float] = {}
        for name, runs in runs_by_tool.items():
            best[name] = min(runs)
            print(
                f"{name:22} best {min(runs):7.3f} s  median {statistics.median(runs):7.3f} s"
                f"  {lines / min(runs):>12,.0f} lines/s"
            )
        agent = best["sendpost-agent parse"]
        print(f"parse vs pflogsumm: {best['pflogsumm'] / agent:.1f}x faster (target >= 8x)")
        one = best["parse --processes 1"]
        print(f"parse --processes 1 vs pflogsumm: {best['pflogsumm'] / one:.1f}x faster")
        floor = agent / best["grep -c status="]
        print(f"parse vs grep -c status= (the floor): {floor:.1f}x slower")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
