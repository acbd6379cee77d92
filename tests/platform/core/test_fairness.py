"""Fair claims: one provider's flood of batches cannot hold back another provider's events.

The bound (docs/events.md): a batch of a provider is claimed by the next claim any worker makes
once it is stored, as long as at most ``worker_claim_batches`` providers have batches pending;
before it, at most the claim in flight plus the flooding provider's share of that next claim
are processed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sendpost_platform.clock import ManualClock
from sendpost_platform.store import Store, accounts, ingest
from sendpost_platform.store.schema import events, ingest_batches

from tests.platform.conftest import Seed, add_provider
from tests.platform.core.helpers import agent_event

PLATFORM = str(Path(sys.executable).parent / "sendpost-platform")


def store_batches(seed: Seed, provider_id: int, count: int) -> list[int]:
    message = seed.message(provider_id=provider_id)
    body = json.dumps({"events": [agent_event(message.uuid)]}).encode()
    with seed.store.write() as conn:
        return ingest.insert_batches(
            conn, [ingest.IncomingBatch(provider_id, body, 1)] * count, now=seed.clock.now()
        )


def test_a_claim_gives_each_provider_with_pending_batches_an_equal_share(seed: Seed) -> None:
    """Provider A has 60 batches pending, then B stores one: a claim of 20 takes B's batch and
    A's 10 oldest (each provider half), not A's 20 oldest."""
    other, _ = seed.other_provider()
    flood = store_batches(seed, seed.provider.id, 60)
    [single] = store_batches(seed, other.id, 1)
    with seed.store.write() as conn:
        claimed = [b.id for b in ingest.claim(conn, limit=20)]
    assert claimed == [*flood[:10], single]


def test_claims_rotate_when_more_providers_than_the_claim_has_room_for(seed: Seed) -> None:
    """Three providers with pending batches and claims of 2: each claim starts after the last
    provider the previous one served, so the third provider is not starved."""
    providers = [seed.provider.id, seed.other_provider("b")[0].id, seed.other_provider("c")[0].id]
    for provider_id in providers:
        store_batches(seed, provider_id, 5)
    with seed.store.write() as conn:
        first = [b.provider_id for b in ingest.claim(conn, limit=2)]
        second = [b.provider_id for b in ingest.claim(conn, limit=2, after_provider=first[-1])]
    assert (first, second) == (providers[:2], [providers[0], providers[2]])


@pytest.mark.postgres
@pytest.mark.slow
def test_a_single_event_of_tenant_b_is_processed_within_2s_while_tenant_a_has_200000_queued(
    pg_store: Store, pg_schema_url: str
) -> None:
    """Tenant A has 200,000 events queued (2,000 batches) and a `sendpost-platform worker`
    process working through them; tenant B then stores one event. B's event is stored within
    2 s; A's batches processed after B's batch committed and up to B's number at most the claim
    in flight plus A's share of the next claim (20 + 10 batches); and A still has most of its
    backlog pending (B did not wait for it)."""
    clock = ManualClock()
    with pg_store.write() as conn:
        tenant_a = accounts.create_account(conn, name="A", now=clock.now())
        tenant_b = accounts.create_account(conn, name="B", now=clock.now())
        provider_a, _ = add_provider(conn, tenant_a.account_id, clock)
        provider_b, _ = add_provider(conn, tenant_b.account_id, clock)
        uuids = conn.execute(
            sa.text(
                "INSERT INTO messages (uuid, account_id, subaccount_id, provider_id, recipient,"
                " sender, state, created_at, updated_at)"
                " SELECT gen_random_uuid()::text, :account, :subaccount, :provider,"
                " 'user' || n || '@example.org', 'news@a.example', 'sent', now(), now()"
                " FROM generate_series(1, 200001) AS n RETURNING uuid"
            ),
            {
                "account": tenant_a.account_id,
                "subaccount": tenant_a.subaccount_id,
                "provider": provider_a.id,
            },
        ).scalars()
        *flood_uuids, b_uuid = list(uuids)
        conn.execute(
            sa.text(
                "UPDATE messages SET account_id = :account, subaccount_id = :subaccount,"
                " provider_id = :provider WHERE uuid = :uuid"
            ),
            {
                "account": tenant_b.account_id,
                "subaccount": tenant_b.subaccount_id,
                "provider": provider_b.id,
                "uuid": b_uuid,
            },
        )
    bodies = [
        json.dumps({"events": [agent_event(u) for u in flood_uuids[i : i + 100]]}).encode()
        for i in range(0, len(flood_uuids), 100)
    ]
    for start in range(0, len(bodies), 250):
        with pg_store.write() as conn:
            ingest.insert_batches(
                conn,
                [ingest.IncomingBatch(provider_a.id, b, 100) for b in bodies[start : start + 250]],
                now=clock.now(),
            )
    env = {
        **os.environ,
        "SENDPOST_DATABASE_URL": pg_schema_url,
        "SENDPOST_SECRET_KEY": "test-secret-key",
        "SENDPOST_WORKER_IDLE_INTERVAL": "0.05",
    }
    worker = subprocess.Popen([PLATFORM, "worker"], env=env)
    try:
        deadline = time.monotonic() + 120
        while pending_batches(pg_store, provider_a.id) == len(bodies):
            assert time.monotonic() < deadline, "the worker did not start processing"
            time.sleep(0.05)  # bounded wait: the worker is working through A's flood
        body = json.dumps({"events": [agent_event(b_uuid)]}).encode()
        arrived = time.time()
        with pg_store.write() as conn:
            ingest.insert_batches(
                conn, [ingest.IncomingBatch(provider_b.id, body, 1)], now=clock.now()
            )
        committed = time.time()  # any claim starting from now on sees B's batch
        while not stored(pg_store, b_uuid):
            assert time.time() - arrived < 30, "tenant B's event was never processed"
            time.sleep(0.01)  # bounded wait for B's event
        waited = time.time() - arrived
        a_pending = pending_batches(pg_store, provider_a.id)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    with pg_store.read() as conn:
        b_done = conn.execute(
            sa.select(ingest_batches.c.processed_at).where(
                ingest_batches.c.provider_id == provider_b.id
            )
        ).scalar_one()
        a_meanwhile = conn.execute(
            sa.select(sa.func.count()).where(
                ingest_batches.c.provider_id == provider_a.id,
                ingest_batches.c.processed_at > sa.func.to_timestamp(committed),
                ingest_batches.c.processed_at <= b_done,
            )
        ).scalar_one()
    assert waited <= 2.0, f"tenant B's event waited {waited:.2f}s"
    assert a_meanwhile <= 30
    assert a_pending * 100 >= 100_000, "A's backlog was drained before B: no contest"


def pending_batches(store: Store, provider_id: int) -> int:
    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    ingest_batches.c.provider_id == provider_id,
                    ingest_batches.c.processed_at.is_(None),
                )
            ).scalar_one()
        )


def stored(store: Store, message_uuid: str) -> bool:
    with store.read() as conn:
        query = sa.select(events.c.id).where(events.c.message_uuid == message_uuid)
        return conn.execute(query).first() is not None
