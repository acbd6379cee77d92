"""The wire contract shared by the SendPost agent and platform.

Only the standard library is used here: the agent installs this package without any of the
platform's dependencies.
"""

from sendpost_wire.events import AGENT_EVENT_TYPES, AgentEventType, EventType
from sendpost_wire.schema import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_DEPTH,
    MAX_LENGTHS,
    AgentEvent,
    BatchError,
    EventValues,
    FieldError,
    Rejected,
    check_batch,
    parse_batch,
    split_batch,
    split_values,
    text_problem,
    validate_event,
)

__all__ = [
    "AGENT_EVENT_TYPES",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_EVENT_DEPTH",
    "MAX_LENGTHS",
    "AgentEvent",
    "AgentEventType",
    "BatchError",
    "EventType",
    "EventValues",
    "FieldError",
    "Rejected",
    "check_batch",
    "parse_batch",
    "split_batch",
    "split_values",
    "text_problem",
    "validate_event",
]
