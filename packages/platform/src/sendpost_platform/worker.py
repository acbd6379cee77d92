"""The background worker: runs a list of jobs in a loop, with an injected clock.

A job is anything with a ``name`` and ``async def run_once() -> int`` returning how much work it
did (0 = nothing to do). :func:`build_jobs` is the one place that lists them; to add a job (e.g.
the relay), append it there. Tests call ``await worker.run_once()`` (one pass over every job)
instead of running the loop, so they never sleep.

``serve`` runs the worker inside the API process (lifespan task); ``sendpost-platform worker``
runs it alone. Several workers against one PostgreSQL share the work: each job claims its rows
with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Protocol

from sendpost_platform.clock import Clock
from sendpost_platform.config import Settings
from sendpost_platform.processing import IngestProcessor
from sendpost_platform.relay_worker import RelayJob
from sendpost_platform.store import Store
from sendpost_platform.store.partitions import PartitionJob, Retention
from sendpost_platform.webhook_dispatch import WebhookDispatcher

log = logging.getLogger("sendpost_platform.worker")


class Job(Protocol):
    name: str

    async def run_once(self) -> int: ...


def build_jobs(settings: Settings, store: Store, clock: Clock) -> list[Job]:
    """Every background job of the platform, in the order one pass runs them."""
    jobs: list[Job] = [
        IngestProcessor(store, clock, claim_batches=settings.worker_claim_batches),
        RelayJob(store, settings, clock),
        PartitionJob(
            store,
            clock,
            Retention(
                events=dt.timedelta(seconds=settings.event_retention),
                batches=dt.timedelta(seconds=settings.ingest_batch_retention),
            ),
        ),
        WebhookDispatcher(store, settings, clock),
    ]
    return jobs


class Worker:
    def __init__(self, jobs: Sequence[Job], *, idle_interval: float = 0.5) -> None:
        self.jobs = list(jobs)
        self.idle_interval = idle_interval

    async def run_once(self) -> int:
        """One pass: each job once; returns the total work done."""
        done = 0
        for job in self.jobs:
            done += await job.run_once()
        return done

    async def drain(self, *, max_passes: int = 1000) -> int:
        """Run passes until a pass finds nothing to do (for tests and shutdown)."""
        total = 0
        for _ in range(max_passes):
            done = await self.run_once()
            total += done
            if done == 0:
                break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; waits ``idle_interval`` only after an idle pass."""
        while not stop.is_set():
            try:
                done = await self.run_once()
            except Exception:
                log.exception("worker pass failed; retrying after %ss", self.idle_interval)
                done = 0
            if done == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.idle_interval)
        await self.close()

    async def close(self) -> None:
        """Let each job that holds resources (connections, claims) give them back, 10 s each."""
        for job in self.jobs:
            close = getattr(job, "close", None)
            if close is None:
                continue
            try:
                await asyncio.wait_for(close(), 10)
            except Exception:
                log.exception("closing job %s failed", job.name)
