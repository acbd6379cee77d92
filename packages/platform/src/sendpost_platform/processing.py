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
together. If it fails for a reason other than the database being unavailable, the processor
retries the batches one per transaction and dead-letters the one that fails (``error`` set,
``ingest.batches_failed`` counted), so one bad batch cannot block the queue.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable

import sqlalchemy as sa
from sendpost_wire import AgentEvent, BatchError, EventType, parse_batch
from sqlalchemy.engine import Connection

from sendpost_platform.clock import Clock
from sendpost_platform.domain.classify import Classification, classify
from sendpost_platform.errors import StoreError
from sendpost_platform.store import Store, counters, messages
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
                self._process(conn, claimed)
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
                self._process(conn, claimed)
        except (StoreError, sa.exc.OperationalError):
            raise
        except Exception as exc:
            log.exception("dead-lettering batch %s", [b.id for b in claimed])
            with self.store.write() as conn:
                ingest_store.mark_processed(
                    conn, [b.id for b in claimed], now=self.clock.now(), error=repr(exc)[:2000]
                )
                for batch in claimed:
                    counters.add(conn, batch.provider_id, "ingest.batches_failed")
            return len(claimed)
        if not claimed:
            self._one_at_a_time = False
        return len(claimed)

    def _process(self, conn: Connection, claimed: list[ingest_store.Batch]) -> None:
        if not claimed:
            return
        now = self.clock.now()
        parsed: list[tuple[ingest_store.Batch, list[AgentEvent]]] = []
        for batch in claimed:
            try:
                parsed.append((batch, parse_batch(batch.body)))
            except BatchError as exc:
                raise BadBatch(f"batch {batch.id}: {exc}") from exc
        known = messages.get_messages(conn, (e.message_id for _, evs in parsed for e in evs))
        for batch, agent_events in parsed:
            self._process_batch(conn, batch, agent_events, known)
        ingest_store.mark_processed(conn, [b.id for b in claimed], now=now)

    def _process_batch(
        self,
        conn: Connection,
        batch: ingest_store.Batch,
        agent_events: list[AgentEvent],
        known: dict[str, messages.Message],
    ) -> None:
        counts: collections.Counter[str] = collections.Counter()
        for event in agent_events:
            message = known.get(event.message_id)
            if message is None or message.provider_id != batch.provider_id:
                counts["ingest.discarded_out_of_scope"] += 1
                continue
            if event.event_type == "deferred":
                counts["ingest.deferred"] += 1
                continue
            new = agent_event_to_new_event(
                event,
                message,
                provider_id=batch.provider_id,
                received_at=batch.received_at,
                classifier=self.classifier,
            )
            if new is None:
                continue
            recorded = event_store.record_event(conn, new)
            counts[f"ingest.{recorded.outcome.value}"] += 1
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
        counters.add_many(conn, batch.provider_id, counts)
