"""The Postfix adapter (registered as ``postfix`` in :data:`~sendpost_agent.parse.mta.REGISTRY`).

* :func:`parse_line` — one line (bytes) → a record or :class:`~sendpost_agent.parse.Unparsed`
  (pure; lines.py);
* :class:`Pipeline` — buffers of lines → wire events, with counters and resumable state
  (pipeline.py): the line-local scan (scan.py, or its compiled twin ``_fastscan.pyx``), the year
  inference (../timestamps.py) and the queue-ID correlator (correlate.py).

Rules and their reasons: docs/parsing.md.
"""

from sendpost_agent.parse.mta import Mta
from sendpost_agent.parse.postfix.lines import parse_line
from sendpost_agent.parse.postfix.pipeline import Pipeline
from sendpost_agent.parse.postfix.scan import NATIVE

ADAPTER = Mta(
    name="postfix",
    parser=Pipeline,
    scanner="compiled" if NATIVE is not None else "python",
    parse_line=parse_line,
)

__all__ = ["ADAPTER", "Pipeline", "parse_line"]
