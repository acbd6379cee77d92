"""Delivery status notifications (bounce messages) parsed into per-recipient records.

Pure functions over the raw message bytes: ``parse_report(raw)`` returns every recipient the
report mentions with its Action; ``parse_dsn(raw)`` returns only the terminal ones (``Action:
failed``): ``delayed`` (a warning), ``delivered``, ``relayed`` and ``expanded`` are ignored, as
SPEC.md asks of the bounce processor. Neither raises on arbitrary input; a message that is no
recognisable bounce gives an empty report (``format == "unknown"``).

The formats are read by the readers of ``smtp/readers/`` (one module each, one interface:
``detect`` then ``extract``), tried in ``readers.READERS`` order with RFC 3464 first; the first
that finds a recipient wins and ``DsnReport.format`` names it (docs/bounces.md, "Readers").

The returned original message (``message/rfc822``, ``text/rfc822-headers`` or the copy after a
text bounce's separator) is exposed as ``returned_headers`` so the caller can read e.g.
``X-Sendpost-Message-UUID``. The envelope address the bounce was sent to (``bounces+uuid+sub@``)
is the caller's: it is not part of the message.

Cost: linear in the message's size whatever it holds (the sender may be anyone who knows a
bounce address). Addresses, recipient paragraphs and status comments are read with str methods
and paragraphs split line by line; no remaining pattern has two unbounded quantifiers that can
trade characters (tests/platform/dsn/test_linear_time.py).
"""

from __future__ import annotations

from sendpost_platform.smtp import readers
from sendpost_platform.smtp.readers.base import TERMINAL_ACTIONS, Bounce, DsnRecipient, DsnReport

__all__ = ["TERMINAL_ACTIONS", "DsnRecipient", "DsnReport", "parse_dsn", "parse_report"]


def parse_report(raw: bytes) -> DsnReport:
    """Every recipient of the bounce, whatever its Action."""
    try:
        return readers.read(Bounce.parse(raw))
    except (ValueError, LookupError, TypeError, AttributeError, IndexError):
        return DsnReport("unknown", ())


def parse_dsn(raw: bytes) -> list[DsnRecipient]:
    """The terminal (``Action: failed``) recipients of a bounce; delayed warnings give none."""
    return [r for r in parse_report(raw).recipients if r.terminal]
