"""Postfix log parsing and correlation.

* :func:`parse_line` — one line (bytes) → a record or :class:`Unparsed` (pure; postfix.py);
* :class:`Pipeline` — buffers of lines → wire events, with counters and resumable state
  (pipeline.py), built on the year inference (timestamps.py) and the correlator (correlate.py).
"""

from sendpost_agent.parse.pipeline import ParseStats, Pipeline
from sendpost_agent.parse.postfix import parse_line
from sendpost_agent.parse.records import (
    Delivery,
    Expired,
    Record,
    Reinjected,
    Removed,
    Unparsed,
    UuidSeen,
)
from sendpost_agent.parse.relays import DEFAULT_INTERNAL_RELAYS

__all__ = [
    "DEFAULT_INTERNAL_RELAYS",
    "Delivery",
    "Expired",
    "ParseStats",
    "Pipeline",
    "Record",
    "Reinjected",
    "Removed",
    "Unparsed",
    "UuidSeen",
    "parse_line",
]
