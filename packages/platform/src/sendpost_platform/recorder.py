"""The event recorder: the one way every producer stores events.

Producers — agent processing (``processing.py``), the relay worker (``relay_worker.py``), the
bounce processor (``smtp/bounce_server.py``), tracking (``api/tracking.py``) and the send API
(``sending.py``) — build :class:`~sendpost_platform.store.events.NewEvent` values and hand a
group of them to :meth:`Recorder.record`, inside the transaction of their own work. In that
same transaction the recorder:

1. **unsubscribes** (CSUnsubscribe): suppresses each recipient for the message's sub-account
   (reason ``unsubscribe``); a report for a recipient already suppressed is not stored (an
   unsubscribe is recorded once);
2. **stores** the events with deduplication and writes an ``event_outbox`` row per new or
   upgraded event for each consumer that wants it (``store/events.py::record_events``);
3. **suppresses hard bounces**: each CSHardBounced that became the event of record (new, or
   upgrading a soft bounce) suppresses its recipient (reason ``hard_bounce``, first reason kept);
4. **counts**: ``{prefix}.{outcome}`` per event's provider when the producer asks for it, plus
   the producer's own counters, in one statement.

Every step is set-based: one statement per table for the whole group, so a worker recording
2,000 events pays the same number of round trips as one recording a single event. A crash
before the commit loses the whole group and the producer redoes it; the unique index makes the
replay harmless (exactly-once in effect).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence

from sendpost_wire import EventType
from sqlalchemy.engine import Connection

from sendpost_platform.domain.suppression import SuppressionReason, normalize_address
from sendpost_platform.store import counters, suppressions
from sendpost_platform.store.events import (
    OUTBOX_CONSUMERS,
    Interest,
    NewEvent,
    Outcome,
    Recorded,
    record_events,
)
from sendpost_platform.store.messages import Message

CounterKey = tuple[int, str]
"""``(provider_id, name)`` of a counter (provider 0: none)."""


@dataclasses.dataclass(frozen=True, slots=True)
class HardBounce:
    """A hard bounce that became the event of record: what suppression gets."""

    account_id: int
    subaccount_id: int
    recipient: str
    message_uuid: str
    event_id: int
    reason: str | None
    occurred_at: dt.datetime
    smtp_error: str | None = None
    """The reply as SendPost's ``smtpError`` shows it: code, status, text."""


HardBounceHook = Callable[[Connection, Sequence[HardBounce]], None]


def suppress_hard_bounces(conn: Connection, bounces: Sequence[HardBounce]) -> None:
    """Suppress the hard-bounced recipients for their sub-accounts (one statement)."""
    suppressions.add_suppressions(
        conn,
        [
            suppressions.NewSuppression(
                account_id=b.account_id,
                subaccount_id=b.subaccount_id,
                recipient=b.recipient,
                reason=SuppressionReason.hard_bounce.value,
                message_uuid=b.message_uuid,
                created_at=b.occurred_at,
                smtp_error=b.smtp_error,
            )
            for b in bounces
        ],
    )


class Recorder:
    """Records groups of events with their side effects (see the module docstring)."""

    def __init__(
        self,
        *,
        on_hard_bounces: HardBounceHook = suppress_hard_bounces,
        consumers: Mapping[str, Interest] = OUTBOX_CONSUMERS,
    ) -> None:
        self.on_hard_bounces = on_hard_bounces
        self.consumers = dict(consumers)

    def record(
        self,
        conn: Connection,
        new_events: Sequence[NewEvent],
        *,
        count_as: str | None = None,
        counts: Mapping[CounterKey, int] | None = None,
        known: Mapping[str, Message] | None = None,
    ) -> list[Recorded]:
        """Record ``new_events`` (one result each, in order). With ``count_as``, each result
        adds one to ``{count_as}.{outcome}`` of its event's provider; ``counts`` are added in
        the same statement. ``known``: the group's messages, when the producer has read them
        (by UUID; saves looking them up again)."""
        results: list[Recorded | None] = [None] * len(new_events)
        unsubscribes = [
            i for i, e in enumerate(new_events) if e.event_type == EventType.CSUnsubscribe
        ]
        if unsubscribes:
            fresh = self._unsubscribe(conn, [new_events[i] for i in unsubscribes])
            for i, is_new in zip(unsubscribes, fresh, strict=True):
                if not is_new:
                    results[i] = Recorded(Outcome.DUPLICATE, None, new_events[i].event_type)
        to_store = [i for i, r in enumerate(results) if r is None]
        stored = record_events(
            conn, [new_events[i] for i in to_store], consumers=self.consumers, known=known
        )
        for i, recorded in zip(to_store, stored, strict=True):
            results[i] = recorded
        done = [r for r in results if r is not None]
        bounces = [
            _hard_bounce(event, recorded)
            for event, recorded in zip(new_events, done, strict=True)
            if recorded.event_type == EventType.CSHardBounced
            and recorded.stored
            and event.subaccount_id is not None
        ]
        if bounces:
            self.on_hard_bounces(conn, bounces)
        total: collections.Counter[CounterKey] = collections.Counter(counts or {})
        if count_as is not None:
            outcomes = collections.Counter(
                (event.provider_id or 0, recorded.outcome)
                for event, recorded in zip(new_events, done, strict=True)
            )
            for (provider_id, outcome), amount in outcomes.items():
                total[(provider_id, f"{count_as}.{outcome.value}")] += amount
        counters.add_keyed(conn, total)
        return done

    def _unsubscribe(self, conn: Connection, unsubscribes: Sequence[NewEvent]) -> list[bool]:
        """Suppress each unsubscribing recipient; whether each one was new (the first report of
        a recipient in the group counts, later ones in it are repeats)."""
        rows = [
            suppressions.NewSuppression(
                account_id=e.account_id,
                subaccount_id=e.subaccount_id or 0,
                recipient=e.recipient or "",
                reason=SuppressionReason.unsubscribe.value,
                message_uuid=e.message_uuid,
                created_at=e.received_at,
            )
            for e in unsubscribes
        ]
        added = suppressions.add_suppressions(conn, rows)
        fresh = []
        for row in rows:
            key = (row.subaccount_id, normalize_address(row.recipient))
            fresh.append(key in added)
            added.discard(key)
        return fresh


def _hard_bounce(event: NewEvent, recorded: Recorded) -> HardBounce:
    assert event.subaccount_id is not None
    assert recorded.event_id is not None
    return HardBounce(
        account_id=event.account_id,
        subaccount_id=event.subaccount_id,
        recipient=event.recipient or "",
        message_uuid=event.message_uuid,
        event_id=recorded.event_id,
        reason=event.reason,
        occurred_at=event.occurred_at,
        smtp_error=smtp_error(event),
    )


def smtp_error(event: NewEvent) -> str | None:
    """A bounce's reply as SendPost's ``smtpError`` shows it: code, status, text (≤ 2,000)."""
    parts = [str(p) for p in (event.smtp_code, event.enhanced_status, event.description) if p]
    return " ".join(parts)[:2000] or None


RECORDER = Recorder()
"""The recorder with the platform's side effects and consumers (what producers use by default)."""
