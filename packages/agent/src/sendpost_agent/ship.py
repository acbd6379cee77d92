"""Shipping events from the WAL to the platform: one HTTP call with a declared retry policy, and
the loop that batches, keeps several requests in flight and acknowledges in WAL order.

Decisions on an answer (:func:`classify`) and on retrying (:func:`retry_policy`) are each made in
one function; the error tree is in :mod:`sendpost_agent.errors`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import email.utils
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import httpx
import stamina

from sendpost_agent.buffer import Record, Wal, WalPos
from sendpost_agent.errors import (
    BatchRejected,
    BatchTooLarge,
    KeyRejected,
    ShipError,
    Transient,
)
from sendpost_agent.telemetry import Metrics, Status

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 3600.0


class Clock(Protocol):
    def wall(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


def classify(response: httpx.Response, now: float) -> ShipError | None:
    """None for a 2xx, otherwise the error that decides what happens to the batch."""
    code = response.status_code
    if 200 <= code < 300:
        return None
    text = f"HTTP {code}: {response.text[:200]}"
    if code in (401, 403):
        return KeyRejected(text, code)
    if code == 413:
        return BatchTooLarge(text, code)
    if code in (408, 429) or (500 <= code < 600 and code != 501):
        return Transient(text, code, parse_retry_after(response.headers.get("retry-after"), now))
    return BatchRejected(text, code, named_events(response) if code == 400 else None)


def named_events(response: httpx.Response) -> frozenset[int] | None:
    """The event indexes a 400 names (``{"errors": [{"index": 3, ...}]}``), or None when it
    names none or also blames the batch itself (an error without an index)."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return None
    if not isinstance(errors, list) or not errors:
        return None
    indexes: list[int] = []
    for error in errors:
        index = error.get("index") if isinstance(error, dict) else None
        if type(index) is not int or index < 0:
            return None
        indexes.append(index)
    return frozenset(indexes)


def retry_policy(exc: Exception) -> bool | float:
    """What is retried: network errors, timeouts and :class:`Transient` answers.

    A ``Retry-After`` delay replaces the exponential backoff for that attempt.
    """
    if isinstance(exc, Transient):
        if exc.retry_after is not None and exc.retry_after > 0:
            return exc.retry_after
        return True
    return isinstance(exc, httpx.TransportError)


def body_of(payloads: list[bytes]) -> bytes:
    return b'{"events":[' + b",".join(payloads) + b"]}"


class Sender:
    """POSTs one batch body; retries transient failures forever with backoff (stamina)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoint: str,
        api_key: str,
        metrics: Metrics,
        status: Status,
        clock: Clock,
        wait_initial: float = 1.0,
        wait_max: float = 60.0,
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.api_key = api_key
        self.metrics = metrics
        self.status = status
        self.clock = clock
        self.wait_initial = wait_initial
        self.wait_max = wait_max

    async def post_once(self, body: bytes) -> None:
        try:
            response = await self.client.post(
                self.endpoint,
                content=body,
                headers={"X-SP-Event-ApiKey": self.api_key, "Content-Type": "application/json"},
            )
            error = classify(response, self.clock.wall())
        except httpx.TransportError as exc:
            self._failed("transient", f"{type(exc).__name__}: {exc}")
            raise
        if error is not None:
            reason = {
                Transient: "transient",
                KeyRejected: "key_rejected",
                BatchTooLarge: "too_large",
            }.get(type(error), "rejected")
            self._failed(reason, str(error))
            raise error

    def _failed(self, reason: str, message: str) -> None:
        self.metrics.batches_failed.labels(reason).inc()
        self.status.last_error = message
        log.warning("batch not delivered: %s", message)

    async def send(self, body: bytes) -> None:
        """Deliver or raise a non-transient :class:`ShipError`."""
        async for attempt in stamina.retry_context(
            on=retry_policy,
            attempts=None,
            timeout=None,
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
            wait_jitter=min(1.0, self.wait_initial),
        ):
            with attempt:
                if attempt.num > 1:
                    self.metrics.retries.inc()
                await self.post_once(body)


@dataclasses.dataclass
class Batch:
    seq: int
    records: list[Record]


class ShipLoop:
    """Takes batches from the WAL, sends up to ``max_in_flight`` at once, acks in order."""

    def __init__(
        self,
        wal: Wal,
        sender: Sender,
        metrics: Metrics,
        status: Status,
        clock: Clock,
        dead_letter: Path,
        batch_size: int = 100,
        batch_wait: float = 5.0,
        max_in_flight: int = 4,
        probe_interval: float = 60.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.wal, self.sender, self.metrics, self.status = wal, sender, metrics, status
        self.clock, self.dead_letter = clock, dead_letter
        self.batch_size, self.batch_wait = batch_size, batch_wait
        self.max_in_flight, self.probe_interval = max_in_flight, probe_interval
        self.on_change = on_change or (lambda: None)
        self._wake = asyncio.Event()
        self._staged: list[Record] = []
        self._staged_since = 0.0
        self._seq = 0
        self._ack_next = 0
        self._done: dict[int, Batch] = {}
        self._redo: list[Batch] = []
        self._inflight: dict[asyncio.Task[bool], Batch] = {}
        self._probe_at: float | None = None
        self._last_persist = 0.0
        # (end of an append, when it happened), oldest first: a partial batch waits batch_wait
        # from when its first event entered the WAL, not from when this loop got to it.
        self._appends: collections.deque[tuple[WalPos, float]] = collections.deque()

    def notify(self) -> None:
        self._wake.set()

    def appended(self, end: WalPos) -> None:
        """Records up to ``end`` were appended to the WAL just now."""
        if len(self._appends) < 10_000:  # beyond: later records count from when they are read
            self._appends.append((end, self.clock.monotonic()))

    def _appended_at(self, end: WalPos) -> float:
        """When the record ending at ``end`` was appended (now, if that is not known: it was
        written before this start)."""
        marks = self._appends
        while marks and marks[0][0] < end:
            marks.popleft()
        return marks[0][1] if marks else self.clock.monotonic()

    @property
    def idle(self) -> bool:
        return not (self._inflight or self._redo or self._staged or self.wal.unread)

    def _take(self, flush: bool) -> Batch | None:
        if self._redo:
            return self._redo.pop(0)
        if len(self._staged) < self.batch_size:
            had = bool(self._staged)
            self._staged += self.wal.read(self.batch_size - len(self._staged))
            if self._staged and not had:
                self._staged_since = self._appended_at(self._staged[0].end)
        if not self._staged:
            return None
        waited = self.clock.monotonic() - self._staged_since
        if len(self._staged) < self.batch_size and not flush and waited < self.batch_wait:
            return None
        batch = Batch(self._seq, self._staged)
        self._seq += 1
        self._staged = []
        return batch

    async def run(self, stop: asyncio.Event, shutdown_timeout: float) -> None:
        deadline: float | None = None
        try:
            while True:
                now = self.clock.monotonic()
                if stop.is_set():
                    deadline = deadline or now + shutdown_timeout
                    if self.idle or now >= deadline or self._probe_at is not None:
                        break
                self._launch(flush=stop.is_set())
                timeout = 0.5
                if self._staged and len(self._inflight) < self.max_in_flight:
                    timeout = max(0.0, self._staged_since + self.batch_wait - now)
                if self._probe_at is not None:
                    timeout = max(0.0, min(timeout, self._probe_at - now))
                if deadline is not None:
                    timeout = max(0.0, min(timeout, deadline - now))
                await self._wait(timeout, stop)
        finally:
            for task in self._inflight:
                task.cancel()
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
            self.wal.persist_ack()

    def _launch(self, flush: bool) -> None:
        if self._probe_at is not None:
            if self.clock.monotonic() < self._probe_at or self._inflight:
                return
            batch = self._take(flush=True)
            if batch is not None:
                log.info("probing the endpoint with the rejected key")
                self._probe_at = self.clock.monotonic() + self.probe_interval
                self._start(batch)
            return
        while len(self._inflight) < self.max_in_flight:
            batch = self._take(flush)
            if batch is None:
                return
            self._start(batch)

    def _start(self, batch: Batch) -> None:
        task = asyncio.create_task(self._deliver(batch.records))
        self._inflight[task] = batch

    async def _wait(self, seconds: float, stop: asyncio.Event) -> None:
        waiters: set[asyncio.Future[object]] = set(self._inflight)  # type: ignore[arg-type]
        wake = asyncio.ensure_future(self._wake.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait(
                waiters | {wake, stopped}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            wake.cancel()
            stopped.cancel()
        self._wake.clear()
        for task in [t for t in self._inflight if t.done()]:
            batch = self._inflight.pop(task)
            if task.cancelled() or task.exception() is not None or not task.result():
                if task.exception() is not None:
                    log.error("unexpected error shipping a batch", exc_info=task.exception())
                self._redo.append(batch)
                self._redo.sort(key=lambda b: b.seq)
            else:
                self._finished(batch)
        del done

    def _finished(self, batch: Batch) -> None:
        self._done[batch.seq] = batch
        while self._ack_next in self._done:
            b = self._done.pop(self._ack_next)
            self.wal.ack(b.records[-1].end, len(b.records))
            self._ack_next += 1
        now = self.clock.monotonic()
        if now - self._last_persist >= 0.5 or self.wal.full:
            self.wal.persist_ack()
            self._last_persist = now
        self.on_change()

    async def _deliver(self, records: list[Record]) -> bool:
        """True when the records are done with (2xx or dead-lettered); False to keep them."""
        try:
            await self.sender.send(body_of([r.payload for r in records]))
        except KeyRejected:
            if self._probe_at is None:
                log.error("the endpoint rejects the API key; shipping stops until it works")
                self._probe_at = self.clock.monotonic() + self.probe_interval
            self.status.key_rejected = True
            self.metrics.key_rejected.set(1)
            return False
        except BatchTooLarge as exc:
            if len(records) == 1:
                self._dead_letter(records, exc)
                return True
            half = len(records) // 2
            log.info("batch of %d too large; sending it in two halves", len(records))
            return await self._deliver(records[:half]) and await self._deliver(records[half:])
        except BatchRejected as exc:
            named = exc.indexes
            if named is None or len(records) <= 1 or max(named) >= len(records):
                self._dead_letter(records, exc)
                return True
            # Only the events the endpoint named are bad: set them aside, send the others.
            self._dead_letter([r for i, r in enumerate(records) if i in named], exc)
            rest = [r for i, r in enumerate(records) if i not in named]
            return not rest or await self._deliver(rest)
        self._probe_at = None
        self.status.key_rejected = False
        self.metrics.key_rejected.set(0)
        now = self.clock.wall()
        self.status.last_ship = now
        self.status.last_error = None
        self.metrics.last_ship.set(now)
        self.metrics.batches_sent.inc()
        self.metrics.events_shipped.inc(len(records))
        return True

    def _dead_letter(self, records: list[Record], exc: ShipError) -> None:
        meta = {"at": self.clock.wall(), "status": exc.status, "error": str(exc)[:500]}
        prefix = json.dumps(meta, separators=(",", ":")).encode()[:-1] + b',"event":'
        lines = [prefix + r.payload + b"}\n" for r in records]
        fd = os.open(self.dead_letter, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            view = memoryview(b"".join(lines))
            while view:  # a short write (disk full) must raise, not release the events
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.metrics.dead_lettered.inc(len(records))
        log.error("%d events dead-lettered to %s: %s", len(records), self.dead_letter, exc)
