"""The DSN parser costs time linear in the message's size, whatever the bounce holds (issue 16).

Anyone who once received a platform message knows a bounce address, so the bounce port parses
whatever such a sender writes, up to the 10 MiB message limit. The shapes below made the old
regular expressions quadratic (an 82 KB base64 run as Final-Recipient took 14 s); each is fed at
1 KB → 10 MB and the time per byte may not grow more than :data:`FACTOR` times
(``tests/support/scaling.py``). The address and paragraph helpers that replaced the regexes are
also checked against those regexes on short random text, where backtracking costs nothing.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sendpost_platform.smtp import dsn
from sendpost_platform.smtp.dsn import parse_report

from tests.support.scaling import measure_growth

FACTOR = 3.0
"""Allowed growth of the time per byte over the reference size; quadratic code grows ×4/step."""


def _report(human: bytes, fields: bytes, *, status: bytes = b"5.1.1") -> bytes:
    """A multipart/report: a text/plain part and a delivery-status part with one recipient."""
    return (
        b"From: MAILER-DAEMON@mx.example\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n" + human + b"\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example\r\n\r\n"
        b"Final-Recipient: rfc822; " + fields + b"\r\n"
        b"Action: failed\r\nStatus: " + status + b"\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--b--\r\n"
    )


def _plain(body: bytes) -> bytes:
    return b"From: MAILER-DAEMON@mx.example\r\nSubject: failure\r\n\r\n" + body + b"\r\n"


def _base64_run(size: int) -> bytes:
    """``size`` bytes of base64 text without a line break (random, seeded)."""
    return base64.b64encode(random.Random(size).randbytes(size))[:size]


def _repeat(unit: bytes, size: int) -> bytes:
    return unit * max(1, size // len(unit))


SHAPES: dict[str, Callable[[int], bytes]] = {
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
    "qmail: spaces after the address": lambda n: _plain(
        b"This is the qmail-send program at mx.example.\r\n\r\n<a@b.example>:" + b" " * n + b"x\r\n"
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_parse_time_grows_linearly_with_adversarial_input(shape: str) -> None:
    """1 KB → 10 MB of each shape: parse_report's time per byte stays within FACTOR of its time
    per byte at the reference size (the old regexes failed this within 64 KB)."""
    growth = measure_growth(SHAPES[shape], parse_report, factor=FACTOR)
    assert growth.broken_at is None, f"{shape}: {growth.describe()}"


# The regexes the helpers replaced; on short text their backtracking is harmless.
_OLD_ADDRESS = re.compile(r"<?([^\s<>;:\"]+@[^\s<>;:\"]+?)>?[.,]?$")
_OLD_POSTFIX_PARAGRAPH = re.compile(r"^<([^>\s]+@[^>\s]+)>(?: \([^)]*\))?:\s(.*)$", re.S)
_OLD_QMAIL_BLOCK = re.compile(r"\s*<([^>\s]+@[^>\s]+)>:\s*\n(.*)", re.S)

_PIECES = st.sampled_from(
    ["a", "b.c", "@", "<", ">", ".", ",", ";", ":", '"', " ", "\t", "\n", "(", ")", "\xa0", "x@y"]
)
_TEXT = st.lists(_PIECES, max_size=14).map("".join)


def _group(match: re.Match[str] | None, *groups: int) -> object:
    return None if match is None else match.group(*groups)


@given(_TEXT)
@example("a@b@.")
@example("<a@b>.")
@example("a@b,,")
def test_address_helper_agrees_with_the_old_regex(text: str) -> None:
    """_address_token finds what the old address regex found, with search and with match."""
    text = text.strip()
    assert _group(_OLD_ADDRESS.search(text), 1) == dsn._address_token(text, anchored=False)
    assert _group(_OLD_ADDRESS.match(text), 1) == dsn._address_token(text, anchored=True)


@given(_TEXT)
@example("<a@b> (x): y")
@example("<a@b> (x) : y")
def test_postfix_paragraph_helper_agrees_with_the_old_regex(text: str) -> None:
    """_postfix_paragraph reads a stripped paragraph exactly as the old regex did."""
    text = text.strip()
    assert _group(_OLD_POSTFIX_PARAGRAPH.match(text), 1, 2) == dsn._postfix_paragraph(text)


@given(_TEXT)
@example(" <a@b>: \n \n x")
def test_qmail_block_helper_agrees_with_the_old_regex(text: str) -> None:
    """_qmail_block reads a block exactly as the old regex did."""
    assert _group(_OLD_QMAIL_BLOCK.match(text), 1, 2) == dsn._qmail_block(text)


@given(st.lists(st.sampled_from(["a", " ", "\t", "\n", "\r", "\x0c", "\n\n", "b c"])).map("".join))
def test_paragraphs_are_the_old_split(text: str) -> None:
    """_paragraphs gives the non-blank pieces of splitting at '\\n\\s*\\n' (the old way): the
    same pieces of stripped text, the same stripped pieces of any text."""
    old = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    assert old == dsn._paragraphs(text.strip())
    old = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    assert old == [p.strip() for p in dsn._paragraphs(text)]
