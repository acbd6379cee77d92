"""Every metric of the agent, and the health decision. Nothing else creates metrics.

The metrics are registered on a :class:`prometheus_client.CollectorRegistry` that the caller
passes in; the list with types and labels is ``docs/metrics.md`` (a test keeps the two equal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

P = "sendpost_agent_"


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(P + name, doc, labels, registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(P + name, doc, registry=registry)

        self.registry = registry
        self.lines_read = counter("lines_read", "Log lines read.")
        self.lines_unparsed = counter(
            "lines_unparsed", "Log lines not understood, by reason.", ("reason",)
        )
        self.events = counter("events", "Events produced from the log, by type.", ("type",))
        self.uncorrelated = counter(
            "uncorrelated_lines", "Delivery lines of queue IDs with no message UUID."
        )
        self.hops = counter(
            "hops",
            "`sent ... queued as NEWID` lines to an internal relay, by outcome: `resolved` (NEWID "
            "seen in the log: a hop) or `unresolved` (never seen: reported as delivered).",
            ("outcome",),
        )
        self.recipients_from_orig_to = counter(
            "recipients_from_orig_to",
            "Events whose recipient is Postfix's orig_to= (the rewritten address is "
            "final_recipient).",
        )
        self.log_rotations = counter("log_rotations", "Log rotations followed, by kind.", ("kind",))
        self.log_offset = gauge("log_offset_bytes", "Read position in the current log file.")
        self.reading_paused = gauge(
            "reading_paused", "1 while reading stops because the WAL is full."
        )
        self.batches_sent = counter("batches_sent", "Batches acknowledged with a 2xx.")
        self.batches_failed = counter(
            "batches_failed",
            "Failed batch requests, by reason (transient, key_rejected, too_large, rejected).",
            ("reason",),
        )
        self.heartbeats = counter(
            "heartbeats",
            "Heartbeats sent to the platform, by result (ok, rejected, unsupported, failed).",
            ("result",),
        )
        self.retries = counter("retries", "Requests sent again after a transient failure.")
        self.events_shipped = counter("events_shipped", "Events acknowledged by the platform.")
        self.dead_lettered = counter(
            "events_dead_lettered", "Events written to dead-letter.jsonl after a 4xx."
        )
        self.key_rejected = gauge("key_rejected", "1 while the platform rejects the API key.")
        self.last_ship = gauge(
            "last_successful_ship_timestamp_seconds", "Unix time of the last 2xx answer."
        )
        self.wal_bytes = gauge("wal_bytes", "Bytes of unacknowledged events in the WAL.")
        self.wal_events = gauge("wal_events", "Unacknowledged events in the WAL.")
        self.wal_capacity = gauge("wal_capacity_bytes", "The WAL cap (wal-max-bytes).")
        self.wal_repairs = counter("wal_torn_tail_repairs", "Torn or corrupt WAL tails cut back.")
        self.state_resets = counter(
            "state_resets", "State files found unreadable and reset, by file.", ("file",)
        )
        self._seen: dict[str, Any] = {}

    def observe_parse(self, stats: Any) -> None:
        """Add what the parser counted since the previous call (``ParseStats`` is cumulative)."""
        self._delta("lines", stats.lines, self.lines_read, None)
        self._delta("uncorrelated", stats.uncorrelated, self.uncorrelated, None)
        self._delta("hops:resolved", stats.hops_resolved, self.hops, "resolved")
        self._delta("hops:unresolved", stats.hops_unresolved, self.hops, "unresolved")
        self._delta("orig_to", stats.recipients_from_orig_to, self.recipients_from_orig_to, None)
        for reason, n in dict(stats.unparsed).items():
            self._delta(f"unparsed:{reason}", n, self.lines_unparsed, str(reason))
        for kind, n in dict(stats.events).items():
            self._delta(f"events:{kind}", n, self.events, str(kind))

    def _delta(self, key: str, total: int, metric: Counter, label: str | None) -> None:
        step = int(total) - self._seen.get(key, 0)
        if step > 0:
            (metric.labels(label) if label is not None else metric).inc(step)
        self._seen[key] = int(total)


@dataclasses.dataclass
class Status:
    """What ``/health`` reports; the app keeps it current."""

    log_path: str
    log_error: str | None = None
    log_offset: int = 0
    wal_events: int = 0
    wal_bytes: int = 0
    wal_max_bytes: int = 1
    key_rejected: bool = False
    last_ship: float | None = None
    last_error: str | None = None
    waiting_since: float | None = None
    stopping: bool = False


def health(status: Status, now: float, stale_after: float) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body): 503 with reasons when the agent is not doing its job."""
    reasons: list[str] = []
    if status.log_error:
        reasons.append(f"log unreadable: {status.log_error}")
    if status.wal_bytes > 0.9 * status.wal_max_bytes:
        reasons.append("WAL over 90% full")
    if status.key_rejected:
        reasons.append("API key rejected by the endpoint")
    if (
        status.wal_events > 0
        and status.waiting_since is not None
        and now - status.waiting_since > stale_after
    ):
        reasons.append(f"events waiting over {int(stale_after)} s without a successful ship")
    body: dict[str, Any] = {
        "state": "unhealthy" if reasons else ("stopping" if status.stopping else "ok"),
        "reasons": reasons,
        "log": {"path": status.log_path, "offset": status.log_offset, "error": status.log_error},
        "wal": {
            "events": status.wal_events,
            "bytes": status.wal_bytes,
            "max_bytes": status.wal_max_bytes,
        },
        "last_successful_ship": status.last_ship,
        "last_error": status.last_error,
    }
    return (503 if reasons else 200), body


def snapshot(metrics: Metrics) -> Mapping[str, float]:
    """Flat name{labels} → value view of the registry (for tests and the catch-up bench)."""
    out: dict[str, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
