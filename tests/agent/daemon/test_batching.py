"""When a partial batch leaves: ``batch-wait`` counts from when its first event entered the WAL."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from sendpost_agent.buffer import Wal
from sendpost_agent.ship import Sender, ShipLoop
from sendpost_agent.telemetry import Metrics, Status


class StepClock:
    """A clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def _loop(tmp_path: Path, clock: StepClock) -> tuple[Wal, ShipLoop]:
    wal = Wal(tmp_path / "wal", 10**8, 10**7)
    wal.open()
    metrics, status = Metrics(CollectorRegistry()), Status(log_path="mail.log")
    client = httpx.AsyncClient()  # never used: batches are only taken, not sent
    sender = Sender(client, "http://127.0.0.1:9/", "key", metrics, status, clock)
    loop = ShipLoop(wal, sender, metrics, status, clock, tmp_path / "dead", 100, 5.0)
    return wal, loop


def _append(wal: Wal, loop: ShipLoop, count: int) -> None:
    end = wal.append([b'{"n":%d}' % i for i in range(count)])
    assert end is not None
    loop.appended(end)


def test_backlog_tail_leaves_without_waiting_again(tmp_path: Path) -> None:
    """Events appended 10 s ago (a backlog the shipper only now reaches) are sent at once:
    100, then the remaining 50, without a further 5 s wait."""
    clock = StepClock()
    wal, loop = _loop(tmp_path, clock)
    _append(wal, loop, 150)
    clock.now += 10
    first, second = loop._take(flush=False), loop._take(flush=False)
    assert (100, 50) == (
        len(first.records) if first else 0,
        len(second.records) if second else 0,
    )


def test_fresh_partial_batch_waits_batch_wait(tmp_path: Path) -> None:
    """A partial batch of events appended just now waits until 5 s after their append."""
    clock = StepClock()
    wal, loop = _loop(tmp_path, clock)
    _append(wal, loop, 30)
    clock.now += 4.9
    early = loop._take(flush=False)
    clock.now += 0.1
    due = loop._take(flush=False)
    assert (None, 30) == (early, len(due.records) if due else 0)
