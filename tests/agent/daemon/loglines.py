"""Realistic Postfix log lines for daemon tests, in the corpus formats (see FORMATS.md).

Each message gets the platform's header_checks INFO line and envelope sender carrying its UUID,
a qmgr line, a delivery line (sent, bounced or deferred, by index) and ``removed``.
"""

from __future__ import annotations

import datetime as dt
import uuid

BASE = dt.datetime(2026, 2, 19, 8, 0, 0)
_NS = uuid.UUID("6f1c2a3e-0000-4000-8000-000000000000")


def message_uuid(i: int) -> str:
    return str(uuid.uuid5(_NS, f"message-{i}"))


def queue_id(i: int) -> str:
    return f"{0x3A2B100000 + i:X}"


def _stamp(i: int, second: int) -> str:
    moment = BASE + dt.timedelta(seconds=i // 4 + second)
    return f"{moment:%b} {moment.day:2d} {moment:%H:%M:%S}"


def message_lines(i: int) -> list[str]:
    """The log lines of message ``i`` (ends with ``\\n`` each)."""
    qid, mid = queue_id(i), message_uuid(i)
    rcpt = f"user{i}@example.org"
    sender = f"bounces+{mid}+7@sp-bounce.example.com"
    host = "mx postfix"
    kind = i % 10
    if kind < 7:
        result = (
            "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4QpLx21Z0hz9rwP)",
            "mx.example.org[198.51.100.7]:25",
        )
    elif kind < 9:
        result = (
            f"dsn=5.1.1, status=bounced (host mx.example.org[198.51.100.7] said: 550 5.1.1 "
            f"<{rcpt}>: Recipient address rejected: User unknown (in reply to RCPT TO command))",
            "mx.example.org[198.51.100.7]:25",
        )
    else:
        result = (
            "dsn=4.4.1, status=deferred (connect to mx.example.org[198.51.100.7]:25: "
            "Connection timed out)",
            "none",
        )
    status, relay = result
    lines = [
        f"{_stamp(i, 0)} {host}/smtpd[2211]: {qid}: client=app.sendpost.example[192.0.2.10]",
        f"{_stamp(i, 0)} {host}/cleanup[2212]: {qid}: info: header X-Sendpost-Message-UUID: "
        f"{mid} from app.sendpost.example[192.0.2.10]; from=<{sender}> to=<{rcpt}> "
        "proto=ESMTP helo=<app.sendpost.example>",
        f"{_stamp(i, 0)} {host}/cleanup[2212]: {qid}: message-id=<{mid}@app.sendpost.example>",
        f"{_stamp(i, 0)} {host}/qmgr[1001]: {qid}: from=<{sender}>, size=2417, nrcpt=1 "
        "(queue active)",
        f"{_stamp(i, 1)} {host}/smtp[3301]: {qid}: to=<{rcpt}>, relay={relay}, delay=1.2, "
        f"delays=0.05/0.01/0.6/0.54, {status}",
    ]
    if kind != 9:
        lines.append(f"{_stamp(i, 1)} {host}/qmgr[1001]: {qid}: removed")
    return [line + "\n" for line in lines]


def log_text(start: int, stop: int) -> str:
    return "".join(line for i in range(start, stop) for line in message_lines(i))
