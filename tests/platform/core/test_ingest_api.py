"""The ingestion endpoint, exactly per the wire contract (SPEC "Wire contract")."""

from __future__ import annotations

import datetime as dt
import json
import socket
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sendpost_platform.api.auth import INGEST_KEY_CACHE_SECONDS, ingest_key_cache
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.store import Store, accounts, providers
from sendpost_platform.store.schema import ingest_batches

from tests.platform.conftest import Seed, add_provider
from tests.platform.core.helpers import INGEST_PATH, agent_event, post_events


def stored_bodies(store: Store) -> list[bytes]:
    with store.read() as conn:
        return [bytes(b) for b in conn.execute(sa.select(ingest_batches.c.body)).scalars()]


async def test_valid_batch_is_stored_raw_and_marks_agent_seen(
    client: httpx.AsyncClient, seed: Seed, store: Store, clock: ManualClock
) -> None:
    """200 means the exact body is in the store, and the provider's agent_last_seen_at moved."""
    body = {"events": [agent_event(str(uuid.uuid4())), agent_event(str(uuid.uuid4()), "deferred")]}
    raw = json.dumps(body).encode()
    response = await client.post(
        INGEST_PATH,
        headers={"X-SP-Event-ApiKey": seed.ingest_key, "Content-Type": "application/json"},
        content=raw,
    )
    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert [raw] == stored_bodies(store)
    with store.read() as conn:
        provider = providers.get_provider_by_id(conn, seed.provider.id)
    assert provider is not None
    assert clock.now() == provider.agent_last_seen_at


@pytest.mark.parametrize("key", [None, "", "spe_not-a-key"])
async def test_missing_or_unknown_key_is_401(
    client: httpx.AsyncClient, seed: Seed, store: Store, key: str | None
) -> None:
    """No key or a wrong key: 401, nothing stored."""
    headers = {} if key is None else {"X-SP-Event-ApiKey": key}
    response = await client.post(
        INGEST_PATH, headers=headers, json={"events": [agent_event(str(uuid.uuid4()))]}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert stored_bodies(store) == []


async def test_deleted_provider_key_is_401(
    client: httpx.AsyncClient, seed: Seed, store: Store, clock: ManualClock
) -> None:
    """Deleting the provider makes its key stop working at once."""
    with store.write() as conn:
        providers.delete_provider(
            conn, account_id=seed.account.account_id, provider_id=seed.provider.id, now=clock.now()
        )
    response = await post_events(client, seed.ingest_key, [agent_event(str(uuid.uuid4()))])
    assert response.status_code == 401


async def test_rotated_key_works_during_grace_then_401(
    client: httpx.AsyncClient, seed: Seed, store: Store, clock: ManualClock
) -> None:
    """After rotation both keys work until the grace period ends; then only the new one."""
    with store.write() as conn:
        new_key = providers.rotate_ingest_key(
            conn, provider_id=seed.provider.id, now=clock.now(), grace=dt.timedelta(hours=1)
        )
    events = [agent_event(str(uuid.uuid4()))]
    assert (await post_events(client, seed.ingest_key, events)).status_code == 200
    assert (await post_events(client, new_key, events)).status_code == 200
    clock.advance(hours=1)
    assert (await post_events(client, seed.ingest_key, events)).status_code == 401
    assert (await post_events(client, new_key, events)).status_code == 200


@pytest.mark.parametrize(
    ("content", "expected_errors"),
    [
        (b"", [{"index": None, "field": "", "message": "empty body"}]),
        (b'{"events": []}', [{"index": None, "field": "events", "message": "no events"}]),
        (
            b'{"nope": 1}',
            [{"index": None, "field": "events", "message": "must be a list of events"}],
        ),
    ],
)
async def test_empty_or_eventless_body_is_400(
    client: httpx.AsyncClient,
    seed: Seed,
    store: Store,
    content: bytes,
    expected_errors: list[dict[str, object]],
) -> None:
    """Empty body and batches without events are refused with the problem named."""
    response = await client.post(
        INGEST_PATH, headers={"X-SP-Event-ApiKey": seed.ingest_key}, content=content
    )
    assert response.status_code == 400
    assert expected_errors == response.json()["errors"]
    assert stored_bodies(store) == []


async def test_malformed_json_is_400(client: httpx.AsyncClient, seed: Seed) -> None:
    """Malformed JSON: 400 naming the batch, not the event."""
    response = await client.post(
        INGEST_PATH, headers={"X-SP-Event-ApiKey": seed.ingest_key}, content=b'{"events": ['
    )
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["index"], error["field"]) == (None, "")
    assert error["message"].startswith("malformed JSON")


async def test_one_bad_event_rejects_the_whole_batch_naming_each_problem(
    client: httpx.AsyncClient, seed: Seed, store: Store
) -> None:
    """Every bad event is named by index and field; nothing of the request is accepted."""
    events = [
        agent_event(str(uuid.uuid4())),
        {"message_id": "not-a-uuid", "event_type": "delivered"},
        agent_event(str(uuid.uuid4()), "exploded", timestamp="yesterday"),
    ]
    response = await post_events(client, seed.ingest_key, events)
    assert response.status_code == 400
    fields = [(e["index"], e["field"]) for e in response.json()["errors"]]
    assert fields == [(1, "message_id"), (2, "event_type"), (2, "timestamp")]
    assert stored_bodies(store) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("smtp_description", "250 ok\x00", "contains a NUL character (at 6)"),
        ("smtp_command", "C" * 65, "longer than 64 characters (65)"),
        ("recipient", "r" * 309 + "@example.com", "longer than 320 characters (321)"),
        ("event_id", "e" * 201, "longer than 200 characters (201)"),
        (
            "smtp_description",
            "250 \ud800",
            "contains a lone surrogate (at 4), which is not valid Unicode",
        ),
        ("recipient", "İ" * 310 + "@x.example", "longer than 320 characters once lower-cased"),
    ],
)
async def test_values_the_store_cannot_keep_are_400_naming_index_and_field(
    client: httpx.AsyncClient, seed: Seed, store: Store, field: str, value: str, message: str
) -> None:
    """What processing could not store is refused at the door (400, index, field, problem),
    never acknowledged with a 200 and lost later; nothing of the request is stored."""
    events = [agent_event(str(uuid.uuid4())), agent_event(str(uuid.uuid4()), **{field: value})]
    body = json.dumps({"events": events}).encode()  # ASCII: NUL and surrogates as \u escapes
    response = await client.post(
        INGEST_PATH, headers={"X-SP-Event-ApiKey": seed.ingest_key}, content=body
    )
    assert 400 == response.status_code
    assert [{"index": 1, "field": field, "message": message}] == response.json()["errors"]
    assert [] == stored_bodies(store)


async def test_deeply_nested_body_is_400_not_500(client: httpx.AsyncClient, seed: Seed) -> None:
    """A body nested 100,000 levels deep (under 1 MiB) is malformed JSON: 400 naming the batch."""
    body = b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    response = await client.post(
        INGEST_PATH, headers={"X-SP-Event-ApiKey": seed.ingest_key}, content=body
    )
    assert 400 == response.status_code
    expected = [{"index": None, "field": "", "message": "malformed JSON: nested too deeply"}]
    assert expected == response.json()["errors"]


async def test_over_1000_events_is_413(client: httpx.AsyncClient, seed: Seed, store: Store) -> None:
    """1,000 events are accepted, 1,001 are refused with 413."""
    mid = str(uuid.uuid4())
    ok = await post_events(
        client, seed.ingest_key, [{"message_id": mid, "event_type": "deferred"}] * 1000
    )
    assert ok.status_code == 200
    too_many = await post_events(
        client, seed.ingest_key, [{"message_id": mid, "event_type": "deferred"}] * 1001
    )
    assert too_many.status_code == 413
    assert len(stored_bodies(store)) == 1


async def test_over_1000_events_with_invalid_ones_is_still_413(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """The size limit wins over validation: an oversized batch is 413 even if it has bad events."""
    response = await post_events(client, seed.ingest_key, [{"event_type": "x"}] * 1001)
    assert response.status_code == 413


async def test_body_over_one_mebibyte_is_413_by_content_length(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """A declared Content-Length over 1 MiB is refused before the body is read."""
    body = b'{"events": [' + b" " * (1024 * 1024) + b"]}"
    response = await client.post(
        INGEST_PATH, headers={"X-SP-Event-ApiKey": seed.ingest_key}, content=body
    )
    assert response.status_code == 413


async def test_streamed_body_over_one_mebibyte_is_413(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """Without Content-Length (chunked), reading stops with 413 once 1 MiB is passed."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        for _ in range(40):
            yield b" " * 32768

    response = await client.post(
        INGEST_PATH, headers={"X-SP-Event-ApiKey": seed.ingest_key}, content=chunks()
    )
    assert response.status_code == 413


@pytest.mark.parametrize("storage", ["memory", "redis"])
async def test_rate_limit_answers_429_with_retry_after(
    seed: Seed, store: Store, clock: ManualClock, settings: Settings, storage: str
) -> None:
    """Over the per-key limit: 429 with Retry-After; another key is not affected."""
    url = None
    if storage == "redis":
        redis = pytest.importorskip("redis")
        try:
            redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
        except redis.RedisError as exc:
            pytest.skip(f"Redis at 127.0.0.1:6379 unreachable: {exc}")
        url = "redis://127.0.0.1:6379/0"  # keys are random per test: no clash between runs
    limited = Settings(
        database_url=settings.database_url,
        secret_key="k",
        ingest_rate_limit="3/minute",
        rate_limit_url=url,
    )
    app = create_app(limited, clock=clock, store=store)
    _other, other_key = seed.other_provider()
    events = [agent_event(str(uuid.uuid4()))]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        statuses = [(await post_events(c, seed.ingest_key, events)).status_code for _ in range(4)]
        refused = await post_events(c, seed.ingest_key, events)
        other = await post_events(c, other_key, events)
    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert other.status_code == 200


async def test_rate_limit_storage_down_falls_back_to_memory(
    seed: Seed,
    store: Store,
    clock: ManualClock,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis unreachable (a closed loopback port): ingestion still answers 200 and the limit is
    still applied, counted in the process's memory; the log says so once, not per request."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    limited = Settings(
        database_url=settings.database_url,
        secret_key="k",
        ingest_rate_limit="3/minute",
        rate_limit_url=f"redis://127.0.0.1:{closed_port}/0",
    )
    app = create_app(limited, clock=clock, store=store)
    events = [agent_event(str(uuid.uuid4()))]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        statuses = [(await post_events(c, seed.ingest_key, events)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    warnings = [r for r in caplog.records if "rate-limit storage" in r.getMessage()]
    assert len(warnings) == 1


async def test_key_lookups_are_cached_and_a_revocation_elsewhere_applies_within_the_bound(
    app: FastAPI, client: httpx.AsyncClient, seed: Seed, store: Store, clock: ManualClock
) -> None:
    """Repeated requests with one key cost one database look-up; a deletion made by another
    process (straight in the store) is honoured once INGEST_KEY_CACHE_SECONDS have passed."""
    cache = ingest_key_cache(app.state.ctx)
    events = [agent_event(str(uuid.uuid4()))]
    statuses = [(await post_events(client, seed.ingest_key, events)).status_code for _ in range(3)]
    with store.write() as conn:
        providers.delete_provider(
            conn, account_id=seed.account.account_id, provider_id=seed.provider.id, now=clock.now()
        )
    clock.advance(seconds=INGEST_KEY_CACHE_SECONDS)
    after = (await post_events(client, seed.ingest_key, events)).status_code
    assert ([200, 200, 200], 401, 2) == (statuses, after, cache.lookups)


async def test_agent_last_seen_moves_at_one_second_resolution(
    client: httpx.AsyncClient, seed: Seed, store: Store, clock: ManualClock
) -> None:
    """Batches within a second of the last recorded sighting leave agent_last_seen_at alone;
    one a second later moves it."""
    events = [agent_event(str(uuid.uuid4()))]

    async def seen_after_post(advance: float) -> dt.datetime | None:
        clock.advance(advance)
        assert (await post_events(client, seed.ingest_key, events)).status_code == 200
        with store.read() as conn:
            provider = providers.get_provider_by_id(conn, seed.provider.id)
        assert provider is not None
        return provider.agent_last_seen_at

    first = clock.now()
    seen = [await seen_after_post(0), await seen_after_post(0.5), await seen_after_post(0.5)]
    assert [first, first, first + dt.timedelta(seconds=1)] == seen


@pytest.mark.postgres
async def test_postgres_stores_bodies_lz4_compressed_and_reads_them_back_exactly(
    pg_store: Store,
) -> None:
    """On PostgreSQL (built with LZ4, as Debian's is) a stored body is LZ4-compressed and
    reads back byte for byte."""
    with pg_store.write() as conn:
        account = accounts.create_account(conn, name="pg", now=dt.datetime.now(dt.UTC))
        _provider, key = add_provider(conn, account.account_id, ManualClock())
    events = [agent_event(str(uuid.uuid4()), smtp_description="x" * 5000) for _ in range(3)]
    raw = json.dumps({"events": events}).encode()
    app = create_app(Settings(database_url="postgresql://unused", secret_key="k"), store=pg_store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.post(INGEST_PATH, headers={"X-SP-Event-ApiKey": key}, content=raw)
    with pg_store.read() as conn:
        stored = conn.execute(
            sa.select(ingest_batches.c.body, sa.func.pg_column_compression(ingest_batches.c.body))
        ).one()
    assert (200, raw, "lz4") == (response.status_code, bytes(stored[0]), stored[1])
