"""The webhook dispatcher: a worker job that delivers events to webhooks (docs/webhooks.md).

One pass (:meth:`WebhookDispatcher._pass`) is one write transaction (none when idle):

1. commit the outcomes of the POSTs finished since the last pass (``store/webhooks.py``:
   ``finish_many``; the webhooks' health, whose rows it locks, last of all);
2. hand back claims that waited too long for a lane (see below);
3. claim due deliveries into per-endpoint queues: for each URL about ``QUEUE_SECONDS`` of its
   measured pace (at least two per lane, at most ``AHEAD_BATCHES`` batches), within one batch
   per pass and ``webhook_concurrency`` + ``AHEAD_BATCHES`` batches held by the process, with a
   lease of ``webhook_lease``;
4. fan out as many outbox rows as that room has left (one dispatcher at a time), the new
   deliveries that may be claimed inserted claimed (``store/webhooks.py``: ``fan_out``).

Then lanes start: per URL up to ``webhook_endpoint_concurrency`` tasks (at most
``webhook_concurrency`` in all), each POSTing its URL's queued deliveries one after another on
a keep-alive connection until the queue is empty. :meth:`WebhookDispatcher.run_once` runs a
pass and, when it moved nothing while deliveries are held, waits for a lane's signal (its
queue running low, ``WAKE_AFTER`` outcomes waiting, a lane ending) or ``WAIT``, and passes
again; so outcomes are committed, and claims made, many at a time. A delivery not started
within a quarter of the lease after its claim is handed back instead (due again at once).

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
an attempt starts within a quarter of the lease after the claim, and the request timeout and
the quick retries are bounded to a quarter of it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import ssl
import time

import stamina
from sqlalchemy.engine import Connection

from sendpost_platform.clock import Clock
from sendpost_platform.config import Settings
from sendpost_platform.crypto import CryptoError, SecretBox
from sendpost_platform.domain import webhooks as rules
from sendpost_platform.egress import CheckedTarget, EgressPolicy, EgressRefused
from sendpost_platform.relay_worker import default_worker_id
from sendpost_platform.store import Store
from sendpost_platform.store import webhooks as store_webhooks
from sendpost_platform.webhook_http import HttpClient, HttpFailure, Route

log = logging.getLogger("sendpost_platform.webhooks")

QUICK_RETRY_AFTER_MAX = 2.0
"""A ``Retry-After`` up to this many seconds is waited for inside the attempt."""
USER_AGENT = "SendPost-Webhooks/1.0"
WAIT = 0.05
"""Longest wait between passes while deliveries are held (new events are claimed then)."""
QUEUE_SECONDS = 0.5
"""Deliveries claimed ahead for an endpoint: this many seconds of its measured pace."""
AHEAD_BATCHES = 2
"""Batches of deliveries one process may hold claimed beyond its lanes (and the deepest queue of
one endpoint): a pass that fans out and claims a batch takes 30-80 ms, during which the lanes
must not run dry; with one batch they did (docs/benchmarks.md, 2026-12-05, branch hooks2)."""
WAKE_AFTER = 200
"""Finished attempts that start a pass at once (their outcomes committed together)."""
SECRET_CACHE = 1024
"""Decrypted webhook secrets kept in memory by one dispatcher."""
TARGET_SECONDS = 30.0
"""A webhook host's checked addresses are used for this long (monotonic) before it is resolved
and checked again: one lookup per host and half-minute, not one per POST. The POST still
connects only to an address that passed the egress check."""
TARGET_CACHE = 1024
"""Checked hosts kept in memory by one dispatcher."""
ROUTE_CACHE = 1024
"""Parsed webhook URLs kept in memory by one dispatcher."""
RESPONSE_BODY_CAP = 64 * 1024
"""A response body up to this size is read so that the connection can be used again; past it
the answer's status counts and the connection is closed (``webhook_http.py``)."""


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


@dataclasses.dataclass(slots=True)
class _Endpoint:
    """One endpoint URL's share of this process: claimed deliveries waiting for a lane (with
    the monotonic time of their claim), the lanes (tasks POSTing one delivery after another,
    at most ``webhook_endpoint_concurrency``), and how fast it has been answering."""

    queue: collections.deque[tuple[store_webhooks.ClaimedDelivery, float]] = dataclasses.field(
        default_factory=collections.deque
    )
    lanes: int = 0
    in_flight: int = 0
    finished: int = 0
    """Attempts finished since the last pass (for ``rate``)."""
    rate: float = 0.0
    """Attempts finished per second, smoothed over passes."""


class WebhookDispatcher:
    name = "webhooks"

    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        *,
        worker_id: str | None = None,
        tls: ssl.SSLContext | None = None,
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
        self._start_within = lease / 4
        """A claimed delivery not started this long (monotonic) after its claim is handed back:
        with the attempt bounded to a quarter of the lease too, no claim is used past half."""
        self._opened: dict[str, str] = {}
        self._targets: dict[tuple[str, int], tuple[float, CheckedTarget]] = {}
        self._routes: dict[str, Route] = {}
        self.http = HttpClient(
            connect=self._timeout,
            total=self._timeout,
            per_pool=settings.webhook_endpoint_concurrency,
            max_idle=settings.webhook_concurrency,
            body_cap=RESPONSE_BODY_CAP,
            tls=tls,
        )
        """The keep-alive connections of this process (``webhook_http.py``); ``tls`` (tests) is
        the context that verifies https endpoints, the system's trust store by default."""
        self._endpoints: dict[str, _Endpoint] = {}
        self._lanes: set[asyncio.Task[None]] = set()
        self._in_flight: dict[int, store_webhooks.ClaimedDelivery] = {}
        self._finished: list[store_webhooks.Outcome] = []
        self._stale: list[int] = []
        self._wake = asyncio.Event()
        self._last_pass = time.monotonic()

    def sealed(self, secret: str) -> str:
        return self._secrets.seal(secret)

    async def close(self) -> None:
        """Stop the POSTs in flight and hand back every delivery not finished (due again at
        once): those in flight and those waiting for a lane."""
        lanes = list(self._lanes)
        for lane in lanes:
            lane.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        ids = [d.id for d in self._in_flight.values()] + self._stale
        for endpoint in self._endpoints.values():
            ids.extend(d.id for d, _ in endpoint.queue)
        self._in_flight.clear()
        self._endpoints.clear()
        self._stale = []
        outcomes, self._finished = self._finished, []
        if outcomes or ids:
            await asyncio.to_thread(self._transact, outcomes, ids, None)
        self.http.close()

    # --- passes -----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One pass; when it moved nothing while deliveries are held, wait (up to ``WAIT``) for
        a lane to finish and pass again. Returns the work done plus the deliveries still held
        (0 only when idle)."""
        moved = await self._pass()
        if moved == 0 and self._held():
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), WAIT)
            moved = await self._pass()
        return moved + self._held()

    def _held(self) -> int:
        return len(self._finished) + len(self._in_flight) + self._queued() + len(self._stale)

    def _queued(self) -> int:
        return sum(len(e.queue) for e in self._endpoints.values())

    async def _pass(self) -> int:
        """One database transaction: commit finished outcomes, hand back stale claims, fan out
        new outbox rows, claim due deliveries into the endpoints' queues; then start lanes."""
        self._measure()
        outcomes, self._finished = self._finished, []
        stale, self._stale = self._stale, []
        room = self._room()
        claimed, fanned = await asyncio.to_thread(self._transact, outcomes, stale, room)
        now = time.monotonic()
        for delivery in claimed:
            endpoint = self._endpoints.setdefault(delivery.url, _Endpoint())
            endpoint.queue.append((delivery, now))
        self._start_lanes()
        return len(outcomes) + fanned + len(claimed)

    def _measure(self) -> None:
        now = time.monotonic()
        elapsed = max(now - self._last_pass, 1e-3)
        self._last_pass = now
        for url, endpoint in list(self._endpoints.items()):
            endpoint.rate = 0.7 * endpoint.rate + 0.3 * (endpoint.finished / elapsed)
            endpoint.finished = 0
            if not endpoint.queue and endpoint.lanes == 0 and endpoint.rate < 1.0:
                del self._endpoints[url]

    def _room(self) -> store_webhooks.Room:
        """How many more deliveries to claim, per known endpoint and for any other: enough for
        about ``QUEUE_SECONDS`` of the endpoint's measured pace (at least two per lane, at most
        ``AHEAD_BATCHES`` batches), within one batch per pass and ``webhook_concurrency`` +
        ``AHEAD_BATCHES`` batches held."""
        cap = self.settings.webhook_endpoint_concurrency
        batch = self.settings.webhook_batch_size
        held = len(self._in_flight) + self._queued()
        total = min(batch, self.settings.webhook_concurrency + AHEAD_BATCHES * batch - held)
        per_url = {
            url: max(0, self._depth(e) - len(e.queue) - e.in_flight)
            for url, e in self._endpoints.items()
        }
        return store_webhooks.Room(total=max(0, total), per_url=per_url, new_url=2 * cap)

    def _depth(self, endpoint: _Endpoint) -> int:
        cap = self.settings.webhook_endpoint_concurrency
        wanted = int(endpoint.rate * QUEUE_SECONDS)
        return max(2 * cap, min(AHEAD_BATCHES * self.settings.webhook_batch_size, wanted))

    def _transact(
        self,
        outcomes: list[store_webhooks.Outcome],
        stale: list[int],
        room: store_webhooks.Room | None,
    ) -> tuple[list[store_webhooks.ClaimedDelivery], int]:
        """The pass's one write transaction (none when there is nothing to write or claim:
        SQLite has one writer at a time). Returns (claimed, outbox rows fanned out)."""
        now = self.clock.now()
        if not outcomes and not stale:
            if room is None or room.total == 0:
                return [], 0
            with self.store.read() as conn:
                if not store_webhooks.outbox_waiting(conn) and not store_webhooks.due(
                    conn, now=now, limit=1
                ):
                    return [], 0
        with self.store.write() as conn:
            kept = store_webhooks.finish_many(conn, outcomes, worker_id=self.worker_id, now=now)
            store_webhooks.release(conn, stale, worker_id=self.worker_id)
            claimed: list[store_webhooks.ClaimedDelivery] = []
            fanned = 0
            if room is not None and room.total > 0:
                lease = dt.timedelta(seconds=self.settings.webhook_lease)
                claimed = self._claim(conn, now, room, lease)
                if room.total > 0:
                    fanned, new = store_webhooks.fan_out(
                        conn,
                        limit=min(room.total, self.settings.webhook_batch_size),
                        now=now,
                        claim=store_webhooks.Claim(self.worker_id, now + lease, room),
                    )
                    claimed += new
            store_webhooks.update_health(conn, kept, now=now, policy=self._health)
        return claimed, fanned

    def _claim(
        self, conn: Connection, now: dt.datetime, room: store_webhooks.Room, lease: dt.timedelta
    ) -> list[store_webhooks.ClaimedDelivery]:
        """Due deliveries within the room per endpoint, claimed (in the pass's transaction)."""
        chosen: list[int] = []
        for delivery_id, url in store_webhooks.due(conn, now=now, limit=room.total * 2):
            if room.total <= 0:
                break
            if room.take(url):
                chosen.append(delivery_id)
        return store_webhooks.take(conn, chosen, worker_id=self.worker_id, now=now, lease=lease)

    def _start_lanes(self) -> None:
        cap = self.settings.webhook_endpoint_concurrency
        for url, endpoint in self._endpoints.items():
            while (
                endpoint.lanes < min(cap, len(endpoint.queue))
                and len(self._lanes) < self.settings.webhook_concurrency
            ):
                endpoint.lanes += 1
                lane = asyncio.create_task(self._lane(url, endpoint))
                self._lanes.add(lane)
                lane.add_done_callback(self._lanes.discard)

    async def _lane(self, url: str, endpoint: _Endpoint) -> None:
        """POST the endpoint's queued deliveries one after another until its queue is empty."""
        try:
            while endpoint.queue:
                delivery, claimed_at = endpoint.queue.popleft()
                if time.monotonic() - claimed_at > self._start_within:
                    self._stale.append(delivery.id)
                    continue
                self._in_flight[delivery.id] = delivery
                endpoint.in_flight += 1
                try:
                    result = await self._attempt(delivery)
                except Exception as error:  # a bug, not the endpoint's doing: retried later
                    log.error("webhook delivery %s: %r", delivery.id, error, exc_info=error)
                    result = _Result(False, None, f"internal error: {error!r}"[:300], None)
                finally:
                    endpoint.in_flight -= 1
                del self._in_flight[delivery.id]
                self._finished.append(self._outcome(delivery, result))
                endpoint.finished += 1
                if len(endpoint.queue) < endpoint.lanes or len(self._finished) >= WAKE_AFTER:
                    self._wake.set()
        finally:
            endpoint.lanes -= 1
            self._wake.set()

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

    # --- one attempt ------------------------------------------------------------------------

    def _open_secret(self, sealed: str) -> str:
        """The webhook secret, decrypted once per sealed value (a rotated key or secret is a new
        sealed value); at most ``SECRET_CACHE`` kept."""
        secret = self._opened.get(sealed)
        if secret is None:
            secret = self._secrets.open(sealed)
            if len(self._opened) >= SECRET_CACHE:
                self._opened.clear()
            self._opened[sealed] = secret
        return secret

    async def _target(self, host: str, port: int) -> CheckedTarget:
        """``host`` resolved and checked by the egress policy, at most :data:`TARGET_SECONDS`
        ago (a refusal or a failed lookup is not kept: it raises)."""
        now = time.monotonic()
        kept = self._targets.get((host, port))
        if kept is not None and now - kept[0] < TARGET_SECONDS:
            return kept[1]
        target = await self.egress.resolve(host, port)
        if len(self._targets) >= TARGET_CACHE:
            self._targets.clear()
        self._targets[(host, port)] = (now, target)
        return target

    async def _attempt(self, delivery: store_webhooks.ClaimedDelivery) -> _Result:
        secret = None
        if delivery.secret_encrypted is not None:
            try:
                secret = self._open_secret(delivery.secret_encrypted)
            except CryptoError as exc:
                return _Result(False, None, f"cannot open the webhook secret: {exc}", None)
        began = time.monotonic()
        try:
            try:
                return _Result(True, await self._post(delivery, secret), "", None)
            except _Failed as exc:
                # The first try goes without stamina's set-up (most succeed); a failure is
                # handed to stamina as its own first try, so its policy decides what follows.
                budget = self.settings.webhook_lease / 4 - (time.monotonic() - began)
                if self.settings.webhook_quick_retries <= 1 or budget <= 0:
                    raise
                first: _Failed | None = exc
            async for attempt in stamina.retry_context(
                on=_quick_retry,
                attempts=self.settings.webhook_quick_retries,
                timeout=budget,
                wait_initial=0.2,
                wait_max=2.0,
                wait_jitter=0.2,
            ):
                with attempt:
                    if first is not None:
                        failed, first = first, None
                        raise failed
                    status = await self._post(delivery, secret)
            return _Result(True, status, "", None)
        except _Failed as exc:
            return _Result(False, exc.status, exc.error, exc.retry_after)
        except EgressRefused as exc:
            return _Result(False, None, f"refused: {exc}", None)

    def _route(self, url: str) -> Route:
        route = self._routes.get(url)
        if route is None:
            if len(self._routes) >= ROUTE_CACHE:
                self._routes.clear()
            route = self._routes[url] = Route.of(url, USER_AGENT)
        return route

    async def _post(self, delivery: store_webhooks.ClaimedDelivery, secret: str | None) -> int:
        route = self._route(delivery.url)
        try:
            target = await self._target(route.host, route.port)
        except OSError as exc:
            raise _Failed(None, f"ConnectError: {exc}"[:300], None) from None
        body = delivery.body.encode()
        timestamp = int(time.time())
        headers = (
            f"Content-Type: application/json\r\n{rules.EVENT_ID_HEADER}: {delivery.event_key}\r\n"
            f"{rules.TIMESTAMP_HEADER}: {timestamp}\r\n"
        )
        if delivery.webhook_id is not None:
            headers += f"{rules.WEBHOOK_ID_HEADER}: {delivery.webhook_id}\r\n"
        if secret is not None:
            headers += f"{rules.SIGNATURE_HEADER}: {rules.sign(secret, timestamp, body)}\r\n"
        try:
            answer = await self.http.post(route, target, headers.encode("latin-1"), body)
        except HttpFailure as exc:
            raise _Failed(None, str(exc)[:300], None) from None
        status = answer.status
        if 200 <= status < 300:
            return status
        wait = rules.retry_after(
            answer.retry_after, now=self.clock.now(), cap=self.settings.webhook_retry_after_cap
        )
        raise _Failed(status, f"HTTP {status}", wait)
