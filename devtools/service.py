"""The start/stop life cycle shared by every local stand-in (Postfix, sinks, DNS, the whole stack).

A subclass implements :meth:`start` (returning itself) and :meth:`stop` (idempotent); the ``with``
statement then starts it and always stops it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Service:
    """Something that runs in the background between ``start()`` and ``stop()``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
