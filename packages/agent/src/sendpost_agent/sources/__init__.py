"""Where log lines come from: :class:`LogSource`, the interface the daemon's reader uses
(app.py), and its two sources: :class:`FileTail` (a file followed through rotation) and
:class:`JournalTail` (the mail entries of the systemd journal, as the same lines). Which one
runs: ``choice.py``."""

from __future__ import annotations

from typing import Protocol

from sendpost_agent.checkpoint import SourcePosition
from sendpost_agent.sources.file import FileTail
from sendpost_agent.sources.journal import JournalTail


class LogSource(Protocol):
    """Complete log lines, one step at a time, and the position just after them."""

    error: str | None
    """Why the log cannot be read right now (shown in /health), else None."""

    @property
    def position(self) -> SourcePosition | None:
        """Where the next read starts (saved as the cursor); None before the log was found."""
        ...

    def read(self) -> bytes | None:
        """The next complete lines, or None when there is nothing new right now."""
        ...

    def close(self) -> None: ...


__all__ = ["FileTail", "JournalTail", "LogSource"]
