"""Deduplication of delivery outcomes (pure): which events may repeat and how duplicates merge.

Rules (SPEC "Processing"): at most one CSDelivered and one terminal bounce per (message,
recipient). The database enforces the "at most one" with a unique index on ``(message_uuid,
recipient_key, dedup_slot)``; this module decides what happens to the second report:

- a second CSDelivered is dropped (it adds nothing);
- a second bounce of the same or lower severity is *merged*: the first stays the event of record
  and the newcomer's details (source, codes, text) are appended to ``details["merged"]``, unless
  it is an exact repeat (same agent ``event_id``, or same source, type, code and text), which is
  dropped, so that an agent re-sending a batch changes nothing;
- a soft bounce never overwrites a hard one;
- a hard bounce *does* replace an earlier soft one ("upgrade"): the soft report was provisional
  (e.g. Postfix gave up after ``deferred`` retries, then the recipient's server sent a DSN saying
  the user is unknown) and the definitive reason decides suppression. The soft report is kept in
  ``details["merged"]``, so nothing is lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

from sendpost_wire import EventType

DELIVERED_SLOT = "delivered"
BOUNCE_SLOT = "bounce"
MAX_MERGED = 20

_SLOTS = {
    EventType.CSDelivered: DELIVERED_SLOT,
    EventType.CSHardBounced: BOUNCE_SLOT,
    EventType.CSSoftBounced: BOUNCE_SLOT,
}


_SLOT_OF = {int(t): _SLOTS.get(t) for t in EventType}


def dedup_slot(event_type: int) -> str | None:
    """The uniqueness slot of an event type, or None when events of that type may repeat."""
    try:
        return _SLOT_OF[event_type]
    except KeyError:
        raise ValueError(f"{event_type!r} is not a valid EventType") from None


def recipient_key(recipient: str | None) -> str:
    return (recipient or "").strip().lower()


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """The facts of one bounce report, as stored on an event row."""

    event_type: int
    source: str
    smtp_code: int | None = None
    enhanced_status: str | None = None
    smtp_command: str | None = None
    reason: str | None = None
    description: str | None = None
    occurred_at: dt.datetime | None = None
    agent_event_id: str | None = None

    def summary(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["occurred_at"] = self.occurred_at.isoformat() if self.occurred_at else None
        return out


class Action(enum.Enum):
    DROP = "drop"
    """An exact repeat or a redundant delivery: change nothing."""
    MERGE = "merge"
    """Keep the existing event; record the newcomer in ``details["merged"]``."""
    UPGRADE = "upgrade"
    """Replace the existing (soft) bounce with the newcomer (hard); keep the old one merged."""


def decide(
    existing: Report, incoming: Report, existing_details: Mapping[str, Any] | None
) -> Action:
    if existing.event_type == EventType.CSDelivered:
        return Action.DROP
    if _same(existing, incoming) or any(
        _same_summary(m, incoming) for m in (existing_details or {}).get("merged", [])
    ):
        return Action.DROP
    if existing.event_type == EventType.CSSoftBounced and incoming.event_type == (
        EventType.CSHardBounced
    ):
        return Action.UPGRADE
    return Action.MERGE


def merged_details(details: Mapping[str, Any] | None, other: Report) -> dict[str, Any]:
    """``details`` with ``other`` appended to its ``merged`` list (bounded to MAX_MERGED)."""
    out = dict(details or {})
    merged = list(out.get("merged", []))
    if len(merged) < MAX_MERGED:
        merged.append(other.summary())
    out["merged"] = merged
    return out


def _same(a: Report, b: Report) -> bool:
    if a.agent_event_id and a.agent_event_id == b.agent_event_id:
        return True
    return (a.source, a.event_type, a.smtp_code, a.description) == (
        b.source,
        b.event_type,
        b.smtp_code,
        b.description,
    )


def _same_summary(summary: Mapping[str, Any], b: Report) -> bool:
    if summary.get("agent_event_id") and summary.get("agent_event_id") == b.agent_event_id:
        return True
    return (
        summary.get("source"),
        summary.get("event_type"),
        summary.get("smtp_code"),
        summary.get("description"),
    ) == (b.source, b.event_type, b.smtp_code, b.description)
