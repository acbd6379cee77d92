"""Where log lines come from. Only the file source exists; journald would be a second one."""

from __future__ import annotations

from typing import Protocol

from sendpost_agent.checkpoint import Position
from sendpost_agent.sources.file import FileTail


class LogSource(Protocol):
    """Complete log lines, one step at a time, and the position just after them."""

    error: str | None

    @property
    def position(self) -> Position | None: ...

    def read(self) -> bytes | None: ...

    def close(self) -> None: ...


__all__ = ["FileTail", "LogSource"]
