"""Mail logs → wire events, through one seam (mta.py) and one adapter folder per MTA.

* :func:`adapter` — the :class:`Mta` registered under a name (the ``mta`` setting): it builds
  the :class:`LogParser` the daemon and ``parse`` feed (mta.py);
* ``postfix/`` — the Postfix adapter: its line patterns (lines.py), the line-local scan
  (scan.py), the queue-ID correlator (correlate.py) and the pipeline tying them together
  (pipeline.py);
* compiled.py — whether those modules (and events.py) run compiled by Cython or as Python;
  decided here, before any of them is imported;
* shared by adapters: the records (records.py), SMTP reply anatomy and event IDs (events.py),
  syslog timestamps (timestamps.py), internal relays (relays.py).

Importing this package loads no adapter: :func:`adapter` imports the one asked for.
"""

from sendpost_agent.parse import compiled
from sendpost_agent.parse.mta import REGISTRY, LogParser, Mta, ParseStats, StateChanges, adapter
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

CODE = compiled.choose()
"""``"compiled"`` or ``"python"``: how the parser's modules run in this process (compiled.py)."""

__all__ = [
    "CODE",
    "DEFAULT_INTERNAL_RELAYS",
    "REGISTRY",
    "Delivery",
    "Expired",
    "LogParser",
    "Mta",
    "ParseStats",
    "Record",
    "Reinjected",
    "Removed",
    "StateChanges",
    "Unparsed",
    "UuidSeen",
    "adapter",
]
