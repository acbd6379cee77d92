"""The values the Postfix line parser returns (named tuples: immutable, and quick to build and
to import).

Each record keeps the raw timestamp text (``stamp``) rather than a datetime: classic syslog
timestamps carry no year, and inferring it needs the history of the log, which is the
pipeline's business, not the parser's. ``line`` is the whole decoded line; it feeds the
deterministic event id.
"""

from __future__ import annotations

from typing import NamedTuple

# Where a queue ID learnt its message UUID, best first. A better source overrides a worse one.
SOURCE_INHERITED = 0  # from the parent queue ID of a content-filter / re-injection hop
SOURCE_HEADER = 1  # cleanup ``info: header X-Sendpost-Message-UUID: <uuid>``
SOURCE_SENDER = 2  # qmgr ``from=<bounces+{uuid}+{subAccountId}@sp-bounce.{domain}>``
SOURCE_MESSAGE_ID = 3  # cleanup ``message-id=<{uuid}@domain>``


class Delivery(NamedTuple):
    """One recipient's delivery attempt: ``QID: to=<r>, [orig_to=<o>, ]relay=R, dsn=D,
    status=WORD (text)``. ``recipient`` is the address the platform sent to: ``o`` when logged,
    else ``r``; ``final_recipient`` is ``r`` when ``o`` was logged (the rewritten address)."""

    queue_id: str
    stamp: str | None
    line: str
    recipient: str
    relay: str
    status: str  # lower-cased status word: sent, bounced, deferred, softbounce, deliverable, ...
    dsn: str | None
    text: str  # the parenthesised text after the status word, without the outer parentheses
    final_recipient: str | None = None


class UuidSeen(NamedTuple):
    """A line revealing the message UUID of a queue ID (``source`` is one of ``SOURCE_*``)."""

    queue_id: str
    stamp: str | None
    line: str
    uuid: str
    source: int


class Expired(NamedTuple):
    """qmgr ``QID: from=<sender>, status=expired, returned to sender`` (also ``force-expired``)."""

    queue_id: str
    stamp: str | None
    line: str
    status: str


class Removed(NamedTuple):
    """qmgr ``QID: removed``: the queue ID is finished and may be reused."""

    queue_id: str
    stamp: str | None
    line: str


class Reinjected(NamedTuple):
    """smtpd ``QID: client=..., orig_queue_id=PARENT``: a filter re-injected PARENT as QID."""

    queue_id: str
    stamp: str | None
    line: str
    parent: str


class Unparsed(NamedTuple):
    """A line that yields nothing. ``reason`` is ``irrelevant`` (nothing the agent needs: other
    Postfix lines, other programs), ``too_long`` (over 64 KiB) or ``truncated`` (a delivery line
    cut before its ``status=``)."""

    reason: str


Record = Delivery | UuidSeen | Expired | Removed | Reinjected
