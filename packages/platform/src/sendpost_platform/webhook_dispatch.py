"""The webhook dispatcher: a worker job that delivers events to webhooks (docs/webhooks.md).

One pass (:meth:`WebhookDispatcher.run_once`):

1. commit the outcomes of the POSTs that finished since the last pass, all in one transaction
   (``store/webhooks.py``: ``finish_many`` and the webhooks' health);
2. fan out up to ``webhook_batch_size`` outbox rows into deliveries (one dispatcher at a time);
3. claim due deliveries up to the free room (``webhook_concurrency`` in flight per process,
   ``webhook_endpoint_concurrency`` per endpoint URL) with a lease of ``webhook_lease``, and start
   one task per delivery; the tasks run on while the worker's other jobs run;
4. when no delivery could be started (no room, or none due) while POSTs are in flight, wait up
   to 0.2 s for one to finish, and 10 ms more for the others, so that outcomes are committed,
   and room claimed, many at a time (not one pass of transactions per finished POST).

One attempt (:meth:`WebhookDispatcher._attempt`) resolves the URL's host, refuses loopback,
private, link-local and metadata addresses unless ``SENDPOST_ALLOW_PRIVATE_NETWORKS`` is on
(``egress.py``), connects to the checked address only (the name is kept for ``Host`` and TLS),
and POSTs the stored payload signed afresh (``X-SendPost-Timestamp``, ``X-SendPost-Signature``).
A network error, 408, 429 or 5xx is tried again at once up to ``webhook_quick_retries`` times
(stamina; a ``Retry-After`` of up to 2 s is waited for in place). If it still fails, the delivery
is retried after ``webhook_retry_schedule[attempt-1]`` or the ``Retry-After`` asked (the longer),
and once the schedule is exhausted it is ``failed`` (replayed when the webhook is re-enabled).

At least once: an outcome is committed after the POST, so a dispatcher killed in between leaves
its claims to expire, and the deliveries are POSTed again by whoever claims them next, with the
same body (same ``eventId``). A claim is never held past half its lease by a live dispatcher:
the request timeout and the quick retries are bounded to a quarter of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
import urllib.parse
from collections import Counter

import httpx
import stamina

from sendpost_platform.clock import Clock
from sendpost_platform.config import Settings
from sendpost_platform.crypto import CryptoError, SecretBox
from sendpost_platform.domain import webhooks as rules
from sendpost_platform.egress import EgressPolicy, EgressRefused
from sendpost_platform.relay_worker import default_worker_id
from sendpost_platform.store import Store
from sendpost_platform.store import webhooks as store_webhooks

log = logging.getLogger("sendpost_platform.webhooks")

QUICK_RETRY_AFTER_MAX = 2.0
"""A ``Retry-After`` up to this many seconds is waited for inside the attempt."""
USER_AGENT = "SendPost-Webhooks/1.0"


class _Failed(Exception):
    """One try failed: ``status`` None is a network failure."""

    def __init__(self, status: int | None, error: str, retry_after: float | None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.retry_after = retry_after


def _quick_retry(exc: Exception) -> bool | float:
    """stamina's hook: retry transient failures, waiting a short ``Retry-After`` if asked."""
    if not isinstance(exc, _Failed) or not rules.is_transient(exc.status):
        return False
    if exc.retry_after is None:
        return True
    return exc.retry_after if exc.retry_after <= QUICK_RETRY_AFTER_MAX else False


@dataclasses.dataclass(frozen=True, slots=True)
class _Result:
    ok: bool
    status: int | None
    error: str
    retry_after: float | None


def pinned_request_url(url: str, address: str) -> str:
    """``url`` with its host replaced by the checked ``address`` (port, path, query kept)."""
    parts = urllib.parse.urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


class WebhookDispatcher:
    name = "webhooks"

    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()
        self.egress = EgressPolicy.from_settings(settings)
        self._secrets = SecretBox(settings.secret_key, purpose=rules.SECRET_PURPOSE)
        self._health = store_webhooks.HealthPolicy(
            settings.webhook_degrade_after, settings.webhook_disable_after
        )
        lease = settings.webhook_lease
        self._timeout = min(settings.webhook_timeout, lease / 4)
        self._client = httpx.AsyncClient(
            timeout=self._timeout,
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=settings.webhook_concurrency,
                max_keepalive_connections=settings.webhook_concurrency,
            ),
            headers={"User-Agent": USER_AGENT},
        )
        self._in_flight: dict[asyncio.Task[_Result], store_webhooks.ClaimedDelivery] = {}
        self._per_url: Counter[str] = Counter()
        self._finished: list[store_webhooks.Outcome] = []

    def sealed(self, secret: str) -> str:
        return self._secrets.seal(secret)

    async def close(self) -> None:
        """Stop the POSTs in flight and hand their deliveries back (due again at once)."""
        tasks = list(self._in_flight)
        ids = [d.id for d in self._in_flight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._in_flight.clear()
        await self._commit()
        if ids:
            await asyncio.to_thread(self._release, ids)
        await self._client.aclose()

    def _release(self, ids: list[int]) -> None:
        with self.store.write() as conn:
            store_webhooks.release(conn, ids, worker_id=self.worker_id)

    # --- one pass ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        done = await self._commit()
        done += await asyncio.to_thread(self._fan_out)
        started = await self._start_claimed()
        done += started
        if started == 0 and self._in_flight:
            await asyncio.wait(
                list(self._in_flight), timeout=0.2, return_when=asyncio.FIRST_COMPLETED
            )
            # give the other POSTs 10 ms to finish too: one commit and one claim for all of them
            if self._in_flight:
                await asyncio.wait(list(self._in_flight), timeout=0.01)
            done += await self._commit()
        return done + len(self._in_flight) + len(self._finished)

    def _fan_out(self) -> int:
        with self.store.read() as conn:
            if not store_webhooks.outbox_waiting(conn):
                return 0  # no write transaction for nothing (SQLite has one writer at a time)
        with self.store.write() as conn:
            return store_webhooks.fan_out(
                conn,
                limit=self.settings.webhook_batch_size,
                now=self.clock.now(),
            )

    async def _start_claimed(self) -> int:
        free = self.settings.webhook_concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        claimed = await asyncio.to_thread(self._claim, min(free, self.settings.webhook_batch_size))
        for delivery in claimed:
            self._per_url[delivery.url] += 1
            task = asyncio.create_task(self._attempt(delivery))
            self._in_flight[task] = delivery
            task.add_done_callback(self._on_done)
        return len(claimed)

    def _claim(self, limit: int) -> list[store_webhooks.ClaimedDelivery]:
        """Pick due deliveries within the room per endpoint (a read), then claim them (a
        write, only when there is something to claim)."""
        cap = self.settings.webhook_endpoint_concurrency
        now = self.clock.now()
        with self.store.read() as conn:
            candidates = store_webhooks.due(conn, now=now, limit=limit * 4)
        chosen: list[int] = []
        taken: Counter[str] = Counter()
        for delivery_id, url in candidates:
            if len(chosen) >= limit:
                break
            if taken[url] + self._per_url[url] < cap:
                taken[url] += 1
                chosen.append(delivery_id)
        if not chosen:
            return []
        with self.store.write() as conn:
            return store_webhooks.take(
                conn,
                chosen,
                worker_id=self.worker_id,
                now=now,
                lease=dt.timedelta(seconds=self.settings.webhook_lease),
            )

    def _on_done(self, task: asyncio.Task[_Result]) -> None:
        delivery = self._in_flight.pop(task, None)
        if delivery is None or task.cancelled():
            return
        self._per_url[delivery.url] -= 1
        if self._per_url[delivery.url] <= 0:
            del self._per_url[delivery.url]
        error = task.exception()
        if error is not None:  # a bug, not the endpoint's doing: retried like a failure
            log.error("webhook delivery %s: %r", delivery.id, error, exc_info=error)
            result = _Result(False, None, f"internal error: {error!r}"[:300], None)
        else:
            result = task.result()
        self._finished.append(self._outcome(delivery, result))

    def _outcome(
        self, delivery: store_webhooks.ClaimedDelivery, result: _Result
    ) -> store_webhooks.Outcome:
        next_at = None
        if not result.ok:
            schedule = self.settings.webhook_retry_schedule
            if delivery.attempt <= len(schedule):
                delay = max(schedule[delivery.attempt - 1], result.retry_after or 0.0)
                next_at = self.clock.now() + dt.timedelta(seconds=delay)
        return store_webhooks.Outcome(
            delivery=delivery,
            ok=result.ok,
            status=result.status,
            error=result.error,
            next_attempt_at=next_at,
        )

    async def _commit(self) -> int:
        if not self._finished:
            return 0
        outcomes, self._finished = self._finished, []
        await asyncio.to_thread(self._record, outcomes)
        return len(outcomes)

    def _record(self, outcomes: list[store_webhooks.Outcome]) -> None:
        with self.store.write() as conn:
            store_webhooks.finish_many(
                conn,
                outcomes,
                worker_id=self.worker_id,
                now=self.clock.now(),
                health=self._health,
            )

    # --- one attempt ------------------------------------------------------------------------

    async def _attempt(self, delivery: store_webhooks.ClaimedDelivery) -> _Result:
        secret = None
        if delivery.secret_encrypted is not None:
            try:
                secret = self._secrets.open(delivery.secret_encrypted)
            except CryptoError as exc:
                return _Result(False, None, f"cannot open the webhook secret: {exc}", None)
        try:
            async for attempt in stamina.retry_context(
                on=_quick_retry,
                attempts=max(1, self.settings.webhook_quick_retries),
                timeout=self.settings.webhook_lease / 4,
                wait_initial=0.2,
                wait_max=2.0,
                wait_jitter=0.2,
            ):
                with attempt:
                    status = await self._post(delivery, secret)
            return _Result(True, status, "", None)
        except _Failed as exc:
            return _Result(False, exc.status, exc.error, exc.retry_after)
        except EgressRefused as exc:
            return _Result(False, None, f"refused: {exc}", None)

    async def _post(self, delivery: store_webhooks.ClaimedDelivery, secret: str | None) -> int:
        parts = urllib.parse.urlsplit(delivery.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            target = await self.egress.resolve(host, port)
        except OSError as exc:
            raise _Failed(None, str(exc), None) from None
        body = delivery.body.encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Host": parts.netloc.rpartition("@")[2],
            rules.EVENT_ID_HEADER: delivery.event_key,
            rules.TIMESTAMP_HEADER: str(timestamp),
        }
        if delivery.webhook_id is not None:
            headers[rules.WEBHOOK_ID_HEADER] = str(delivery.webhook_id)
        if secret is not None:
            headers[rules.SIGNATURE_HEADER] = rules.sign(secret, timestamp, body)
        try:
            response = await self._client.post(
                pinned_request_url(delivery.url, target.addresses[0]),
                content=body,
                headers=headers,
                extensions={"sni_hostname": target.tls_name},
            )
        except httpx.HTTPError as exc:
            raise _Failed(None, f"{type(exc).__name__}: {exc}"[:300], None) from None
        if 200 <= response.status_code < 300:
            return response.status_code
        wait = rules.retry_after(
            response.headers.get("Retry-After"),
            now=self.clock.now(),
            cap=self.settings.webhook_retry_after_cap,
        )
        raise _Failed(response.status_code, f"HTTP {response.status_code}", wait)
