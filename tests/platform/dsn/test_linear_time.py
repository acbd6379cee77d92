"""The DSN parser costs time linear in the message's size, whatever the bounce holds (issue 16).

Anyone who once received a platform message knows a bounce address, so the bounce port parses
whatever such a sender writes, up to the 10 MiB message limit. The shapes of
``tests/support/adversarial.py`` include those that made the old regular expressions quadratic
(an 82 KB base64 run as Final-Recipient took 14 s) or worse; each is fed at 1 KB → 10 MB and the
time per byte may not grow more than :data:`FACTOR` times (``tests/support/scaling.py``). The
address and paragraph helpers that replaced the regexes are also checked against those regexes
on short random text, where backtracking costs nothing.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sendpost_platform.smtp.dsn import parse_report
from sendpost_platform.smtp.readers.qmail import qmail_block
from sendpost_platform.smtp.readers.rfc3464 import postfix_paragraph
from sendpost_platform.smtp.readers.text import address_token, paragraphs

from tests.support.adversarial import DSN_SHAPES
from tests.support.scaling import measure_growth

FACTOR = 3.0
"""Allowed growth of the time per byte over the reference size; quadratic code grows ×4/step."""


@pytest.mark.slow
@pytest.mark.parametrize("shape", DSN_SHAPES)
def test_parse_time_grows_linearly_with_adversarial_input(shape: str) -> None:
    """1 KB → 10 MB of each shape: parse_report's time per byte stays within FACTOR of its time
    per byte at the reference size (the old regexes failed it by 16 KB on six of the shapes)."""
    growth = measure_growth(DSN_SHAPES[shape], parse_report, factor=FACTOR)
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
    assert _group(_OLD_ADDRESS.search(text), 1) == address_token(text, anchored=False)
    assert _group(_OLD_ADDRESS.match(text), 1) == address_token(text, anchored=True)


@given(_TEXT)
@example("<a@b> (x): y")
@example("<a@b> (x) : y")
def test_postfix_paragraph_helper_agrees_with_the_old_regex(text: str) -> None:
    """_postfix_paragraph reads a stripped paragraph exactly as the old regex did."""
    text = text.strip()
    assert _group(_OLD_POSTFIX_PARAGRAPH.match(text), 1, 2) == postfix_paragraph(text)


@given(_TEXT)
@example(" <a@b>: \n \n x")
def test_qmail_block_helper_agrees_with_the_old_regex(text: str) -> None:
    """_qmail_block reads a block exactly as the old regex did."""
    assert _group(_OLD_QMAIL_BLOCK.match(text), 1, 2) == qmail_block(text)


@given(st.lists(st.sampled_from(["a", " ", "\t", "\n", "\r", "\x0c", "\n\n", "b c"])).map("".join))
def test_paragraphs_are_the_old_split(text: str) -> None:
    """_paragraphs gives the non-blank pieces of splitting at '\\n\\s*\\n' (the old way): the
    same pieces of stripped text, the same stripped pieces of any text."""
    old = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    assert old == paragraphs(text.strip())
    old = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    assert old == [p.strip() for p in paragraphs(text)]
