"""Per-key request rate limits with the ``limits`` library (sliding window counter).

Storage is in-process memory by default; with ``SENDPOST_RATE_LIMIT_URL=redis://...`` every API
process shares the budget through Redis. The limiter uses ``limits``' own wall clock (it cannot
take ours); tests configure a small limit instead of moving time.
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string


def _storage(url: str | None) -> Storage:
    if not url:
        storage = storage_from_string("async+memory://")
    elif url.startswith(("redis://", "rediss://")):
        storage = storage_from_string("async+" + url, implementation="redispy")
    else:
        storage = storage_from_string(url)
    assert isinstance(storage, Storage)
    return storage


class RateLimiter:
    def __init__(self, spec: str, storage_url: str | None, *, namespace: str) -> None:
        self.item = parse(spec)
        self.namespace = namespace
        self.limiter = SlidingWindowCounterRateLimiter(_storage(storage_url))

    async def hit(self, key: str) -> int | None:
        """Count one request for ``key``; None when allowed, else seconds to wait (≥ 1)."""
        if await self.limiter.hit(self.item, self.namespace, key):
            return None
        stats = await self.limiter.get_window_stats(self.item, self.namespace, key)
        return max(1, math.ceil(stats.reset_time - time.time()))
