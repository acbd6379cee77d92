"""Throttling of failed key checks per client address.

API keys are long random strings, so guessing one is hopeless; what an unthrottled stream of
wrong keys costs is a database look-up each and a log full of noise. After
``SENDPOST_AUTH_FAILURE_LIMIT`` failed checks (any of the three API keys, the dashboard's
header or its sign-in form) from one client address, that address gets 429 with
``Retry-After`` before any look-up until the window has room again; requests with a right key
from other addresses are not affected.

Counted in this process's memory (``limits``' moving window): each API process has its own
budget, which bounds the cost per process — the point of it. Behind a reverse proxy the
address is the proxy's unless uvicorn is told to trust ``X-Forwarded-For``
(``--forwarded-allow-ips``).
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import HTTPConnection

from sendpost_platform.api.deps import AppContext
from sendpost_platform.errors import RateLimited

_EXTRA = "auth.failures"


class FailedAuthThrottle:
    def __init__(self, spec: str) -> None:
        self.item = parse(spec)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, address: str) -> int | None:
        """Seconds this address must wait before its keys are checked again, or None."""
        if self.limiter.test(self.item, address):
            return None
        stats = self.limiter.get_window_stats(self.item, address)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def failed(self, address: str) -> None:
        self.limiter.hit(self.item, address)


def throttle(ctx: AppContext) -> FailedAuthThrottle:
    found = ctx.extras.get(_EXTRA)
    if found is None:
        found = ctx.extras[_EXTRA] = FailedAuthThrottle(ctx.settings.auth_failure_limit)
    assert isinstance(found, FailedAuthThrottle)
    return found


def client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client is not None else "unknown"


def wait(ctx: AppContext, connection: HTTPConnection) -> int | None:
    """Seconds this client must wait before its keys are checked again, or None."""
    return throttle(ctx).retry_after(client_address(connection))


def check(ctx: AppContext, connection: HTTPConnection) -> None:
    """Raise 429 when this client has failed too many key checks recently."""
    wait_for = wait(ctx, connection)
    if wait_for is not None:
        raise RateLimited("too many failed key checks from this address", retry_after=wait_for)


def failed(ctx: AppContext, connection: HTTPConnection) -> None:
    throttle(ctx).failed(client_address(connection))
