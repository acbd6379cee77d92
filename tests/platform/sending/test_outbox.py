"""The outbox contract across every producer: each stored event (new or upgraded) has one
``event_outbox`` row per consumer that wants it, written with it; duplicates and merged reports
have none. The webhooks consumer wants the events of an account with a webhook and of a message
sent with its own ``webhookEndpoint``."""

from __future__ import annotations

import collections

import sqlalchemy as sa
from sendpost_platform.clock import ManualClock
from sendpost_platform.processing import IngestProcessor
from sendpost_platform.smtp.bounce_server import BounceProcessor
from sendpost_platform.store import events as event_store
from sendpost_platform.store import messages
from sendpost_platform.store import webhooks as store_webhooks
from sendpost_platform.store.schema import event_outbox, events
from sendpost_wire import EventType

from tests.platform.bounces.conftest import corpus_dsn, return_path
from tests.platform.core.helpers import agent_event, post_events
from tests.platform.sending.conftest import SendingSetup
from tests.platform.sending.test_tracking_api import relayed_links

SOFT = {"smtp_code": 452, "smtp_description": "452 4.2.2 Mailbox full"}
HARD = {"smtp_code": 550, "smtp_description": "550 5.1.1 <x>: Recipient address rejected"}


def add_webhook(sending: SendingSetup) -> None:
    """A webhook of the account (what makes the webhooks consumer want its events)."""
    with sending.store.write() as conn:
        store_webhooks.create_webhook(
            conn,
            account_id=sending.seed.account.account_id,
            url="https://hooks.example/x",
            enabled=True,
            switches={},
            secret_encrypted="unused",
            now=sending.clock.now(),
        )


def outbox_rows(sending: SendingSetup) -> list[tuple[int, str]]:
    with sending.store.read() as conn:
        query = sa.select(event_outbox.c.event_id, event_outbox.c.message_uuid)
        return [(int(r.event_id), r.message_uuid) for r in conn.execute(query)]


async def process_agent_events(sending: SendingSetup, *batches: list[dict[str, object]]) -> None:
    async with sending.client() as client:
        for batch in batches:
            response = await post_events(client, sending.seed.ingest_key, batch)
            assert response.status_code == 200
    processor = IngestProcessor(sending.store, sending.clock)
    while await processor.run_once():
        pass


async def test_every_producer_writes_one_outbox_row_per_stored_event(
    sending: SendingSetup,
) -> None:
    """With a webhook on the account: send API (CSProcessed), relay (CSSent), agent processing
    (delivered, a repeat, a soft bounce upgraded to hard), the bounce processor (a DSN),
    tracking (open, click, unsubscribe twice): every event row has exactly one outbox row for
    ``webhooks`` (two for the upgraded one: stored, then replaced), naming its account and
    message; the repeat and the second unsubscribe add none."""
    add_webhook(sending)
    first, paths = await relayed_links(sending)
    second_result, third_result = await sending.send(
        to=["accept-2@example.org", "accept-3@example.org"]
    )
    second, third = second_result["messageId"], third_result["messageId"]
    job = sending.relay_job()
    assert await job.run_once() == 2
    await job.close()

    async with sending.client() as client:
        for batch in (
            [agent_event(first), agent_event(first), agent_event(second, "bounced", **SOFT)],
            [agent_event(second, "bounced", **HARD)],
        ):
            response = await post_events(client, sending.seed.ingest_key, batch)
            assert response.status_code == 200
        processor = IngestProcessor(sending.store, sending.clock)
        while await processor.run_once():
            pass
        for path in (paths["open"], paths["click"]):
            assert (await client.get(path)).status_code in (200, 302)
        for _ in range(2):
            done = await client.post(
                paths["unsubscribe"],
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert done.status_code == 200
    with sending.store.read() as conn:
        message = messages.get_message(conn, third)
    assert message is not None
    raw = corpus_dsn("sisimai-lhost-sendmail-01.eml", recipient=message.recipient)
    processed = BounceProcessor(sending.store, ManualClock()).process(
        envelope_from="", envelope_to=[return_path(message)], raw=raw
    )
    assert processed.recorded == {"inserted": 1}

    with sending.store.read() as conn:
        stored = conn.execute(
            sa.select(events.c.id, events.c.account_id, events.c.message_uuid, events.c.event_type)
        ).all()
        outbox = conn.execute(
            sa.select(
                event_outbox.c.event_id,
                event_outbox.c.consumer,
                event_outbox.c.account_id,
                event_outbox.c.message_uuid,
            ).order_by(event_outbox.c.id)
        ).all()
        upgraded = event_store.events_for_message(conn, second)
    types = collections.Counter(EventType(r.event_type).name for r in stored)
    assert types == {
        "CSProcessed": 3,
        "CSSent": 3,
        "CSDelivered": 1,
        "CSHardBounced": 2,
        "CSOpen": 1,
        "CSClick": 1,
        "CSUnsubscribe": 1,
    }
    [(_, upgraded_id)] = [
        (e["event_type"], e["id"])
        for e in upgraded
        if e["event_type"] == EventType.CSHardBounced  # the soft bounce it replaced is merged
    ]
    expected = collections.Counter({r.id: 1 for r in stored}) + collections.Counter([upgraded_id])
    assert collections.Counter(r.event_id for r in outbox) == expected
    by_id = {r.id: (r.account_id, r.message_uuid) for r in stored}
    assert all(
        (r.consumer, (r.account_id, r.message_uuid)) == ("webhooks", by_id[r.event_id])
        for r in outbox
    )


async def test_without_a_webhook_only_a_message_with_its_own_endpoint_has_outbox_rows(
    sending: SendingSetup,
) -> None:
    """No webhook on the account: of two messages sent, relayed and delivered (agent events),
    only the one sent with a ``webhookEndpoint`` has outbox rows (CSProcessed, CSSent,
    CSDelivered); the other has none. Once the account has a webhook, the next stored event of
    the plain message has its row (events recorded before the webhook existed do not)."""
    [with_endpoint] = await sending.send(
        to=["accept-1@example.org"], webhookEndpoint="http://127.0.0.1:9/hook"
    )
    [plain] = await sending.send(to=["accept-2@example.org"])
    job = sending.relay_job()
    assert await job.run_once() == 2
    await job.close()
    await process_agent_events(
        sending, [agent_event(with_endpoint["messageId"]), agent_event(plain["messageId"])]
    )
    rows = outbox_rows(sending)
    with sending.store.read() as conn:
        endpoint_events = event_store.events_for_message(conn, with_endpoint["messageId"])
    assert sorted(EventType(e["event_type"]).name for e in endpoint_events) == [
        "CSDelivered",
        "CSProcessed",
        "CSSent",
    ]
    assert sorted(rows) == sorted((e["id"], with_endpoint["messageId"]) for e in endpoint_events)

    add_webhook(sending)
    await process_agent_events(sending, [agent_event(plain["messageId"], "bounced", **HARD)])
    with sending.store.read() as conn:
        plain_events = event_store.events_for_message(conn, plain["messageId"])
    [bounce] = [e for e in plain_events if e["event_type"] == EventType.CSHardBounced]
    assert outbox_rows(sending)[len(rows) :] == [(bounce["id"], plain["messageId"])]
