"""The worker's loop (`Worker.run`): each job in a loop of its own, so one job's long pass does
not hold back another's, an idle job waits its interval, a failing job neither stops the others
nor spins, and `stop` ends every loop and closes the jobs."""

from __future__ import annotations

import asyncio
import time

from sendpost_platform.worker import Worker


class _Job:
    """A job that records when its passes start; ``work`` says what each pass returns."""

    def __init__(self, name: str, *, seconds: float = 0.0, busy: bool = True) -> None:
        self.name = name
        self.seconds = seconds
        self.busy = busy
        self.starts: list[float] = []
        self.closed = False

    async def run_once(self) -> int:
        self.starts.append(time.monotonic())
        await asyncio.sleep(self.seconds)
        return 1 if self.busy else 0

    async def close(self) -> None:
        self.closed = True


class _Failing(_Job):
    async def run_once(self) -> int:
        self.starts.append(time.monotonic())
        raise RuntimeError("the database went away")


async def _run_for(worker: Worker, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_long_pass_of_one_job_does_not_hold_back_another() -> None:
    """While one job spends 0.6 s in a single pass, a busy job with 10 ms passes keeps running
    (dozens of passes), instead of one pass per pass of the slow job."""
    slow = _Job("ingest", seconds=0.6)
    fast = _Job("webhooks", seconds=0.01)
    await _run_for(Worker([slow, fast], idle_interval=0.2), 0.5)
    assert len(slow.starts) == 1
    assert len(fast.starts) >= 15
    assert slow.closed
    assert fast.closed


async def test_an_idle_job_waits_its_interval_while_another_is_busy() -> None:
    """A job with nothing to do is asked again after ``idle_interval``, not after every pass of
    a busy job: over 0.7 s with a 0.25 s interval it runs at most 4 times while the busy job
    runs many more."""
    idle = _Job("relay", busy=False)
    busy = _Job("webhooks", seconds=0.005)
    await _run_for(Worker([idle, busy], idle_interval=0.25), 0.7)
    assert 2 <= len(idle.starts) <= 4
    assert len(busy.starts) >= 30
    gaps = [b - a for a, b in zip(idle.starts, idle.starts[1:], strict=False)]
    assert min(gaps) >= 0.2


async def test_a_failing_job_is_retried_after_the_interval_and_others_go_on() -> None:
    """A job whose pass raises is logged and retried after ``idle_interval`` (no busy loop);
    the other jobs keep running, and the worker still stops and closes every job."""
    failing = _Failing("partitions")
    busy = _Job("ingest", seconds=0.005)
    await _run_for(Worker([failing, busy], idle_interval=0.2), 0.5)
    assert 2 <= len(failing.starts) <= 4
    assert len(busy.starts) >= 20
    assert failing.closed
    assert busy.closed
