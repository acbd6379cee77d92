"""The send API: precise 400s, one UUID per recipient, immediate CSDropped cases."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sendpost_platform.sending import NO_RETURN_PATH
from sendpost_platform.store import domains, events, relay, suppressions
from sendpost_wire import EventType

from tests.platform.sending.conftest import SendingSetup


async def post(setup: SendingSetup, body: Any, key: str | None = None) -> httpx.Response:
    async with setup.client() as client:
        return await client.post(
            "/api/v1/subaccount/email/",
            json=body,
            headers={"X-SubAccount-ApiKey": key or setup.seed.account.subaccount_key},
        )


def event_types(setup: SendingSetup, uuid: str) -> list[int]:
    with setup.store.read() as conn:
        return [int(e["event_type"]) for e in events.events_for_message(conn, uuid)]


async def test_bad_fields_are_each_named(sending: SendingSetup) -> None:
    """Every field of the wrong shape is listed in one 422 answer; then, for a body of the
    right shape, every field with a bad value in the next."""
    body = {
        "from": "not-an-address",
        "to": [],
        "cc": "x@example.org",
        "subject": 5,
        "headers": {"Message-ID": "<x@y>", "X-Ok": "fine", "X-Bad": 5},
        "trackOpens": "yes",
    }
    response = await post(sending, body)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    fields = sorted(e["field"] for e in response.json()["errors"])
    assert fields == sorted(
        ["from", "to", "cc", "subject", "headers.X-Bad", "ippool", "trackOpens"]
    )
    shaped = {
        "from": {"email": "not-an-address"},
        "to": [{"email": "a@example.org"}],
        "headers": {"Message-ID": "<x@y>", "X-Ok": "fine"},
        "ippool": "main",
    }
    response = await post(sending, shaped)
    assert response.status_code == 422
    fields = sorted(e["field"] for e in response.json()["errors"])
    assert fields == sorted(["from.email", "htmlBody", "headers.Message-ID"])


async def test_unknown_pool_is_refused(sending: SendingSetup) -> None:
    """``ippool`` must name an existing pool of the account."""
    response = await post(
        sending,
        {
            "from": {"email": "a@shop.example"},
            "to": [{"email": "b@example.org"}],
            "subject": "s",
            "textBody": "t",
            "ippool": "nope",
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "ippool", "message": "no IP pool named 'nope'"}]


async def test_missing_key_is_401(sending: SendingSetup) -> None:
    """Sending needs a valid sub-account key."""
    response = await post(sending, {}, key="sps_wrong")
    assert response.status_code == 401


async def test_one_uuid_per_recipient_including_cc_and_bcc(sending: SendingSetup) -> None:
    """to, cc and bcc recipients each get a message UUID, CSProcessed and a queue entry; an
    address repeated (in any case) gets one."""
    results = await sending.send(
        to=["accept-1@example.org", {"email": "accept-2@example.org", "name": "Two"}],
        cc=["accept-3@example.org"],
        bcc=["accept-4@example.org", "ACCEPT-1@example.org"],
    )
    assert [r["to"] for r in results] == [f"accept-{i}@example.org" for i in (1, 2, 3, 4)]
    assert len({r["messageId"] for r in results}) == 4
    assert {r["errorCode"] for r in results} == {0}
    with sending.store.read() as conn:
        for r in results:
            assert event_types(sending, r["messageId"]) == [EventType.CSProcessed]
            entry = relay.queue_entry(conn, r["messageId"])
            assert entry is not None
            assert entry["status"] == "pending"


async def test_unverified_return_path_drops_at_once(sending: SendingSetup) -> None:
    """A sender domain without a verified return path: CSDropped with the exact reason."""
    with sending.store.write() as conn:
        domains.record_check(
            conn,
            sending.domain.id,
            dkim_verified=True,
            return_path_verified=False,
            check={},
            now=sending.clock.now(),
        )
    [result] = await sending.send()
    assert (result["errorCode"], result["message"]) == (3, NO_RETURN_PATH)
    assert event_types(sending, result["messageId"]) == [EventType.CSProcessed, EventType.CSDropped]
    with sending.store.read() as conn:
        [_, dropped] = events.events_for_message(conn, result["messageId"])
        assert relay.queue_entry(conn, result["messageId"]) is None
    assert dropped["reason"] == "No verified return path domain configured for sender domain"


async def test_unknown_sender_domain_drops_with_same_reason(sending: SendingSetup) -> None:
    """A sender domain the account never added is treated as unverified."""
    [result] = await sending.send(**{"from": "news@elsewhere.example"})
    assert (result["errorCode"], result["message"]) == (3, NO_RETURN_PATH)


async def test_suppressed_and_invalid_recipients_drop(sending: SendingSetup) -> None:
    """A suppressed recipient and a malformed address are dropped; the others are queued."""
    with sending.store.write() as conn:
        suppressions.add_suppression(
            conn,
            account_id=sending.seed.account.account_id,
            subaccount_id=sending.seed.account.subaccount_id,
            recipient="Gone@Example.org",
            reason="unsubscribe",
            now=sending.clock.now(),
        )
    results = await sending.send(to=["gone@example.org", "bad address@x", "accept-1@example.org"])
    assert [(r["errorCode"], r["message"]) for r in results] == [
        (2, "Recipient is suppressed"),
        (1, "Invalid message: invalid recipient address"),
        (0, "Email submitted successfully"),
    ]
    for r in results[:2]:
        assert event_types(sending, r["messageId"]) == [EventType.CSProcessed, EventType.CSDropped]


async def test_pool_without_live_providers_is_refused(sending: SendingSetup) -> None:
    """A pool whose providers were all deleted cannot accept mail (422 on ippool)."""
    from sendpost_platform.store import providers

    with sending.store.write() as conn:
        providers.delete_provider(
            conn,
            account_id=sending.seed.account.account_id,
            provider_id=sending.provider_id,
            now=sending.clock.now(),
        )
    response = await post(
        sending,
        {
            "from": {"email": "a@shop.example"},
            "to": [{"email": "b@example.org"}],
            "subject": "s",
            "textBody": "t",
            "ippool": "main",
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "ippool"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is required: a JSON object"), (b"{not json", "is not valid JSON"), (b"[1]", None)],
)
async def test_a_body_that_is_not_a_send_request_is_422(
    sending: SendingSetup, content: bytes, message: str | None
) -> None:
    """No body, a body that is not JSON, or JSON that is not an object: 422 naming ``body``
    (SendPost's status for a body it cannot process), never 400."""
    async with sending.client() as client:
        response = await client.post(
            "/api/v1/subaccount/email/",
            content=content,
            headers={
                "X-SubAccount-ApiKey": sending.seed.account.subaccount_key,
                "content-type": "application/json",
            },
        )
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "body"
    if message is not None:
        assert error["message"].startswith(message)
