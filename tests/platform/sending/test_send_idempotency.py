"""The send API's Idempotency-Key: a retried request answers as the first did and sends
nothing more, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import sqlalchemy as sa
from sendpost_platform.store.schema import messages

from tests.platform.sending.conftest import DOMAIN, SendingSetup

BODY: dict[str, Any] = {
    "from": {"email": f"news@{DOMAIN}", "name": "Shop"},
    "to": [{"email": "accept-1@example.org"}, {"email": "accept-2@example.org"}],
    "subject": "Hello",
    "textBody": "Hello there",
    "ippool": "main",
}


def stored(setup: SendingSetup) -> int:
    with setup.store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar() or 0)


async def post(
    client: httpx.AsyncClient, setup: SendingSetup, key: str | None, body: Any
) -> httpx.Response:
    headers = {"X-SubAccount-ApiKey": setup.seed.account.subaccount_key}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/api/v1/subaccount/email/", headers=headers, json=body)


async def test_a_retry_with_the_same_key_replays_the_answer(sending: SendingSetup) -> None:
    """Same key, same body: the second answer is the first (same message IDs), marked
    Idempotent-Replayed, and only the first request's two messages exist; without a key each
    request sends."""
    async with sending.client() as client:
        first = await post(client, sending, "order-42", BODY)
        again = await post(client, sending, "order-42", BODY)
        assert (first.status_code, again.status_code) == (200, 200)
        assert first.json() == again.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert 2 == stored(sending)
        await post(client, sending, None, BODY)
        await post(client, sending, None, BODY)
    assert 6 == stored(sending)


async def test_the_key_with_another_body_or_a_bad_key_is_refused(sending: SendingSetup) -> None:
    """The key reused with a different request: 422 naming the header, nothing sent; a key with
    spaces or over 255 characters: 400 naming it; the key expires after 24 hours."""
    async with sending.client() as client:
        assert (await post(client, sending, "k1", BODY)).status_code == 200
        other = await post(client, sending, "k1", {**BODY, "subject": "Changed"})
        assert other.status_code == 422
        assert ["header.Idempotency-Key"] == [e["field"] for e in other.json()["errors"]]
        for bad in ("has space", "x" * 256):
            refused = await post(client, sending, bad, BODY)
            assert refused.status_code == 400
            assert ["header.Idempotency-Key"] == [e["field"] for e in refused.json()["errors"]]
        assert 2 == stored(sending)
        sending.clock.advance(hours=24, seconds=1)
        later = await post(client, sending, "k1", {**BODY, "subject": "Changed"})
        assert later.status_code == 200
    assert 4 == stored(sending)


async def test_concurrent_requests_with_one_key_send_once(sending: SendingSetup) -> None:
    """Eight concurrent requests with one key: every answer is the first one's replay or 409,
    and the messages exist once."""
    async with sending.client() as client:
        answers = await asyncio.gather(*(post(client, sending, "burst", BODY) for _ in range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {200, 409}
    assert 200 in statuses
    ok = [a.json() for a in answers if a.status_code == 200]
    assert all(answer == ok[0] for answer in ok)
    assert 2 == stored(sending)
