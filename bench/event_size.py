"""Benchmark: bytes per stored event on PostgreSQL (heap, TOAST and indexes of ``events``).

    .venv/bin/python bench/event_size.py [--messages 50000]

In a fresh schema of database ``test`` at 127.0.0.1:5432 (migrated, dropped afterwards): one
account and provider, ``--messages`` messages, and per message the event processing stores for
an agent report (90% CSDelivered, 6% CSHardBounced, 4% CSSoftBounced, with the reply texts and
details of ``bench/pipeline.py``), recorded through the event recorder in groups of 2,000. Then
``VACUUM ANALYZE`` and the sizes of the partitioned ``events`` table (all partitions: heap with
TOAST, and indexes) and of ``event_outbox`` (transient: its rows are deleted once the consumer
has handed the events on). Prints bytes per event and the storage for 50 million events a day
over the default 30-day retention.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import secrets
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args()

    import psycopg
    import sqlalchemy as sa
    from sendpost_platform.recorder import RECORDER
    from sendpost_platform.store import Store, accounts, providers
    from sendpost_platform.store.events import NewEvent
    from sendpost_platform.store.schema import messages
    from sendpost_wire import EventType

    from bench.pipeline import HARD, SOFT

    schema = f"sp_bench_size_{secrets.token_hex(4)}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    store = Store.open(f"{PG_SERVER}?options=-csearch_path%3D{schema}", pool_size=2)
    try:
        store.migrate()
        now = dt.datetime.now(dt.UTC)
        rng = random.Random(17)
        with store.write() as conn:
            account = accounts.create_account(conn, name="Bench", now=now)
            provider, _ = providers.create_provider(
                conn,
                account_id=account.account_id,
                name="mta",
                host="127.0.0.1",
                port=2525,
                security="none",
                test_from="test@sender.example",
                test_to="check@example.com",
                now=now,
            )
            rows = [
                {
                    "uuid": str(uuid.uuid4()),
                    "account_id": account.account_id,
                    "subaccount_id": account.subaccount_id,
                    "provider_id": provider.id,
                    "recipient": f"user{n}@example.com",
                    "sender": "news@sender.example",
                    "state": "sent",
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(args.messages)
            ]
            conn.execute(sa.insert(messages), rows)
        reports = []
        for row in rows:
            draw = rng.random()
            code, text, kind = 250, "250 2.0.0 OK queued as 4XyZ1", EventType.CSDelivered
            if draw >= 0.9:
                kind = EventType.CSHardBounced if draw < 0.96 else EventType.CSSoftBounced
                code, text = rng.choice(HARD if kind == EventType.CSHardBounced else SOFT)
                text = text.format(rcpt=row["recipient"])
            reports.append(
                NewEvent(
                    message_uuid=row["uuid"],
                    account_id=account.account_id,
                    subaccount_id=account.subaccount_id,
                    provider_id=provider.id,
                    event_type=int(kind),
                    recipient=row["recipient"],
                    occurred_at=now,
                    received_at=now,
                    source="agent",
                    smtp_code=code,
                    enhanced_status=text[4:9] if text[4:5].isdigit() else None,
                    smtp_command="RCPT" if kind != EventType.CSDelivered else None,
                    reason=None if kind == EventType.CSDelivered else "bench",
                    description=text,
                    agent_event_id=secrets.token_hex(8),
                    details={"agentEventType": "delivered", "queueId": "4XyZ1ABC"},
                )
            )
        started = time.perf_counter()
        for start in range(0, len(reports), 2000):
            with store.write() as conn:
                RECORDER.record(conn, reports[start : start + 2000])
        recorded = time.perf_counter() - started
        with psycopg.connect(PG_SERVER, autocommit=True, options=f"-csearch_path={schema}") as c:
            c.execute("VACUUM ANALYZE")
            sizes = c.execute(
                "SELECT sum(pg_table_size(relid)), sum(pg_indexes_size(relid))"
                " FROM pg_partition_tree('events')"
            ).fetchone()
            outbox = c.execute("SELECT pg_total_relation_size('event_outbox')").fetchone()
            count = c.execute("SELECT count(*) FROM events").fetchone()
        assert sizes is not None
        assert outbox is not None
        assert count is not None
        heap, indexes = int(sizes[0]), int(sizes[1])
        events = int(count[0])
        per_event = (heap + indexes) / events
        print(f"events stored: {events} in {recorded:.1f}s (recorder, one process)")
        print(f"events heap+TOAST: {heap / events:.0f} B/event, indexes: {indexes / events:.0f}")
        print(f"events total: {per_event:.0f} B/event; event_outbox {outbox[0] / events:.0f}")
        day = 50_000_000 * per_event
        print(f"50M events/day: {day / 1e9:.1f} GB/day, {30 * day / 1e9:.0f} GB over 30 days")
    finally:
        store.dispose()
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
