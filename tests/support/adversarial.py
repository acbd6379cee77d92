"""Inputs that made the bounce parser and the classifier slow, by size (issue 16).

Each shape is a function of a size in bytes (about that many bytes of the repeated unit) giving
a whole bounce message (``DSN_SHAPES``, for ``parse_report``) or a reply text (``REPLY_SHAPES``,
for ``classify``). Used by the growth tests (``tests/platform/dsn/test_linear_time.py``,
``tests/platform/classify/test_linear_time.py``) and ``bench/bounce_parse.py``.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable


def _repeat(unit: bytes, size: int) -> bytes:
    return unit * max(1, size // len(unit))


def _repeat_text(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit))


def _base64_run(size: int) -> bytes:
    """``size`` bytes of base64 text without a line break (random, seeded)."""
    return base64.b64encode(random.Random(size).randbytes(size))[:size]


def _report(
    human: bytes, fields: bytes, *, status: bytes = b"5.1.1", text_headers: bytes = b""
) -> bytes:
    """A multipart/report: a text/plain part and a delivery-status part with one recipient."""
    return (
        b"From: MAILER-DAEMON@mx.example\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n" + text_headers + b"\r\n" + human + b"\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example\r\n\r\n"
        b"Final-Recipient: rfc822; " + fields + b"\r\n"
        b"Action: failed\r\nStatus: " + status + b"\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--b--\r\n"
    )


def _plain(body: bytes) -> bytes:
    return b"From: MAILER-DAEMON@mx.example\r\nSubject: failure\r\n\r\n" + body + b"\r\n"


DSN_SHAPES: dict[str, Callable[[int], bytes]] = {
    "base64 run as Final-Recipient": lambda n: _report(b"failed", _base64_run(n)),
    "base64 run in the text part": lambda n: _report(_base64_run(n), b"user@rcpt.example"),
    "'<' and '@' without '>' in the text part": lambda n: _report(
        b"<" + _repeat(b"a@", n), b"user@rcpt.example"
    ),
    "'@' repeated then '>x' as Final-Recipient": lambda n: _report(
        b"failed", _repeat(b"a@", n) + b">x"
    ),
    "spaces in Status and the text part": lambda n: _report(
        b"<user@rcpt.example>: host said:" + b" " * n + b"x",
        b"user@rcpt.example",
        status=b"5.1.1 (" + b" " * n + b")",
    ),
    "blank lines in the text part": lambda n: _report(_repeat(b"\r\n \r\n", n), b"a@b.example"),
    "Exim: '@' repeated on an address line": lambda n: _plain(
        b"The following address(es) failed:\r\n\r\n  " + _repeat(b"a@", n) + b">x\r\n"
    ),
    "Exim: 'said:' repeated in a reply": lambda n: _plain(
        b"The following address(es) failed:\r\n\r\n  a@b.example\r\n    host said: "
        + _repeat(b"said: ]: ", n)
        + b"\r\n"
    ),
    "qmail: '<' and '@' without '>'": lambda n: _plain(
        b"This is the qmail-send program at mx.example.\r\n\r\n<" + _repeat(b"a@", n) + b"\r\n"
    ),
    "base64-encoded text part of '<a@' repeated": lambda n: _report(
        base64.encodebytes(b"<" + _repeat(b"a@", n * 3 // 4)),
        b"user@rcpt.example",
        text_headers=b"Content-Transfer-Encoding: base64\r\n",
    ),
    "qmail: spaces after the address": lambda n: _plain(
        b"This is the qmail-send program at mx.example.\r\n\r\n<a@b.example>:"
        + b" " * n
        + b"\r\n  550 no such user (#5.1.1)\r\n"
    ),
    # The generic and early text readers of smtp/readers/ (issue 14).
    "text bounce: distinct addresses on one line": lambda n: _plain(
        b" ".join(b"<u%d@d.example>" % i for i in range(max(1, n // 16)))
    ),
    "text bounce: an address per line": lambda n: _plain(
        b"".join(b"u%d@d.example\r\n" % i for i in range(max(1, n // 16)))
    ),
    "text bounce: RFC 3464 fields pasted, repeated": lambda n: _plain(
        _repeat(b"Final-Recipient: rfc822; a@b.example\r\nAction: failed\r\n", n)
    ),
    "old Gmail: address lines, then one long reply": lambda n: _plain(
        b"Delivery to the following recipient failed permanently:\r\n\r\n"
        + _repeat(b"a@b.example\r\n", n // 2)
        + b"x"
        + b" 550" * (n // 8)
        + b"\r\n"
    ),
    "report without Diagnostic-Code, addresses in the text part": lambda n: (
        b"From: MAILER-DAEMON@mx.example\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n"
        + b" ".join(b"<u%d@d.example>:" % i for i in range(max(1, n // 16)))
        + b"\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example\r\n\r\n"
        b"Final-Recipient: rfc822; u1@d.example\r\nAction: failed\r\nStatus: 5.0.0\r\n\r\n--b--\r\n"
    ),
    "text bounce: '<' and '@' repeated, no separator": lambda n: _plain(
        b"Subject: x\r\n" + _repeat(b"<@<a@", n)
    ),
    # The per-format readers of smtp/readers/ (issue 14).
    "Sendmail transcript: replies and verdicts repeated": lambda n: _plain(
        b"   ----- Transcript of session follows -----\r\n"
        + _repeat(b">>> RCPT To:<a@b.example>\r\n<<< 550 x\r\n550 <a@b.example>... x\r\n", n)
    ),
    "Sendmail, forwarded quoted: '> ' lines": lambda n: _plain(
        b"> ----- Transcript of session follows -----\r\n"
        + _repeat(b"> <<< 550 a@b.example\r\n", n)
    ),
    "Sendmail 'permanent fatal errors': distinct addresses": lambda n: _plain(
        b"----- The following addresses had permanent fatal errors -----\r\n"
        + b"".join(b"<u%d@d.example>\r\n" % i for i in range(max(1, n // 18)))
    ),
    "Exchange 2003: recipient lines and reasons": lambda n: _plain(
        b"did not reach the following recipient(s):\r\n\r\n"
        + _repeat(b"a@b.example on Thu\r\n    The recipient name is not recognized\r\n", n)
    ),
    "Office 365: distinct addresses listed": lambda n: _plain(
        b"Delivery has failed to these recipients or groups:\r\n\r\n"
        + b"".join(b"u%d@d.example\r\n" % i for i in range(max(1, n // 16)))
    ),
    "X-Failed-Recipients headers, distinct addresses": lambda n: (
        b"From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n"
        + b"".join(b"X-Failed-Recipients: u%d@d.example\r\n" % i for i in range(max(1, n // 36)))
        + b"Subject: Delivery Status Notification (Failure)\r\n\r\nfailed\r\n"
    ),
    "SES JSON notification: nested brackets": lambda n: _plain(
        b'{"notificationType": "Bounce", "bounce": ' + b"[" * (n // 2) + b"]" * (n // 2) + b"}"
    ),
    "Exim: bare local parts as address lines": lambda n: _plain(
        b"The following address(es) failed:\r\n\r\n" + _repeat(b"  abc\r\n    x\r\n", n)
    ),
}


REPLY_SHAPES: dict[str, Callable[[int], str]] = {
    "'mailbox unavailable' repeated": lambda n: _repeat_text("mailbox unavailable ", n),
    "'exceeded the ' repeated": lambda n: _repeat_text("exceeded the ", n),
    "base64 run": lambda n: _base64_run(n).decode(),
    "spaces after 'said:'": lambda n: "host said:" + " " * n + "x",
    "'<' and '@' without '>'": lambda n: "<" + _repeat_text("a@", n),
    "blank lines": lambda n: _repeat_text("\n \n", n),
    "digits and dots after a status": lambda n: "5.1.1" + _repeat_text("1.", n),
    "'in reply to' repeated": lambda n: _repeat_text("in reply to RCPT ", n),
}
