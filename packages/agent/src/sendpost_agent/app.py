"""The composition root: the only place that builds concrete parts and wires them together.

One asyncio loop runs three things: the reader (log → parser → WAL → cursor), the shipper
(WAL → platform, acknowledgements back into the WAL) and the status server. SIGTERM and SIGINT
stop the reader, give the shipper ``shutdown-timeout`` seconds to deliver what was read, save the
cursor and the WAL marker, and end with exit status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import logging
import os
import signal
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from sendpost_agent import heartbeat
from sendpost_agent.buffer import Wal, WalPos
from sendpost_agent.checkpoint import (
    DB_NAME,
    LEGACY_NAME,
    Cursor,
    JournalPosition,
    Position,
    SourcePosition,
    StateDb,
)
from sendpost_agent.config import Settings, tls_verify
from sendpost_agent.errors import ConfigError, StateCorrupt
from sendpost_agent.http import StatusServer
from sendpost_agent.parse import DEFAULT_INTERNAL_RELAYS, LogParser, adapter
from sendpost_agent.ship import Clock, Sender, ShipLoop, SystemClock
from sendpost_agent.sources import FileTail, JournalTail, LogSource
from sendpost_agent.sources.choice import JOURNALD, Choice
from sendpost_agent.telemetry import Metrics, Status, health

log = logging.getLogger("sendpost_agent")

# Queue IDs silent for 24 h are forgotten (and orphaned held lines dropped once their hold time
# is over, which each line's time also checks): a pass over every entry, at most this often.
EXPIRE_INTERVAL = 30.0


def prepare_state_dir(path: Path) -> int:
    """Create the state directory and take its lock; returns the lock's file descriptor."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o640)
    except OSError as exc:
        raise ConfigError("state-dir", str(path), f"not usable: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError("state-dir", str(path), "in use by another running agent") from None
    return fd


class Agent:
    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        choice: Choice | None = None,
    ) -> None:
        """``choice``: the source ``run`` chose (sources/choice.py); without one, ``log-path``
        as it is (``journald`` or a file, which may appear later)."""
        self.settings = settings
        journal = settings.log_path == JOURNALD
        self.choice = choice or Choice(journal, None if journal else settings.log_path, "")
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.clock = clock or SystemClock()
        self.transport = transport
        self.mta = adapter(settings.mta)
        self.metrics = Metrics(self.registry)
        self.status = Status(log_path=self.choice.name, wal_max_bytes=settings.wal_max_bytes)
        self.stop = asyncio.Event()
        self.listening: tuple[str, int] | None = None
        self._space = asyncio.Event()
        state = settings.state_dir
        self.state_db = StateDb(state / DB_NAME, legacy=state / LEGACY_NAME)
        self.wal = Wal(state / "pending.wal", settings.wal_max_bytes, settings.wal_segment_bytes)

    # -- start-up -------------------------------------------------------------------------------

    def _load_cursor(self) -> Cursor | None:
        try:
            return self.state_db.load()
        except StateCorrupt as exc:
            moved = self.state_db.move_aside()
            log.error(
                "%s; moved aside (%s), reading the log from its start "
                "(events already sent are sent again with the same event_id)",
                exc,
                ", ".join(moved),
            )
            self.metrics.state_resets.labels("cursor").inc()
            return None

    def _pipeline(self, cursor: Cursor | None) -> LogParser:
        relays = self.settings.internal_relays or DEFAULT_INTERNAL_RELAYS
        now = dt.datetime.fromtimestamp(self.clock.wall(), dt.UTC)
        if cursor is not None and cursor.parser_state is not None:
            try:
                return self.mta.parser(
                    internal_relays=relays,
                    state=cursor.parser_state,
                    reference_time=now,
                    track_changes=True,
                    own_state=True,
                )
            except Exception as exc:
                log.error("saved correlation state unusable (%r); starting without it", exc)
                self.metrics.state_resets.labels("parser").inc()
        return self.mta.parser(internal_relays=relays, reference_time=now, track_changes=True)

    def refresh(self) -> None:
        """Copy WAL figures into the status and gauges; wake the reader when space freed."""
        wal, status = self.wal, self.status
        status.wal_events, status.wal_bytes = wal.pending_events, wal.pending_bytes
        self.metrics.wal_events.set(wal.pending_events)
        self.metrics.wal_bytes.set(wal.pending_bytes)
        if wal.pending_events == 0:
            status.waiting_since = None
        else:
            since = status.waiting_since or self.clock.wall()
            status.waiting_since = max(since, status.last_ship or 0.0)
        if not wal.full:
            self._space.set()

    def health(self) -> tuple[int, dict[str, Any]]:
        self.refresh()
        return health(self.status, self.clock.wall(), self.settings.stale_after)

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> int:
        s = self.settings
        lock = prepare_state_dir(s.state_dir)
        try:
            return await self._run()
        finally:
            os.close(lock)

    async def _run(self) -> int:
        s = self.settings
        recovery = self.wal.open()
        self.metrics.wal_repairs.inc(recovery.repairs)
        if recovery.ack_reset:
            self.metrics.state_resets.labels("wal-ack").inc()
        self.metrics.wal_capacity.set(s.wal_max_bytes)
        cursor = self._load_cursor()
        pipeline = self._pipeline(cursor)
        source = self._source(cursor.position if cursor else None)
        self.refresh()
        server = StatusServer(*s.listen, self.registry, self.health)
        self.listening = await server.start()
        log.info(
            "sendpost-agent running: log %s%s, endpoint %s, parser %s, status on http://%s:%d/health",
            self.choice.name,
            f" ({self.choice.reason})" if self.choice.reason else "",
            s.endpoint,
            f"{self.mta.name} ({self.mta.scanner})",
            *self.listening,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)
        client = httpx.AsyncClient(
            verify=tls_verify(s.endpoint, os.environ),
            timeout=s.request_timeout,
            transport=self.transport,
            limits=httpx.Limits(max_connections=s.max_in_flight),
        )
        sender = Sender(
            client, s.endpoint, s.api_key, self.metrics, self.status, self.clock,
            s.retry_initial, s.retry_max,
        )  # fmt: skip
        shipper = ShipLoop(
            self.wal, sender, self.metrics, self.status, self.clock,
            s.state_dir / "dead-letter.jsonl", s.batch_size, s.batch_wait,
            s.max_in_flight, s.auth_probe_interval, on_change=self.refresh,
        )  # fmt: skip
        reading_done = asyncio.Event()
        ship_task = asyncio.create_task(shipper.run(reading_done, s.shutdown_timeout))
        beat_task = asyncio.create_task(
            heartbeat.run(
                reading_done,
                interval=s.heartbeat_interval,
                client=client,
                url=heartbeat.heartbeat_url(s.endpoint),
                api_key=s.api_key,
                status=self.status,
                metrics=self.metrics,
                health=self.health,
                wall=self.clock.wall,
            )
        )
        try:
            await self._read(source, pipeline, shipper)
            reading_done.set()
            await ship_task
        finally:
            reading_done.set()
            beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat_task
            if not ship_task.done():
                ship_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ship_task
            source.close()
            self.state_db.close()
            self.wal.persist_ack()
            self.wal.close()
            await client.aclose()
            await server.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        log.info("sendpost-agent stopped; %d events wait in the WAL", self.wal.pending_events)
        return 0

    def _source(self, start: SourcePosition | None) -> LogSource:
        """The chosen source, from ``start`` when that is a position of the same kind (a cursor
        of the other kind: the source's start, as without a cursor)."""
        s = self.settings
        if self.choice.journal:
            if start is not None and not isinstance(start, JournalPosition):
                log.warning("the saved cursor is in %s, not the journal: reading the journal "
                            "from its start", start.path)  # fmt: skip
                start = None
            return JournalTail(start, s.journal_directory, s.read_chunk_bytes)
        if start is not None and not isinstance(start, Position):
            log.warning("the saved cursor is in the journal: reading %s from its start", s.log_path)
            start = None
        rotations = self.metrics.log_rotations
        assert self.choice.path is not None
        return FileTail(
            self.choice.path,
            start,
            s.read_chunk_bytes,
            on_rotation=lambda kind: rotations.labels(kind).inc(),
        )

    async def _read(self, source: LogSource, pipeline: LogParser, shipper: ShipLoop) -> None:
        s, wal, metrics = self.settings, self.wal, self.metrics
        saved: SourcePosition | None = source.position
        last_save = self.clock.monotonic()
        last_expire: float | None = None
        # False while a chunk's lines are consumed but their events not yet in the WAL: if that
        # fails (disk full, parser error), the cursor must not be saved past those lines.
        consistent = True

        def save() -> None:
            nonlocal saved, last_save
            position = source.position
            if position is not None:
                self.state_db.save(position, pipeline)
            saved, last_save = position, self.clock.monotonic()

        def due() -> bool:
            # at most one save per interval: a steady trickle of lines makes the reader idle
            # between reads, and each save is a transaction
            return self.clock.monotonic() - last_save >= s.checkpoint_interval

        try:
            while not self.stop.is_set():
                if wal.full:
                    metrics.reading_paused.set(1)
                    self._space.clear()
                    self.refresh()
                    await self._pause(self._space, s.poll_interval)
                    continue
                metrics.reading_paused.set(0)
                data = source.read()
                self.status.log_error = source.error
                if data is None:
                    now = dt.datetime.fromtimestamp(self.clock.wall(), dt.UTC)
                    mono = self.clock.monotonic()
                    # Hop candidates past their window become events at once; the pass that
                    # forgets queue IDs silent for 24 h (a scan of them all) runs less often.
                    forget = last_expire is None or mono - last_expire >= EXPIRE_INTERVAL
                    consistent = False
                    end = self._append(pipeline.expire(now, forget=forget))
                    consistent = True
                    if forget:
                        last_expire = mono
                    if end is not None:
                        shipper.appended(end)
                        shipper.notify()
                    metrics.observe_parse(pipeline.stats)
                    if source.position != saved and due():
                        save()
                    await self._pause(self.stop, s.poll_interval)
                    continue
                consistent = False
                end = self._append(pipeline.feed_json(data))
                consistent = True
                if end is not None:
                    shipper.appended(end)
                metrics.observe_parse(pipeline.stats)
                position = source.position
                if isinstance(position, Position):
                    self.status.log_offset = position.offset
                    metrics.log_offset.set(position.offset)
                if due():
                    save()
                shipper.notify()
                await asyncio.sleep(0)
        finally:
            if consistent:
                save()
            self.status.stopping = True

    def _append(self, events: list[str]) -> WalPos | None:
        """Events as compact ASCII JSON (their wire form) into the WAL; the end of the last."""
        if not events:
            return None
        end = self.wal.append([e.encode() for e in events])
        self.refresh()
        return end

    @staticmethod
    async def _pause(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
