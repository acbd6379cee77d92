"""Per-key request rate limits with the ``limits`` library (sliding window counter).

Storage is in-process memory by default; with ``SENDPOST_RATE_LIMIT_URL=redis://...`` every API
process shares the budget through Redis. The limiter uses ``limits``' own wall clock (it cannot
take ours); tests configure a small limit instead of moving time.

A shared storage that fails (Redis down, unreachable, timing out after
:data:`STORAGE_TIMEOUT` seconds) never fails the request: the limiter counts in this process's
memory instead until the storage answers again, and says so in the log at most once per
:data:`WARN_EVERY` seconds. A rate limit is protection, not the product; refusing every agent's
events because the limiter's storage is down would turn a Redis outage into a platform outage.
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

log = logging.getLogger("sendpost_platform.api")

STORAGE_TIMEOUT = 1.0
WARN_EVERY = 60.0


def _storage(url: str | None) -> Storage:
    if not url:
        storage = storage_from_string("async+memory://")
    elif url.startswith(("redis://", "rediss://")):
        storage = storage_from_string(
            "async+" + url,
            implementation="redispy",
            socket_connect_timeout=STORAGE_TIMEOUT,
            socket_timeout=STORAGE_TIMEOUT,
        )
    else:
        storage = storage_from_string(url)
    assert isinstance(storage, Storage)
    return storage


class RateLimiter:
    def __init__(self, spec: str, storage_url: str | None, *, namespace: str) -> None:
        self.item = parse(spec)
        self.namespace = namespace
        self.storage_url = storage_url
        self.limiter = SlidingWindowCounterRateLimiter(_storage(storage_url))
        self._local = (
            SlidingWindowCounterRateLimiter(_storage(None)) if storage_url else self.limiter
        )
        self._warned_at = -math.inf
        self.fallbacks = 0
        """Requests counted in memory because the shared storage failed (for tests, metrics)."""

    async def hit(self, key: str) -> int | None:
        """Count one request for ``key``; None when allowed, else seconds to wait (≥ 1)."""
        try:
            return await self._hit(self.limiter, key)
        except Exception as exc:
            if self.limiter is self._local:
                raise
            self.fallbacks += 1
            self._warn(exc)
            return await self._hit(self._local, key)

    async def _hit(self, limiter: SlidingWindowCounterRateLimiter, key: str) -> int | None:
        if await limiter.hit(self.item, self.namespace, key):
            return None
        stats = await limiter.get_window_stats(self.item, self.namespace, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at < WARN_EVERY:
            return
        self._warned_at = now
        log.warning(
            "rate-limit storage %s failed (%s: %s); counting in this process's memory "
            "until it answers again",
            self.storage_url,
            type(exc).__name__,
            str(exc)[:200],
        )
