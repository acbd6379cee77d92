"""Event type identifiers, as the platform stores and shows them, and the agent's event kinds."""

from __future__ import annotations

import enum


class EventType(enum.IntEnum):
    """Platform event types for Custom SMTP (IDs 58–68 are part of the contract)."""

    CSProcessed = 58
    CSSent = 59
    CSDelivered = 60
    CSDeferred = 61
    CSDropped = 62
    CSHardBounced = 63
    CSSoftBounced = 64
    CSOpen = 65
    CSClick = 66
    CSSpamReport = 67
    CSUnsubscribe = 68

    @classmethod
    def from_name(cls, name: str) -> EventType:
        """Look a type up by its contract name (``CSDelivered``); raises ``KeyError``."""
        return cls[name]


class AgentEventType(enum.StrEnum):
    """What the agent reports for one recipient of one message."""

    delivered = "delivered"
    bounced = "bounced"
    deferred = "deferred"
    soft_bounced = "soft_bounced"


AGENT_EVENT_TYPES: frozenset[str] = frozenset(t.value for t in AgentEventType)
