"""Request bodies of every API: a size limit (413) and JSON no route chokes on (400, not 500).

Each body below is otherwise valid for its route, so without the checks the bad string would
reach the route and the database.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sendpost_platform.api import bodies

from tests.platform.conftest import Seed
from tests.platform.core.helpers import INGEST_PATH

SURROGATE = "\ud800"


def routes(seed: Seed) -> list[tuple[str, str, str, dict[str, Any], str]]:
    """(method, path, key header, valid body, a string field of it) for each JSON API."""
    account = {"X-Account-ApiKey": seed.account.account_key}
    provider = {
        "name": "mta",
        "host": "127.0.0.1",
        "port": 2525,
        "security": "none",
        "testFrom": "t@sender.example",
        "testTo": "c@example.com",
    }
    pool = {"name": "main", "routingStrategy": 0, "tpsps": [seed.provider.id]}
    send = {
        "from": {"email": "news@sender.example"},
        "to": [{"email": "a@example.org"}],
        "subject": "Hello",
        "textBody": "Hi",
        "ippool": "main",
    }
    sub = {"X-SubAccount-ApiKey": seed.account.subaccount_key}
    return [
        ("POST", "/api/v1/tpsp/custom-smtp", json.dumps(account), provider, "name"),
        ("POST", "/api/v1/tpsp/test/custom-smtp", json.dumps(account), provider, "name"),
        ("PATCH", f"/api/v1/tpsp/custom-smtp/{seed.provider.id}", json.dumps(account), {}, "name"),
        ("POST", "/api/v1/account/ippool", json.dumps(account), pool, "name"),
        ("POST", "/api/v1/subaccount/domain", json.dumps(sub), {"name": "shop.example"}, "name"),
        ("POST", "/api/v1/subaccount/email/", json.dumps(sub), send, "subject"),
    ]


async def call(
    client: httpx.AsyncClient, method: str, path: str, headers: str, content: bytes
) -> httpx.Response:
    return await client.request(
        method,
        path,
        content=content,
        headers={**json.loads(headers), "content-type": "application/json"},
    )


@pytest.mark.parametrize("index", range(6))
async def test_lone_surrogates_and_nul_are_400_naming_the_field(
    client: httpx.AsyncClient, seed: Seed, index: int
) -> None:
    """A lone surrogate or NUL in a value, or a lone surrogate in a key, of the providers,
    pools, domains and send APIs → 400 naming the field (was a 500 from the database or the
    error renderer); the send API answers 422 (SendPost's status for a body it cannot process)
    and refuses NUL in its subject as the header injection it is (``header_injection``)."""
    method, path, headers, body, field = routes(seed)[index]
    send = path.startswith("/api/v1/subaccount/email")
    bad = 422 if send else 400
    cases = [
        ({**body, field: f"x{SURROGATE}"}, f"body.{field}", "contains a lone surrogate", bad),
        (
            {**body, field: "x\x00y"},
            field if send else f"body.{field}",
            "contains NUL" if send else "contains a NUL character",
            422 if send else 400,
        ),
        ({**body, f"k{SURROGATE}": 1}, "body.k\\ud800", "key contains a lone surrogate", bad),
    ]
    for sent, name, message, status in cases:
        response = await call(client, method, path, headers, json.dumps(sent).encode())
        assert status == response.status_code, response.text
        [error] = response.json()["errors"]
        assert (name, True) == (error["field"], error["message"].startswith(message))


@pytest.mark.parametrize("index", range(6))
async def test_deep_nesting_is_400(client: httpx.AsyncClient, seed: Seed, index: int) -> None:
    """Nesting past the limit (40 levels, and 100,000 levels: past the decoder's recursion
    limit) in any API body → 400 (422 for the send API), not 500."""
    method, path, headers, body, field = routes(seed)[index]
    bad = 422 if path.startswith("/api/v1/subaccount/email") else 400
    for depth, name in ((40, f"body.{field}" + ".0" * 31), (100_000, "body")):
        content = json.dumps({**body, field: "@"}).replace('"@"', "[" * depth + "]" * depth)
        response = await call(client, method, path, headers, content.encode())
        assert bad == response.status_code, response.text
        expected = [{"field": name, "message": "nested deeper than 32 levels"}]
        assert expected == response.json()["errors"]


async def test_bodies_over_the_limit_are_413_by_length_or_stream(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """Providers, pools and domains: over 1 MiB → 413 JSON from Content-Length, and from a
    streamed body as soon as it passes the limit (only a few chunks are ever read)."""
    pulled: list[int] = []

    async def stream() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for i in range(1000):  # up to 64 MiB if nothing stopped reading
            pulled.append(i)
            yield b"x" * 65536
        yield b'"}'

    too_big = b'{"name": "' + b"x" * bodies.MAX_BODY_BYTES + b'"}'
    for method, path, headers, _, _ in routes(seed)[:5]:
        response = await call(client, method, path, headers, too_big)
        assert (413, "payload_too_large") == (response.status_code, response.json()["code"])
    response = await client.post(
        "/api/v1/account/ippool",
        content=stream(),
        headers={"X-Account-ApiKey": seed.account.account_key, "content-type": "application/json"},
    )
    assert (413, "payload_too_large") == (response.status_code, response.json()["code"])
    assert len(pulled) <= bodies.MAX_BODY_BYTES // 65536 + 1


async def test_send_has_a_larger_limit_and_ingest_keeps_its_own(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """Send takes a 2 MiB message body (a message may be 10 MiB) but not one over 32 MiB; the
    ingestion endpoint keeps its documented 1 MiB limit with its own message."""
    method, path, headers, send, _ = routes(seed)[5]
    big = json.dumps({**send, "textBody": "x" * (2 * 1024 * 1024)}).encode()
    response = await call(client, method, path, headers, big)
    assert 422 == response.status_code  # passed the size check: the route says no such pool
    assert [{"field": "ippool", "message": "no IP pool named 'main'"}] == response.json()["errors"]
    huge = json.dumps({**send, "textBody": "x" * bodies.SEND_MAX_BODY_BYTES}).encode()
    response = await call(client, method, path, headers, huge)
    assert 413 == response.status_code
    response = await client.post(
        INGEST_PATH,
        content=b"x" * (1024 * 1024 + 1),
        headers={"X-SP-Event-ApiKey": seed.ingest_key},
    )
    assert 413 == response.status_code
    assert "over the 1048576-byte limit" in response.json()["error"]


async def test_nul_in_a_message_body_is_422_naming_it(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """NUL in textBody or htmlBody (SMTP may not carry it) is refused with 422 naming the body
    field, like any other bad value, and nothing is stored."""
    method, path, headers, body, _field = routes(seed)[5]
    for key in ("textBody", "htmlBody"):
        sent = {**body, key: "Hi\x00there"}
        response = await call(client, method, path, headers, json.dumps(sent).encode())
        assert 422 == response.status_code, response.text
        assert [key] == [e["field"] for e in response.json()["errors"]]
