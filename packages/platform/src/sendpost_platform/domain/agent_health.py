"""Is a provider's agent alive and well? (pure: what the platform last heard, and when).

An agent contacts the platform with each batch of events and, since heartbeats exist, at least
every minute (``sendpost_wire.heartbeat``). From the provider's record:

=================  ==============================================================================
``never``          no batch and no heartbeat yet (the agent is not installed, or cannot reach us)
``key_rejected``   a key of this provider that no longer works was presented after the agent was
                   last heard from with a working one (rotated or revoked; the agent needs the
                   new key)
``stale``          silent for longer than :data:`SILENT_AFTER` (an agent that sends heartbeats)
                   or :data:`LEGACY_SILENT_AFTER` (one that never did: it only calls with events)
``unhealthy``      heard from recently, but its last heartbeat says it is not doing its job, with
                   its reasons (log unreadable, WAL nearly full, events waiting, …)
``ok``             heard from recently and healthy
=================  ==============================================================================
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

SILENT_AFTER = dt.timedelta(minutes=5)
LEGACY_SILENT_AFTER = dt.timedelta(minutes=15)


@dataclasses.dataclass(frozen=True, slots=True)
class AgentHealth:
    status: str
    """``ok``, ``never``, ``key_rejected``, ``stale`` or ``unhealthy``."""
    summary: str
    """One line for a person: what is wrong, or that all is well."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def ago(value: dt.datetime, now: dt.datetime) -> str:
    """Roughly how long before ``now``: ``just now``, ``4 min ago``, ``3 h ago``, ``2 days ago``."""
    seconds = int((now - value).total_seconds())
    if seconds < 60:
        return "just now" if seconds >= 0 else "in the future"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    days = seconds // 86400
    return f"{days} day{'s' if days != 1 else ''} ago"


def assess(
    *,
    last_seen: dt.datetime | None,
    report: Mapping[str, Any] | None,
    report_at: dt.datetime | None,
    key_rejected_at: dt.datetime | None,
    now: dt.datetime,
) -> AgentHealth:
    """The agent's status from the provider's record (see the table above)."""
    if key_rejected_at is not None and (last_seen is None or key_rejected_at > last_seen):
        return AgentHealth(
            "key_rejected",
            f"agent's key rejected {ago(key_rejected_at, now)}: give it the current ingestion key",
        )
    if last_seen is None:
        return AgentHealth("never", "agent never seen")
    silent_after = SILENT_AFTER if report_at is not None else LEGACY_SILENT_AFTER
    if now - last_seen > silent_after:
        return AgentHealth("stale", f"agent silent: last seen {ago(last_seen, now)}")
    if report is not None and report.get("healthy") is False:
        problems = report.get("problems") or []
        reasons = "; ".join(str(p) for p in problems[:3]) or "no reason given"
        return AgentHealth("unhealthy", f"agent unhealthy: {reasons}")
    return AgentHealth("ok", f"agent seen {ago(last_seen, now)}")
