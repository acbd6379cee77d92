"""Group commit for ingested batches: concurrent requests share one durable transaction.

Each request calls :meth:`GroupCommitter.submit` and waits. If no flush is running, the caller
starts one (a task, so a cancelled request cannot strand the others): it takes everything
queued, writes it in one transaction in a worker thread (one INSERT of the raw bodies, provider
``agent_last_seen_at``, COMMIT), resolves every waiter, and repeats while requests queued up
meanwhile. ``agent_last_seen_at`` has a resolution of one second: a provider this object set it
for less than a second ago (by the app's clock, in a committed transaction) is not touched
again, which is what the UPDATE's own condition would decide, minus the statement.

A request is answered only after the transaction holding its batch committed (SQLite: WAL
fsynced, ``synchronous=FULL``; PostgreSQL: ``synchronous_commit``), so a 200 always means
"durably stored". If the commit fails, every request of the group gets the error (answered
503; the agent retries).

No long-lived background task is involved: the flush task ends when the queue is empty, so the
object works under any event loop (tests create many).
"""

from __future__ import annotations

import asyncio
import datetime as dt

from sendpost_platform.clock import Clock
from sendpost_platform.store import Store
from sendpost_platform.store import ingest as ingest_store
from sendpost_platform.store import providers as provider_store
from sendpost_platform.store.providers import AGENT_SEEN_RESOLUTION

MAX_GROUP = 256


class GroupCommitter:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._queue: list[tuple[ingest_store.IncomingBatch, asyncio.Future[int]]] = []
        self._flushing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen_at: dict[int, dt.datetime] = {}
        """provider ID → when this object last committed its ``agent_last_seen_at``."""
        self.groups = 0
        """Transactions committed (for tests and the benchmark)."""

    async def submit(self, batch: ingest_store.IncomingBatch) -> int:
        """Store ``batch`` durably; returns its ID once committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, future))
        if not self._flushing:
            self._flushing = True
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                await self._flush(group)
        finally:
            self._flushing = False

    async def _flush(
        self, group: list[tuple[ingest_store.IncomingBatch, asyncio.Future[int]]]
    ) -> None:
        items = [item for item, _ in group]
        try:
            ids = await asyncio.to_thread(self._write, items)
        except BaseException as exc:
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.groups += 1
        for (_, future), batch_id in zip(group, ids, strict=True):
            if not future.done():
                future.set_result(batch_id)

    def _write(self, items: list[ingest_store.IncomingBatch]) -> list[int]:
        now = self.clock.now()
        stale = now - AGENT_SEEN_RESOLUTION
        touch = sorted(
            {i.provider_id for i in items if self._seen_at.get(i.provider_id, stale) <= stale}
        )
        with self.store.write() as conn:
            ids = ingest_store.insert_batches(conn, items, now=now)
            for provider_id in touch:
                provider_store.touch_agent_seen(conn, provider_id, now)
        for provider_id in touch:
            self._seen_at[provider_id] = now
        return ids
