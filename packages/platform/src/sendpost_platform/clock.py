"""Time, injected: everything that needs "now" takes a :class:`Clock`.

Production code uses :class:`SystemClock`; tests use :class:`ManualClock` and step it, so no test
sleeps to make time pass. All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class ManualClock:
    """A clock that moves only when told to (for tests and simulations)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2026, 2, 19, 12, 0, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, seconds: float = 0.0, **kwargs: float) -> dt.datetime:
        """Move forward by ``seconds`` (plus any ``timedelta`` keyword: minutes=, hours=...)."""
        self._now += dt.timedelta(seconds=seconds, **kwargs)
        return self._now

    def set(self, value: dt.datetime) -> None:
        self._now = value.astimezone(dt.UTC)
