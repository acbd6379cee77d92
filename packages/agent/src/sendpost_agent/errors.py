"""The agent's errors, one tree, each mapped once to a decision.

::

    AgentError
    ├── ConfigError          bad or missing setting → one line naming key and value, exit 2
    ├── LogUnreadable        the log cannot be opened → exit at start, unhealthy while running
    ├── StateCorrupt         cursor or WAL marker unreadable → logged, state reset safely
    └── ShipError            one batch could not be delivered
        ├── Transient        network error, timeout, 408, 429, 5xx but 501 → retried (stamina)
        ├── KeyRejected      401/403 → stop shipping, keep the data, probe periodically
        ├── BatchTooLarge    413 → split the batch in two and send the halves
        └── BatchRejected    any other 4xx (and 501) → dead-letter file, counted (only the
                             events a 400 names by index, when it names some; the rest resent)

The decision for an HTTP answer is taken in one place: :func:`sendpost_agent.ship.classify`.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """A setting is missing or invalid; the message names the key and the value."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        super().__init__(f"config: {key}={value!r}: {reason}")
        self.key = key
        self.value = value
        self.reason = reason


class LogUnreadable(AgentError):
    """The log file cannot be read (missing, permission denied)."""


class StateCorrupt(AgentError):
    """A state file exists but cannot be decoded."""


class ShipError(AgentError):
    """One batch could not be delivered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Transient(ShipError):
    """Worth retrying: the same request may succeed later."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class KeyRejected(ShipError):
    """The endpoint refused the API key (401/403)."""


class BatchTooLarge(ShipError):
    """The endpoint refused the batch for its size (413)."""


class BatchRejected(ShipError):
    """The endpoint refused the batch's content; resending it cannot help.

    ``indexes``: the events the answer named as bad (the platform's 400 names each by index),
    or None when it blamed the batch as a whole."""

    def __init__(
        self, message: str, status: int | None = None, indexes: frozenset[int] | None = None
    ) -> None:
        super().__init__(message, status)
        self.indexes = indexes
