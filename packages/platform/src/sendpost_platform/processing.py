"""The ingest processor: turns stored agent batches into events (a worker job).

Per batch, per event (SPEC "Processing"):

1. **scope**: the message must exist and have been relayed through the batch's provider (the
   key's provider); otherwise the event is discarded and counted
   (``ingest.discarded_out_of_scope``), never attached to someone else's message;
2. ``deferred`` → counted (``ingest.deferred``), not stored;
3. ``delivered`` → CSDelivered;
4. ``bounced`` / ``soft_bounced`` → CSHardBounced or CSSoftBounced by
   :func:`sendpost_platform.domain.classify.classify` (the agent's label is only a hint);
5. stored through :func:`~sendpost_platform.store.events.record_event` (deduplication), keeping
   the reason, codes and raw text; a hard bounce that became the event of record calls the
   ``on_hard_bounce`` hook (suppression) in the same transaction.

A claim of several batches is one transaction: events, counters and ``processed_at`` commit
together. One bad event never costs the others (SPEC "Wire contract"):

- an event the validator refuses (a batch stored before the validator was as strict as the
  store, or by a buggy client path) is dead-lettered — a row in ``ingest_dead_letters`` with
  its index, reason and raw JSON (``store/dead_letters.py``), ``ingest.dead_lettered`` counted —
  and the batch's other events are stored;
- a batch whose body cannot be read at all is dead-lettered whole (``error`` set on the batch,
  a dead letter holding the body, ``ingest.batches_failed`` counted);
- if the claim's transaction still fails for a reason other than the database being
  unavailable, the processor retries the batches one per transaction, each event in a savepoint,
  and dead-letters just the event the database refused.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable

import sqlalchemy as sa
from sendpost_wire import AgentEvent, BatchError, EventType, split_batch
from sqlalchemy.engine import Connection

from sendpost_platform.clock import Clock
from sendpost_platform.domain.classify import Classification, classify
from sendpost_platform.errors import StoreError
from sendpost_platform.store import Store, counters, dead_letters, messages
from sendpost_platform.store import events as event_store
from sendpost_platform.store import ingest as ingest_store

log = logging.getLogger("sendpost_platform.processing")

SOURCE_AGENT = "agent"
Classifier = Callable[..., Classification]


@dataclasses.dataclass(frozen=True, slots=True)
class HardBounce:
    """What the suppression hook gets when a hard bounce becomes the event of record."""

    account_id: int
    subaccount_id: int
    recipient: str
    message_uuid: str
    event_id: int
    reason: str | None
    occurred_at: dt.datetime


HardBounceHook = Callable[[Connection, HardBounce], None]


def agent_event_to_new_event(
    event: AgentEvent,
    message: messages.Message,
    *,
    provider_id: int,
    received_at: dt.datetime,
    classifier: Classifier = classify,
) -> event_store.NewEvent | None:
    """The event to store for one in-scope agent event (None for ``deferred``)."""
    details: dict[str, object] = {"agentEventType": event.event_type}
    if event.queue_id:
        details["queueId"] = event.queue_id
    if event.final_recipient:
        details["finalRecipient"] = event.final_recipient  # after the MTA's alias rewriting
    reason: str | None
    if event.event_type == "delivered":
        event_type, reason = EventType.CSDelivered, None
    elif event.event_type in ("bounced", "soft_bounced"):
        verdict = classifier(
            smtp_code=event.smtp_code,
            enhanced_status=event.enhanced_status,
            smtp_command=event.smtp_command,
            text=event.smtp_description,
            agent_hint=event.event_type,
        )
        event_type = EventType.CSHardBounced if verdict.hard else EventType.CSSoftBounced
        reason = verdict.reason
        details["rule"] = verdict.rule
    else:
        return None
    return event_store.NewEvent(
        message_uuid=message.uuid,
        account_id=message.account_id,
        subaccount_id=message.subaccount_id,
        provider_id=provider_id,
        event_type=int(event_type),
        recipient=event.recipient or message.recipient,
        occurred_at=event.timestamp or received_at,
        received_at=received_at,
        source=SOURCE_AGENT,
        smtp_code=event.smtp_code,
        enhanced_status=event.enhanced_status,
        smtp_command=event.smtp_command,
        reason=reason,
        description=event.smtp_description,
        agent_event_id=event.event_id,
        details=details,
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
        on_hard_bounce: HardBounceHook | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.claim_batches = claim_batches
        self.classifier = classifier
        self.on_hard_bounce = on_hard_bounce
        self._one_at_a_time = False

    async def run_once(self) -> int:
        """Process one claim of batches; returns how many batches were handled."""
        return await asyncio.to_thread(self.process_available)

    def process_available(self) -> int:
        if self._one_at_a_time:
            return self._process_single()
        try:
            with self.store.write() as conn:
                claimed = ingest_store.claim(conn, limit=self.claim_batches)
                self._process(conn, claimed, isolate=False)
        except (StoreError, sa.exc.OperationalError):
            raise
        except Exception:
            log.exception("processing a claim of batches failed; retrying them one by one")
            self._one_at_a_time = True
            return self._process_single()
        return len(claimed)

    def _process_single(self) -> int:
        claimed: list[ingest_store.Batch] = []
        try:
            with self.store.write() as conn:
                claimed = ingest_store.claim(conn, limit=1)
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
        for batch in batches:
            counters.add(conn, batch.provider_id, "ingest.batches_failed")

    def _process(
        self, conn: Connection, claimed: list[ingest_store.Batch], *, isolate: bool
    ) -> None:
        if not claimed:
            return
        now = self.clock.now()
        parsed: list[tuple[ingest_store.Batch, list[tuple[int, AgentEvent]]]] = []
        unreadable: list[tuple[ingest_store.Batch, str]] = []
        letters: list[dead_letters.DeadLetter] = []
        for batch in claimed:
            try:
                events, rejected = split_batch(batch.body)
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
        for batch, agent_events in parsed:
            letters.extend(self._process_batch(conn, batch, agent_events, known, isolate=isolate))
        if letters:
            for letter in letters:
                log.warning(
                    "dead-lettering event %s of batch %s: %s",
                    letter.event_index,
                    letter.batch_id,
                    dead_letters.safe_text(letter.reason, 200),
                )
                counters.add(conn, letter.provider_id, "ingest.dead_lettered")
            dead_letters.add(conn, letters, now=now)
        ingest_store.mark_processed(conn, [b.id for b, _ in parsed], now=now)
        for batch, error in unreadable:
            log.error("dead-lettering unreadable batch %s", batch.id)
            self._dead_letter_batches(conn, [batch], error)

    def _process_batch(
        self,
        conn: Connection,
        batch: ingest_store.Batch,
        agent_events: list[tuple[int, AgentEvent]],
        known: dict[str, messages.Message],
        *,
        isolate: bool,
    ) -> list[dead_letters.DeadLetter]:
        """Store one batch's events; with ``isolate`` each in a savepoint, and an event the
        database refuses is returned as a dead letter instead of failing the batch."""
        counts: collections.Counter[str] = collections.Counter()
        letters: list[dead_letters.DeadLetter] = []
        for index, event in agent_events:
            if not isolate:
                counts.update(self._process_event(conn, batch, event, known))
                continue
            try:
                with conn.begin_nested():
                    outcome = self._process_event(conn, batch, event, known)
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
                continue
            counts.update(outcome)
        counters.add_many(conn, batch.provider_id, counts)
        return letters

    def _process_event(
        self,
        conn: Connection,
        batch: ingest_store.Batch,
        event: AgentEvent,
        known: dict[str, messages.Message],
    ) -> tuple[str, ...]:
        """Store one valid event; returns the counter it adds to (none for an ignored one)."""
        message = known.get(event.message_id)
        if message is None or message.provider_id != batch.provider_id:
            return ("ingest.discarded_out_of_scope",)
        if event.event_type == "deferred":
            return ("ingest.deferred",)
        new = agent_event_to_new_event(
            event,
            message,
            provider_id=batch.provider_id,
            received_at=batch.received_at,
            classifier=self.classifier,
        )
        if new is None:
            return ()
        recorded = event_store.record_event(conn, new)
        if (
            self.on_hard_bounce is not None
            and recorded.event_type == EventType.CSHardBounced
            and recorded.outcome in (event_store.Outcome.INSERTED, event_store.Outcome.UPGRADED)
        ):
            self.on_hard_bounce(
                conn,
                HardBounce(
                    account_id=message.account_id,
                    subaccount_id=message.subaccount_id,
                    recipient=new.recipient or message.recipient,
                    message_uuid=message.uuid,
                    event_id=recorded.event_id,
                    reason=new.reason,
                    occurred_at=new.occurred_at,
                ),
            )
        return (f"ingest.{recorded.outcome.value}",)


def _raw_at(body: bytes, index: int) -> bytes:
    """Event ``index`` of a stored body as ASCII JSON (the body was readable: it was split)."""
    try:
        events = json.loads(body)["events"]
    except (RecursionError, ValueError):
        return dead_letters.UNENCODABLE
    return dead_letters.raw_event(events[index])
