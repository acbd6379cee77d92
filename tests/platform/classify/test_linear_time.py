"""The classifier reads at most MAX_CLASSIFIED_CHARS of a reply, in time that does not grow with
the rest (issue 16).

Reply texts come from agents (up to 10,000 characters per event) and from bounces (a
Diagnostic-Code as long as the message). Each shape of ``tests/support/adversarial.py`` is fed
at 1 KB → 10 MB; past the cap the time may not grow more than :data:`FACTOR` times
(``tests/support/scaling.py``). The first two shapes made the old patterns
(``mailbox unavailable\\b.*\\byahoo``, ``exceeded the .*limit``) quadratic; the others were
linear but unbounded.
"""

from __future__ import annotations

import pytest
from sendpost_platform.domain.classify import MAX_CLASSIFIED_CHARS, Classification, classify

from tests.support.adversarial import REPLY_SHAPES
from tests.support.scaling import KB, measure_growth

FACTOR = 3.0
"""Allowed growth of the time past the cap (none is expected)."""
REFERENCE = 4 * KB
"""The first measured size past the cap."""


def _classify(text: str) -> Classification:
    return classify(smtp_code=None, enhanced_status=None, smtp_command=None, text=text)


@pytest.mark.slow
@pytest.mark.parametrize("shape", REPLY_SHAPES)
def test_classify_time_stops_growing_past_the_cap(shape: str) -> None:
    """1 KB → 10 MB of each shape: past the cap, classify takes no more than FACTOR times its
    time at 4 KB (the old classifier grew linearly, or quadratically for the first two)."""
    growth = measure_growth(
        REPLY_SHAPES[shape], _classify, factor=FACTOR, exponent=0, reference=REFERENCE
    )
    assert growth.broken_at is None, f"{shape}: {growth.describe()}"


def test_only_the_first_max_classified_chars_are_read() -> None:
    """A phrase that ends inside the cap decides; the same phrase starting past it is not read."""
    phrase = "user unknown"
    inside = " " * (MAX_CLASSIFIED_CHARS - len(phrase)) + phrase
    outside = " " * MAX_CLASSIFIED_CHARS + phrase
    assert ("keyword:user_unknown", "fallback") == (
        _classify(inside).rule,
        _classify(outside).rule,
    )


def test_cap_keeps_verdicts_on_long_real_replies() -> None:
    """A real reply padded to 10 MB after its text is classified as the reply alone."""
    reply = "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown in virtual table"
    assert _classify(reply) == _classify(reply + " padding" * 1_300_000)
