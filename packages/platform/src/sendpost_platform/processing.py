"""The ingest processor: turns stored agent batches into events (a worker job).

Per batch, per event (SPEC "Processing"):

1. **scope**: the message must exist and have been relayed through the batch's provider (the
   key's provider); otherwise the event is discarded and counted
   (``ingest.discarded_out_of_scope``), never attached to someone else's message;
2. ``deferred`` → counted (``ingest.deferred``), not stored;
3. ``delivered`` → CSDelivered;
4. ``bounced`` / ``soft_bounced`` → CSHardBounced or CSSoftBounced by
   :func:`sendpost_platform.domain.classify.classify` (the agent's label is only a hint);
5. stored through the event recorder (``recorder.py``: deduplication, outbox, suppression of
   hard bounces, counters), keeping the reason, codes and raw text.

A claim of several batches (fair across providers, see ``store/ingest.py``) is one transaction
and one group for the recorder: the events of every batch of the claim are recorded together,
one round trip per table, and a reply text that recurs in the group is classified once. Events,
counters and ``processed_at`` commit together; a crash before the commit leaves the batches
unprocessed, and the replay is harmless (the unique index). One bad event never costs the others
(SPEC "Wire contract"):

- an event the validator refuses (a batch stored before the validator was as strict as the
  store, or by a buggy client path) is dead-lettered — a row in ``ingest_dead_letters`` with
  its index, reason and raw JSON (``store/dead_letters.py``), ``ingest.dead_lettered`` counted —
  and the batch's other events are stored;
- a batch whose body cannot be read at all is dead-lettered whole (``error`` set on the batch,
  a dead letter holding the body, ``ingest.batches_failed`` counted);
- if the claim's transaction still fails for a reason other than the database being
  unavailable, the processor retries the batches one per transaction, each event in a savepoint
  (recorded on its own), and dead-letters just the event the database refused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import gc
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sendpost_wire import BatchError, EventType, EventValues, split_values
from sqlalchemy.engine import Connection

from sendpost_platform.clock import Clock
from sendpost_platform.domain.classify import Classification, Classifier, classify
from sendpost_platform.errors import StoreError
from sendpost_platform.recorder import RECORDER, CounterKey, HardBounceHook, Recorder
from sendpost_platform.store import Store, counters, dead_letters, messages
from sendpost_platform.store import events as event_store
from sendpost_platform.store import ingest as ingest_store

log = logging.getLogger("sendpost_platform.processing")

SOURCE_AGENT = "agent"
LANES = 2
"""Claims one worker process has in flight at once on PostgreSQL, each in its own thread and
transaction: while one waits for the database (which releases the GIL) the other reads and
classifies its batches, so one process keeps its core and the database's busy together.
Concurrent claims are what several workers do anyway (``FOR UPDATE SKIP LOCKED``, sorted
keys). SQLite has one writer: one lane."""


def memoised(classifier: Classifier) -> Classifier:
    """``classifier`` remembering its answers (for one group: a flood of bounces repeats a few
    reply texts; the classifier's cost is linear in the text, see docs/security.md)."""
    seen: dict[tuple[object, ...], Classification] = {}

    def classify_once(**kwargs: Any) -> Classification:
        key = tuple(kwargs.values())
        verdict = seen.get(key)
        if verdict is None:
            verdict = seen[key] = classifier(**kwargs)
        return verdict

    return classify_once


_DELIVERED = int(EventType.CSDelivered)
_HARD = int(EventType.CSHardBounced)
_SOFT = int(EventType.CSSoftBounced)


def agent_event_to_new_event(
    event: EventValues,
    message: messages.Message,
    *,
    provider_id: int,
    received_at: dt.datetime,
    classifier: Classifier = classify,
) -> event_store.NewEvent | None:
    """The event to store for one in-scope agent event (None for ``deferred``)."""
    (
        _,
        agent_type,
        timestamp,
        smtp_code,
        description,
        recipient,
        event_id,
        enhanced_status,
        smtp_command,
        queue_id,
        final_recipient,
    ) = event
    details: dict[str, object] = {"agentEventType": agent_type}
    if queue_id:
        details["queueId"] = queue_id
    if final_recipient:
        details["finalRecipient"] = final_recipient  # after the MTA's alias rewriting
    reason: str | None
    if agent_type == "delivered":
        event_type, reason = _DELIVERED, None
    elif agent_type in ("bounced", "soft_bounced"):
        verdict = classifier(
            smtp_code=smtp_code,
            enhanced_status=enhanced_status,
            smtp_command=smtp_command,
            text=description,
            agent_hint=agent_type,
        )
        event_type = _HARD if verdict.hard else _SOFT
        reason = verdict.reason
        details["rule"] = verdict.rule
    else:
        return None
    return event_store.NewEvent(
        message.uuid,
        message.account_id,
        event_type,
        timestamp or received_at,
        received_at,
        SOURCE_AGENT,
        message.subaccount_id,
        provider_id,
        recipient or message.recipient,
        smtp_code,
        enhanced_status,
        smtp_command,
        reason,
        description,
        event_id,
        details,
    )


class BadBatch(Exception):
    """A stored batch that cannot be processed (it is dead-lettered)."""


class IngestProcessor:
    """Worker job: process the stored ingestion batches."""

    name = "ingest"

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        claim_batches: int = 20,
        classifier: Classifier = classify,
        on_hard_bounces: HardBounceHook | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.claim_batches = claim_batches
        self.classifier = classifier
        self.recorder = (
            RECORDER if on_hard_bounces is None else Recorder(on_hard_bounces=on_hard_bounces)
        )
        self._one_at_a_time = False
        self._last_provider = -1
        """The last provider this processor's previous claim served (the fair rotation)."""

    async def run_once(self) -> int:
        """Process one claim of batches per lane (:data:`LANES` on PostgreSQL, one on SQLite),
        the lanes in threads at once, sharing ``claim_batches`` between them (so the batches a
        process holds at once, and the fairness bound of ``store/ingest.py``, are those of one
        claim of ``claim_batches``); returns how many batches were handled.

        The lanes start together and the pass waits for both. Letting each lane claim again as
        soon as its own claim commits was tried (2026-12-05, ``docs/benchmarks.md``): no faster
        in-process, and slower in ``bench/pipeline.py`` on the shared machine."""
        lanes = 1 if self.store.is_sqlite or self._one_at_a_time else LANES
        limit = max(1, self.claim_batches // lanes)  # the process's claims: claim_batches
        done = await asyncio.gather(
            *(asyncio.to_thread(self.process_available, limit) for _ in range(lanes))
        )
        return sum(done)

    def process_available(self, limit: int | None = None) -> int:
        """Process one claim of up to ``limit`` batches (default ``claim_batches``)."""
        if self._one_at_a_time:
            return self._process_single()
        try:
            with self.store.write() as conn:
                claimed = self._claim(conn, limit or self.claim_batches)
                self._process(conn, claimed, isolate=False)
        except (StoreError, sa.exc.OperationalError):
            raise
        except Exception:
            log.exception("processing a claim of batches failed; retrying them one by one")
            self._one_at_a_time = True
            return self._process_single()
        return len(claimed)

    def _claim(self, conn: Connection, limit: int) -> list[ingest_store.Batch]:
        claimed = ingest_store.claim(conn, limit=limit, after_provider=self._last_provider)
        if claimed:
            self._last_provider = max(b.provider_id for b in claimed)
        return claimed

    def _process_single(self) -> int:
        claimed: list[ingest_store.Batch] = []
        try:
            with self.store.write() as conn:
                claimed = self._claim(conn, 1)
                self._process(conn, claimed, isolate=True)
        except (StoreError, sa.exc.OperationalError):
            raise
        except Exception as exc:
            log.exception("dead-lettering batch %s", [b.id for b in claimed])
            with self.store.write() as conn:
                self._dead_letter_batches(conn, claimed, repr(exc))
            return len(claimed)
        if not claimed:
            self._one_at_a_time = False
        return len(claimed)

    def _dead_letter_batches(
        self, conn: Connection, batches: list[ingest_store.Batch], error: str
    ) -> None:
        """Set whole batches aside: marked processed with ``error``, their bodies dead-lettered."""
        now = self.clock.now()
        error = dead_letters.safe_text(error)
        ingest_store.mark_processed(conn, [b.id for b in batches], now=now, error=error)
        dead_letters.add(
            conn,
            [
                dead_letters.DeadLetter(b.id, b.provider_id, None, b.received_at, error, b.body)
                for b in batches
            ],
            now=now,
        )
        counters.add_keyed(
            conn, collections.Counter((b.provider_id, "ingest.batches_failed") for b in batches)
        )

    def _process(
        self, conn: Connection, claimed: list[ingest_store.Batch], *, isolate: bool
    ) -> None:
        if not claimed:
            return
        with _collector_paused():
            self._process_claimed(conn, claimed, isolate=isolate)

    def _process_claimed(
        self, conn: Connection, claimed: list[ingest_store.Batch], *, isolate: bool
    ) -> None:
        now = self.clock.now()
        parsed: list[tuple[ingest_store.Batch, list[tuple[int, EventValues]]]] = []
        unreadable: list[tuple[ingest_store.Batch, str]] = []
        letters: list[dead_letters.DeadLetter] = []
        for batch in claimed:
            try:
                events, rejected = split_values(batch.body)
            except BatchError as exc:
                unreadable.append((batch, repr(BadBatch(f"batch {batch.id}: {exc}"))))
                continue
            parsed.append((batch, events))
            letters.extend(
                dead_letters.DeadLetter(
                    batch.id,
                    batch.provider_id,
                    r.index,
                    batch.received_at,
                    r.reason,
                    dead_letters.raw_event(r.raw),
                )
                for r in rejected
            )
        known = messages.get_messages(conn, (e.message_id for _, evs in parsed for _, e in evs))
        classifier = memoised(self.classifier)
        if isolate:
            for batch, agent_events in parsed:
                letters.extend(self._process_isolated(conn, batch, agent_events, known, classifier))
        else:
            counts: collections.Counter[CounterKey] = collections.Counter()
            group: list[event_store.NewEvent] = []
            for batch, agent_events in parsed:
                for _, event in agent_events:
                    new = self._new_event(batch, event, known, classifier, counts)
                    if new is not None:
                        group.append(new)
            self.recorder.record(conn, group, count_as="ingest", counts=counts, known=known)
        if letters:
            for letter in letters:
                log.warning(
                    "dead-lettering event %s of batch %s: %s",
                    letter.event_index,
                    letter.batch_id,
                    dead_letters.safe_text(letter.reason, 200),
                )
            counters.add_keyed(
                conn, collections.Counter((x.provider_id, "ingest.dead_lettered") for x in letters)
            )
            dead_letters.add(conn, letters, now=now)
        ingest_store.mark_processed(conn, [b.id for b, _ in parsed], now=self.clock.now())
        for batch, error in unreadable:
            log.error("dead-lettering unreadable batch %s", batch.id)
            self._dead_letter_batches(conn, [batch], error)

    def _process_isolated(
        self,
        conn: Connection,
        batch: ingest_store.Batch,
        agent_events: list[tuple[int, EventValues]],
        known: dict[str, messages.Message],
        classifier: Classifier,
    ) -> list[dead_letters.DeadLetter]:
        """Store one batch's events each in a savepoint; an event that fails is returned as a
        dead letter instead of failing the batch."""
        letters: list[dead_letters.DeadLetter] = []
        for index, event in agent_events:
            try:
                with conn.begin_nested():
                    counts: collections.Counter[CounterKey] = collections.Counter()
                    new = self._new_event(batch, event, known, classifier, counts)
                    group = [] if new is None else [new]
                    self.recorder.record(conn, group, count_as="ingest", counts=counts, known=known)
            except sa.exc.OperationalError:
                raise
            except Exception as exc:
                letters.append(
                    dead_letters.DeadLetter(
                        batch.id,
                        batch.provider_id,
                        index,
                        batch.received_at,
                        f"not stored: {exc!r}",
                        _raw_at(batch.body, index),
                    )
                )
        return letters

    def _new_event(
        self,
        batch: ingest_store.Batch,
        event: EventValues,
        known: dict[str, messages.Message],
        classifier: Classifier,
        counts: collections.Counter[CounterKey],
    ) -> event_store.NewEvent | None:
        """The event to record for one valid agent event, or None (counted in ``counts`` when
        it is out of scope or deferred)."""
        message = known.get(event.message_id)
        if message is None or message.provider_id != batch.provider_id:
            counts[(batch.provider_id, "ingest.discarded_out_of_scope")] += 1
            return None
        if event.event_type == "deferred":
            counts[(batch.provider_id, "ingest.deferred")] += 1
            return None
        return agent_event_to_new_event(
            event,
            message,
            provider_id=batch.provider_id,
            received_at=batch.received_at,
            classifier=classifier,
        )


_paused = 0
"""Claims in progress with the collector paused (lanes are threads)."""
_resume = False
"""Whether the last of them turns the collector back on (it was on before the first)."""
_paused_lock = threading.Lock()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a claim is processed (by any lane). A claim
    allocates tens of thousands of short-lived objects without cycles, and each allocation
    burst would otherwise trigger collections that scan every live object: about a tenth of
    the processing time. Reference counting still frees everything as usual."""
    global _paused, _resume
    with _paused_lock:
        if _paused == 0:
            _resume = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0 and _resume:
                gc.enable()


def _raw_at(body: bytes, index: int) -> bytes:
    """Event ``index`` of a stored body as ASCII JSON (the body was readable: it was split)."""
    try:
        events = json.loads(body)["events"]
    except (RecursionError, ValueError):
        return dead_letters.UNENCODABLE
    return dead_letters.raw_event(events[index])
