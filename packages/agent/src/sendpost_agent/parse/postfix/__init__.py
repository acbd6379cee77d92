"""The Postfix adapter (registered as ``postfix`` in :data:`~sendpost_agent.parse.mta.REGISTRY`).

* :func:`parse_line` — one line (bytes) → a record or :class:`~sendpost_agent.parse.Unparsed`
  (pure; lines.py);
* :class:`Pipeline` — buffers of lines → wire events, with counters and resumable state
  (pipeline.py): the line-local scan (scan.py), the year inference (../timestamps.py) and the
  queue-ID correlator (correlate.py). lines.py, scan.py, correlate.py and pipeline.py are
  compiled by Cython when built (../compiled.py); the same files run as Python otherwise.

Rules and their reasons: docs/parsing.md.
"""

from sendpost_agent.parse import CODE
from sendpost_agent.parse.mta import Mta
from sendpost_agent.parse.postfix.lines import parse_line
from sendpost_agent.parse.postfix.pipeline import Pipeline, scan_packed

ADAPTER = Mta(
    name="postfix",
    parser=Pipeline,
    scanner=CODE,
    parse_line=parse_line,
    scan_packed=scan_packed,
)

__all__ = ["ADAPTER", "Pipeline", "parse_line"]
