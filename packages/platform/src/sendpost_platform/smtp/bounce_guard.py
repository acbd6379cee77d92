"""Limits that keep the bounce listener, which anyone can reach without authentication, from
starving the process that hosts it (``serve`` runs it on the HTTP API's event loop).

- **Connection caps** (:class:`ConnectionGate`): at most ``max_connections`` open sessions per
  process and ``max_per_address`` per client address (an IPv4 address; an IPv6 /64, the block
  one subscriber usually holds; IPv4-mapped IPv6 counts as IPv4). A connection over either cap
  is answered ``421 4.7.0`` and closed at once by a :class:`Doorman`, a bare protocol that
  costs one accept and one write: no SMTP session object, no handler task, no file descriptor
  kept. So the descriptors the listener can hold are bounded by the cap, whatever the flood.
- **Idle timeout**: a session that sends nothing for ``idle_timeout`` seconds (counted from the
  last bytes received, so a slow but moving DATA transfer is not cut) gets ``421 4.4.2`` and is
  closed.
- **Session limit**: no session lasts longer than ``session_limit`` seconds, however busy it
  keeps itself (NOOP, one byte a minute...): ``421 4.4.2`` and closed.
- **Store pacing** (:class:`Pacer`): the store calls sessions cause (a recipient check, a
  message) are spaced to at most ``store_rate`` a second for the whole process; over that rate,
  replies wait. However many sessions keep busy, the bounce side's load on the event loop, the
  threads and the database stays bounded (200 a second is far above real bounce traffic).
- **Quiet refusals** (:class:`RefusalLog`): the first refusal is logged, the following ones are
  counted and summarised in one line per ``interval``; and :class:`LogBudget` caps how many
  lines per interval the bounce loggers (ours and aiosmtpd's ``mail.log``) may write, noting on
  the next line let through how many were suppressed. A flood costs a few log lines a minute.

Closing never waits on a peer that does not read: when a farewell cannot be written whole at
once, the connection is aborted instead of closed.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP

log = logging.getLogger("sendpost_platform.bounces")

REFUSED_TOTAL = "too many connections"
REFUSED_ADDRESS = "too many connections from your address"


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """The listener's limits (``SENDPOST_BOUNCE_MAX_CONNECTIONS`` ... in the settings)."""

    max_connections: int = 200
    max_per_address: int = 20
    idle_timeout: float = 60.0
    session_limit: float = 600.0
    store_rate: float = 200.0


class Pacer:
    """Spaces calls ``1 / rate`` seconds apart, process-wide and in arrival order: a caller
    over the rate waits (asleep, costing nothing) for its turn."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def client_key(peer: Any) -> str:
    """The unit the per-address cap counts: an IPv4 address, or the /64 of an IPv6 one."""
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return str(host)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ConnectionGate:
    """Counts open sessions, in total and per client key."""

    def __init__(self, max_connections: int, max_per_address: int) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.total = 0
        self.by_key: collections.Counter[str] = collections.Counter()

    def admit(self, key: str) -> str | None:
        """Take a slot for ``key`` and return None, or return why not (nothing taken)."""
        if self.total >= self.max_connections:
            return REFUSED_TOTAL
        if self.by_key[key] >= self.max_per_address:
            return REFUSED_ADDRESS
        self.total += 1
        self.by_key[key] += 1
        return None

    def release(self, key: str) -> None:
        self.total -= 1
        self.by_key[key] -= 1
        if self.by_key[key] <= 0:
            del self.by_key[key]


class RefusalLog:
    """Logs the first refused connection at once, then at most one summary per ``interval``:
    how many were refused, why, and the addresses refused most."""

    def __init__(self, *, interval: float = 60.0, now: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._now = now
        self._last: float | None = None
        self._reasons: collections.Counter[str] = collections.Counter()
        self._keys: collections.Counter[str] = collections.Counter()
        self._timer: asyncio.TimerHandle | None = None

    def refused(self, key: str, reason: str) -> None:
        now = self._now()
        if self._last is None or now - self._last >= self.interval:
            self.flush()
            self._last = now
            log.warning(
                "refused a connection from %s: %s (further refusals are summarised every %g s)",
                key,
                reason,
                self.interval,
            )
            return
        self._reasons[reason] += 1
        self._keys[key] += 1
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._last + self.interval - now, self.flush)

    def flush(self) -> None:
        """Log the summary of refusals not logged yet (also called when the server stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._reasons:
            return
        total = sum(self._reasons.values())
        reasons = ", ".join(f"{n} {r}" for r, n in self._reasons.most_common())
        top = ", ".join(f"{k} ({n})" for k, n in self._keys.most_common(3))
        log.warning("refused %d more connections: %s; most from %s", total, reasons, top)
        self._reasons.clear()
        self._keys.clear()
        self._last = self._now()


class LogBudget(logging.Filter):
    """A logger filter letting through at most ``lines`` records per ``interval`` seconds; the
    first record let through after a suppression says how many were dropped."""

    def __init__(
        self, lines: int = 50, interval: float = 60.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.lines = lines
        self.interval = interval
        self._now = now
        self._window = -interval
        self._passed = 0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._now()
        if now - self._window >= self.interval:
            self._window = now
            self._passed = 0
        if self._passed >= self.lines:
            self.suppressed += 1
            return False
        self._passed += 1
        if self.suppressed:
            record.msg = f"({self.suppressed} log lines suppressed before this one) {record.msg}"
            self.suppressed = 0
        return True


BUDGETED_LOGGERS = ("mail.log", "sendpost_platform.bounces")


def budget_bounce_logs() -> None:
    """Put a :class:`LogBudget` on aiosmtpd's and the bounce processor's loggers (once; the CLI
    calls this when it runs the bounce processor)."""
    for name in BUDGETED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, LogBudget) for f in logger.filters):
            logger.addFilter(LogBudget())


def hang_up(transport: asyncio.BaseTransport, farewell: bytes) -> None:
    """Write ``farewell`` and close; abort when it could not be written at once (a peer that
    does not read must not keep the descriptor)."""
    assert isinstance(transport, asyncio.WriteTransport)
    if transport.is_closing():
        return
    try:
        transport.write(farewell)
    except (OSError, RuntimeError):
        transport.abort()
        return
    if transport.get_write_buffer_size():
        transport.abort()
    else:
        transport.close()


class GuardedSMTP(SMTP):
    """aiosmtpd's SMTP session with a true idle timeout, a session time limit and a release of
    its gate slot when the connection ends."""

    def __init__(
        self, handler: Any, *, limits: Limits, on_close: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(handler, timeout=limits.idle_timeout, **kwargs)
        self._limits = limits
        self._on_close: Callable[[], None] | None = on_close
        self._session_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._session_timer is None:
            self._session_timer = self.loop.call_later(
                self._limits.session_limit, self._session_expired
            )
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._reset_timeout()
        super().data_received(data)

    def connection_lost(self, error: Exception | None) -> None:
        if self._session_timer is not None:
            self._session_timer.cancel()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
        super().connection_lost(error)

    def _timeout_cb(self) -> None:  # aiosmtpd's idle-timer callback
        self._farewell("4.4.2 Idle timeout, closing connection")

    def _session_expired(self) -> None:
        self._farewell("4.4.2 Session time limit exceeded, closing connection")

    def _farewell(self, text: str) -> None:
        if self.transport is not None:
            hang_up(self.transport, f"421 {text}\r\n".encode())


class Doorman(asyncio.Protocol):
    """The listener's protocol factory product: admits a connection into a :class:`GuardedSMTP`
    session (handing the transport over) or answers ``421 4.7.0`` and closes it."""

    def __init__(
        self,
        gate: ConnectionGate,
        refusals: RefusalLog,
        session: Callable[[Callable[[], None]], SMTP],
        hostname: str,
    ) -> None:
        self._gate = gate
        self._refusals = refusals
        self._session = session
        self._hostname = hostname

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        key = client_key(transport.get_extra_info("peername"))
        refusal = self._gate.admit(key)
        if refusal is not None:
            self._refusals.refused(key, refusal)
            hang_up(transport, f"421 4.7.0 {self._hostname} {refusal}, try later\r\n".encode())
            return
        smtp = self._session(lambda: self._gate.release(key))
        transport.set_protocol(smtp)
        smtp.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """A refused connection ended (admitted ones report to their session instead)."""
