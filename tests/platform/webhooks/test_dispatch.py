"""The dispatcher in this process against a real receiver on loopback, on SQLite and PostgreSQL:
payload shape, signatures, switches and the type mapping, retries (500, slow, 429 with
Retry-After, connection reset), health (degraded, disabled, re-enabled and replayed), order per
message, the per-endpoint cap, the egress guard and the message's own ``webhookEndpoint``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
import sqlalchemy as sa
from sendpost_platform import webhook_dispatch
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.domain import webhooks as rules
from sendpost_platform.egress import CheckedTarget, EgressPolicy
from sendpost_platform.store import Store
from sendpost_platform.store import webhooks as store_webhooks
from sendpost_platform.store.schema import event_outbox, webhook_deliveries
from sendpost_platform.webhook_dispatch import WebhookDispatcher
from sendpost_python_sdk.models.webhook_object import WebhookObject
from sendpost_wire import EventType

from devtools.webhook_receiver import WebhookReceiver
from tests.platform.conftest import Seed
from tests.platform.webhooks.conftest import add_webhook, drain, record


def delivered(receiver: WebhookReceiver) -> list[str]:
    return [r.event_id for r in receiver.received() if r.answered == 200]


async def test_an_event_is_posted_once_signed_in_sendposts_payload_shape(
    seed: Seed, hook_settings: Settings, receiver: WebhookReceiver, dispatcher: WebhookDispatcher
) -> None:
    """A CSDelivered event reaches the webhook as one POST whose body the SDK reads as a
    WebhookObject (typeName delivered, type 2, the message's id, sender, recipient, SMTP code),
    with the documented headers and a signature that verifies under the webhook's secret; the
    outbox row is gone and the delivery is done."""
    hook_id, secret = add_webhook(seed, hook_settings, receiver.url("/a/ok"))
    receiver.secrets["/a/"] = secret
    message = seed.message()
    recorded = record(seed, message.uuid, EventType.CSDelivered, smtp_code=250, description="OK")
    await drain(dispatcher)
    [got] = receiver.received()
    body = WebhookObject.from_json(got.body.decode())
    assert body is not None
    assert body.event is not None
    assert body.email_message is not None
    assert (
        f"cs-{recorded.event_id}-60",
        "delivered",
        2,
        message.uuid,
        "news@sender.example",
        "user@example.com",
        250,
        "OK",
        message.uuid,
        seed.account.account_id,
    ) == (
        body.event.event_id,
        body.event.type_name,
        body.event.type,
        body.event.message_id,
        body.event.var_from,
        body.event.to,
        body.event.event_metadata.smtp_code if body.event.event_metadata else None,
        body.event.event_metadata.smtp_description if body.event.event_metadata else None,
        body.email_message.message_id,
        body.email_message.account_id,
    )
    assert (True, str(hook_id), body.event.event_id, "application/json") == (
        got.verified,
        got.headers["x-sendpost-webhook-id"],
        got.headers["x-sendpost-event-id"],
        got.headers["content-type"],
    )
    with seed.store.read() as conn:
        outbox = conn.execute(sa.select(sa.func.count()).select_from(event_outbox)).scalar()
        statuses = [d["status"] for d in store_webhooks.deliveries_of(conn, hook_id)]
    assert (0, ["done"]) == (outbox, statuses)


async def test_switches_select_events_and_every_custom_smtp_type_maps(
    seed: Seed, hook_settings: Settings, receiver: WebhookReceiver, dispatcher: WebhookDispatcher
) -> None:
    """Every stored Custom SMTP type reaches a webhook with every switch on under its SendPost
    name; a webhook with only uniqueOpen and uniqueClick gets the first open and the first click
    of the message, not the second ones; a disabled (enabled=false) webhook gets nothing. A soft
    bounce upgraded to hard before the dispatcher saw it is sent once, as the hard bounce."""
    add_webhook(seed, hook_settings, receiver.url("/all/ok"))
    add_webhook(
        seed,
        hook_settings,
        receiver.url("/unique/ok"),
        switches={name: name in ("uniqueOpen", "uniqueClick") for name in rules.SWITCHES},
    )
    add_webhook(seed, hook_settings, receiver.url("/off/ok"), enabled=False)
    message = seed.message()
    order = [
        EventType.CSProcessed,
        EventType.CSSent,
        EventType.CSDelivered,
        EventType.CSOpen,
        EventType.CSOpen,
        EventType.CSClick,
        EventType.CSClick,
        EventType.CSUnsubscribe,
        EventType.CSSpamReport,
    ]
    other = seed.message(recipient="other@example.com")
    for kind in order:
        record(seed, message.uuid, kind)
    record(seed, other.uuid, EventType.CSDropped)
    bounced = seed.message(recipient="gone@example.com")
    record(seed, bounced.uuid, EventType.CSSoftBounced, smtp_code=452)
    record(seed, bounced.uuid, EventType.CSHardBounced, smtp_code=550)
    await drain(dispatcher)
    by_path: dict[str, list[str]] = {}
    for got in receiver.received():
        by_path.setdefault(got.path, []).append(got.payload["event"]["typeName"])
    expected = [
        "processed",
        "sent",
        "delivered",
        "opened",
        "opened",
        "clicked",
        "clicked",
        "unsubscribed",
        "spam",
        "dropped",
        "hardBounced",
    ]
    assert {"/all/ok": sorted(expected), "/unique/ok": ["clicked", "opened"]} == {
        path: sorted(names) for path, names in by_path.items()
    }


async def test_a_500_is_retried_on_the_schedule_then_degrades_and_disables(
    seed: Seed,
    hook_settings: Settings,
    receiver: WebhookReceiver,
    dispatcher: WebhookDispatcher,
    clock: ManualClock,
) -> None:
    """An endpoint answering 500: the delivery waits the schedule's first delay (10 s), the
    webhook turns degraded after 2 failures and disabled after 4 with disabledAt and a reason
    naming the status; while disabled nothing is sent even when due. Re-enabling it (PUT
    semantics in the store) sets it active, and the exhausted delivery is replayed."""
    hook_id, _ = add_webhook(seed, hook_settings, receiver.url("/h/fail"))
    message = seed.message()
    record(seed, message.uuid, EventType.CSDelivered)
    await drain(dispatcher)
    with seed.store.read() as conn:
        [first] = store_webhooks.deliveries_of(conn, hook_id)
        hook = store_webhooks.get_webhook(
            conn, account_id=seed.account.account_id, webhook_id=hook_id
        )
    assert hook is not None
    assert ("pending", 1, 500, clock.now() + dt.timedelta(seconds=10), "active") == (
        first["status"],
        first["attempts"],
        first["last_status"],
        first["next_attempt_at"],
        hook.status,
    )
    statuses = []
    for delay in (10, 20, 30):
        clock.advance(delay)
        await drain(dispatcher)
        with seed.store.read() as conn:
            hook = store_webhooks.get_webhook(
                conn, account_id=seed.account.account_id, webhook_id=hook_id
            )
        assert hook is not None
        statuses.append(hook.status)
    assert ["degraded", "degraded", "disabled"] == statuses
    assert (clock.now(), "4 consecutive failed deliveries; the last: HTTP 500") == (
        hook.disabled_at,
        hook.disabled_reason,
    )
    with seed.store.read() as conn:
        [last] = store_webhooks.deliveries_of(conn, hook_id)
    assert ("failed", 4) == (last["status"], last["attempts"])
    # disabled: a new event waits
    record(seed, seed.message(recipient="b@example.com").uuid, EventType.CSDelivered)
    sent_before = receiver.count
    clock.advance(100)
    await drain(dispatcher)
    assert sent_before == receiver.count
    # re-enable on a working URL: both are delivered
    with seed.store.write() as conn:
        store_webhooks.update_webhook(
            conn,
            account_id=seed.account.account_id,
            webhook_id=hook_id,
            url=receiver.url("/h/ok"),
            enabled=True,
            switches=dict.fromkeys(rules.SWITCHES, True),
            now=clock.now(),
        )
    await drain(dispatcher)
    with seed.store.read() as conn:
        hook = store_webhooks.get_webhook(
            conn, account_id=seed.account.account_id, webhook_id=hook_id
        )
        final = [d["status"] for d in store_webhooks.deliveries_of(conn, hook_id)]
    assert hook is not None
    assert (["done", "done"], "active", 0, 2) == (
        final,
        hook.status,
        hook.failure_streak,
        len([r for r in receiver.received() if r.path == "/h/ok"]),
    )


async def test_429_retry_after_is_honoured(
    seed: Seed,
    hook_settings: Settings,
    dispatcher: WebhookDispatcher,
    clock: ManualClock,
) -> None:
    """A 429 with ``Retry-After: 120`` (longer than the first scheduled delay of 10 s) puts the
    next attempt 120 s later; it is not sent before that and is delivered at that time."""
    with WebhookReceiver(retry_after=120, busy_times=1) as busy:
        hook_id, _ = add_webhook(seed, hook_settings, busy.url("/b/busy"))
        record(seed, seed.message().uuid, EventType.CSDelivered)
        await drain(dispatcher)
        with seed.store.read() as conn:
            [row] = store_webhooks.deliveries_of(conn, hook_id)
        assert (429, clock.now() + dt.timedelta(seconds=120)) == (
            row["last_status"],
            row["next_attempt_at"],
        )
        clock.advance(119)
        await drain(dispatcher)
        assert 1 == busy.count
        clock.advance(1)
        await drain(dispatcher)
        assert [429, 200] == [r.answered for r in busy.received()]


async def test_a_short_retry_after_is_waited_for_within_the_attempt(
    seed: Seed, hook_settings: Settings, clock: ManualClock, store: Store
) -> None:
    """With quick retries on, a 429 with ``Retry-After: 1`` is retried in the same attempt after
    at least one second, and the delivery is done after one attempt."""
    settings = dataclasses.replace(hook_settings, webhook_quick_retries=2)
    quick = WebhookDispatcher(store, settings, clock, worker_id="quick")
    try:
        with WebhookReceiver(retry_after=1, busy_times=1) as busy:
            hook_id, _ = add_webhook(seed, settings, busy.url("/q/busy"))
            record(seed, seed.message().uuid, EventType.CSDelivered)
            await drain(quick)
            first, second = busy.received()
            with seed.store.read() as conn:
                [row] = store_webhooks.deliveries_of(conn, hook_id)
    finally:
        await quick.close()
    assert ([429, 200], True, ("done", 1)) == (
        [first.answered, second.answered],
        second.at - first.at >= 1.0,
        (row["status"], row["attempts"]),
    )


async def test_slow_endpoint_times_out_and_reset_connection_is_retried(
    seed: Seed,
    hook_settings: Settings,
    receiver: WebhookReceiver,
    dispatcher: WebhookDispatcher,
    clock: ManualClock,
) -> None:
    """An endpoint slower than the timeout (0.5 s) and one that resets the connection are both
    network failures (no status, the error recorded) retried on the schedule; the resetting one
    answers 200 the second time and is done."""
    slow_id, _ = add_webhook(seed, hook_settings, receiver.url("/s/slow"))
    reset_id, _ = add_webhook(seed, hook_settings, receiver.url("/r/reset"))
    record(seed, seed.message().uuid, EventType.CSDelivered)
    await drain(dispatcher)
    with seed.store.read() as conn:
        [slow] = store_webhooks.deliveries_of(conn, slow_id)
        [reset] = store_webhooks.deliveries_of(conn, reset_id)
    assert ("pending", None, "ReadTimeout", "pending", None) == (
        slow["status"],
        slow["last_status"],
        slow["last_error"].split(":")[0],
        reset["status"],
        reset["last_status"],
    )
    clock.advance(10)
    await drain(dispatcher)
    with seed.store.read() as conn:
        [reset] = store_webhooks.deliveries_of(conn, reset_id)
    assert ("done", 2, [0, 200]) == (
        reset["status"],
        reset["attempts"],
        [r.answered for r in receiver.received() if r.path == "/r/reset"],
    )


@dataclasses.dataclass(frozen=True)
class _CountingEgress(EgressPolicy):
    """The real egress policy, noting each host it resolves and checks."""

    lookups: list[str] = dataclasses.field(default_factory=list)

    async def resolve(self, host: str, port: int) -> CheckedTarget:
        self.lookups.append(host)
        return await super().resolve(host, port)


@pytest.mark.parametrize("keep_seconds", [webhook_dispatch.TARGET_SECONDS, 0.0])
async def test_a_host_is_resolved_once_for_many_posts_until_its_check_is_stale(
    seed: Seed,
    hook_settings: Settings,
    receiver: WebhookReceiver,
    dispatcher: WebhookDispatcher,
    monkeypatch: pytest.MonkeyPatch,
    keep_seconds: float,
) -> None:
    """Three events for one webhook are three POSTs; the webhook's host is resolved and checked
    once for all of them while the check is fresh (``TARGET_SECONDS``), and again for each POST
    when a check is kept for no time at all."""
    monkeypatch.setattr(webhook_dispatch, "TARGET_SECONDS", keep_seconds)
    counting = _CountingEgress(dispatcher.egress.allow_private, dispatcher.egress.resolver)
    dispatcher.egress = counting
    add_webhook(seed, hook_settings, receiver.url("/dns/ok"))
    for n in range(3):
        record(seed, seed.message(recipient=f"user{n}@example.com").uuid, EventType.CSDelivered)
    await drain(dispatcher)
    assert (3, ["127.0.0.1"] * (1 if keep_seconds else 3)) == (
        len(delivered(receiver)),
        counting.lookups,
    )


async def test_events_of_one_message_arrive_in_order_even_when_the_first_is_retried(
    seed: Seed,
    hook_settings: Settings,
    dispatcher: WebhookDispatcher,
    clock: ManualClock,
) -> None:
    """Each event fails on its first try; a message's later events wait for the earlier one to
    be delivered, so the endpoint sees none of them before the first event's retry and then
    processed, sent, delivered in that order; another message's event is tried meanwhile."""
    with WebhookReceiver(fail_times=1) as flaky:
        add_webhook(seed, hook_settings, flaky.url("/o/flaky"))
        message = seed.message()
        other = seed.message(recipient="x@example.com")
        for kind in (EventType.CSProcessed, EventType.CSSent, EventType.CSDelivered):
            record(seed, message.uuid, kind)
        record(seed, other.uuid, EventType.CSDelivered)
        await drain(dispatcher)
        # the two messages' first tries run concurrently: their arrival order is not defined
        first_pass = sorted((r.payload["event"]["messageId"], r.answered) for r in flaky.received())
        for _ in range(3):  # each event of the message fails once, 10 s apart
            clock.advance(10)
            await drain(dispatcher)
        ours = [
            r.payload["event"]["typeName"]
            for r in flaky.received()
            if r.answered == 200 and r.payload["event"]["messageId"] == message.uuid
        ]
    expected_first = sorted([(message.uuid, 500), (other.uuid, 500)])
    assert (expected_first, ["processed", "sent", "delivered"]) == (
        first_pass,
        ours,
    )


async def test_per_endpoint_concurrency_is_capped(
    seed: Seed, hook_settings: Settings, clock: ManualClock, store: Store
) -> None:
    """With ``webhook_endpoint_concurrency`` 3 and twelve events for a slow endpoint, the
    endpoint never has more than 3 requests in flight (and does reach 3); all are delivered."""
    settings = dataclasses.replace(
        hook_settings, webhook_endpoint_concurrency=3, webhook_timeout=2.0
    )
    capped = WebhookDispatcher(store, settings, clock, worker_id="capped")
    try:
        with WebhookReceiver(slow_seconds=0.3) as slow:
            add_webhook(seed, settings, slow.url("/c/slow"))
            for i in range(12):
                record(seed, seed.message(recipient=f"u{i}@example.com").uuid, EventType.CSSent)
            await drain(capped)
            peak = slow.max_in_flight["/c/slow"]
            done = len([r for r in slow.received() if r.answered == 200])
    finally:
        await capped.close()
    assert (3, 12) == (peak, done)


async def test_loopback_url_is_refused_at_send_time_without_the_development_setting(
    seed: Seed, hook_settings: Settings, receiver: WebhookReceiver, clock: ManualClock, store: Store
) -> None:
    """A webhook whose URL points at loopback (stored before the setting was turned off) gets
    nothing: the attempt is refused by the egress guard, recorded as failed with the address
    class, and the receiver sees no request."""
    strict = dataclasses.replace(hook_settings, allow_private_networks=False)
    guarded = WebhookDispatcher(store, strict, clock, worker_id="guarded")
    try:
        hook_id, _ = add_webhook(seed, strict, receiver.url("/g/ok"))
        record(seed, seed.message().uuid, EventType.CSDelivered)
        await drain(guarded)
    finally:
        await guarded.close()
    with seed.store.read() as conn:
        [row] = store_webhooks.deliveries_of(conn, hook_id)
    assert (0, "pending", True) == (
        receiver.count,
        row["status"],
        "127.0.0.1 is a loopback address" in row["last_error"],
    )


async def test_the_messages_own_webhook_endpoint_gets_its_events(
    hook_settings: Settings,
    receiver: WebhookReceiver,
    clock: ManualClock,
    seed: Seed,
) -> None:
    """A message sent with the send API's ``webhookEndpoint`` (``messages.webhook_endpoint``)
    has its events POSTed there too (all types), signed with the account's oldest webhook's
    secret; a message without one is posted only to the webhooks."""
    _, secret = add_webhook(seed, hook_settings, receiver.url("/w/ok"), switches={})
    receiver.secrets["/own/"] = secret
    message = seed.message()
    plain = seed.message(recipient="plain@example.com")
    with seed.store.write() as conn:
        conn.execute(
            sa.text("UPDATE messages SET webhook_endpoint = :u WHERE uuid = :m"),
            {"u": receiver.url("/own/ok"), "m": message.uuid},
        )
    record(seed, message.uuid, EventType.CSSent)
    record(seed, plain.uuid, EventType.CSSent)
    own = WebhookDispatcher(seed.store, hook_settings, clock, worker_id="own")
    try:
        await drain(own)
    finally:
        await own.close()
    [got] = receiver.received()
    assert ("/own/ok", True, message.uuid, receiver.url("/own/ok")) == (
        got.path,
        got.verified,
        got.payload["event"]["messageId"],
        got.payload["emailMessage"]["webhookEndpoint"],
    )
    with seed.store.read() as conn:
        targets = conn.execute(sa.select(webhook_deliveries.c.target)).scalars().all()
    assert ["m"] == targets
    assert json.loads(got.body)["event"]["typeName"] == "sent"


async def test_closing_hands_back_the_deliveries_in_flight(
    seed: Seed, hook_settings: Settings, receiver: WebhookReceiver, clock: ManualClock, store: Store
) -> None:
    """A dispatcher closed (SIGTERM) while a POST is in flight cancels it and releases its claim
    at once, so another dispatcher sends it without waiting for the lease."""
    hook_id, _ = add_webhook(seed, hook_settings, receiver.url("/t/slow"))
    record(seed, seed.message().uuid, EventType.CSDelivered)
    leaving = WebhookDispatcher(store, hook_settings, clock, worker_id="leaving")
    await leaving.run_once()
    with seed.store.read() as conn:
        [claimed] = store_webhooks.deliveries_of(conn, hook_id)
    await leaving.close()
    with seed.store.read() as conn:
        [released] = store_webhooks.deliveries_of(conn, hook_id)
    assert ("leaving", "pending", None, 0) == (
        claimed["claimed_by"],
        released["status"],
        released["claimed_by"],
        released["attempts"],
    )


async def test_closing_hands_back_the_deliveries_claimed_ahead(
    seed: Seed, hook_settings: Settings, clock: ManualClock, store: Store
) -> None:
    """With one lane per endpoint the dispatcher claims ahead (two per lane for an endpoint it
    has not measured yet): closed while the first POST is in flight, it hands back that one and
    the one waiting in its queue, unattempted, and the third was never claimed."""
    settings = dataclasses.replace(
        hook_settings, webhook_endpoint_concurrency=1, webhook_lease=60.0, webhook_timeout=10.0
    )
    with WebhookReceiver(slow_seconds=10.0) as slow:  # still in flight at close, however busy
        hook_id, _ = add_webhook(seed, settings, slow.url("/q/slow"))
        for i in range(3):
            record(seed, seed.message(recipient=f"q{i}@example.com").uuid, EventType.CSSent)
        leaving = WebhookDispatcher(store, settings, clock, worker_id="ahead")
        await leaving.run_once()
        with seed.store.read() as conn:
            claimed = [r["claimed_by"] for r in store_webhooks.deliveries_of(conn, hook_id)]
        await leaving.close()
    with seed.store.read() as conn:
        after = [
            (r["status"], r["claimed_by"], r["attempts"])
            for r in store_webhooks.deliveries_of(conn, hook_id)
        ]
    assert (["ahead", "ahead", None], [("pending", None, 0)] * 3) == (claimed, after)


def test_fan_out_claims_only_what_the_due_query_would_have_claimed(
    seed: Seed, hook_settings: Settings
) -> None:
    """Fan-out with a claim takes a new delivery at once only when it is the first pending one
    of its message to its target (a delivery left from an earlier fan-out, or an earlier event
    in the same batch, keeps it unclaimed), its webhook is not disabled, and its URL has room;
    the rest are stored unclaimed for :func:`due`, which then finds exactly them."""
    live, _ = add_webhook(seed, hook_settings, "http://127.0.0.1:9/live")
    off, _ = add_webhook(seed, hook_settings, "http://127.0.0.1:9/off")
    busy = seed.message()
    with seed.store.write() as conn:
        conn.execute(
            sa.update(store_webhooks.webhooks)
            .where(store_webhooks.webhooks.c.id == off)
            .values(status=rules.DISABLED)
        )
    record(seed, busy.uuid, EventType.CSProcessed)
    now = seed.clock.now()
    with seed.store.write() as conn:  # left pending from an earlier pass, not claimed
        assert (1, []) == store_webhooks.fan_out(conn, limit=10, now=now)
    record(seed, busy.uuid, EventType.CSSent)
    fresh = [seed.message(recipient=f"f{i}@example.com") for i in range(3)]
    for message in fresh:
        record(seed, message.uuid, EventType.CSProcessed)
        record(seed, message.uuid, EventType.CSSent)
    room = store_webhooks.Room(total=10, per_url={}, new_url=2)
    claim = store_webhooks.Claim("w", now + dt.timedelta(seconds=8), room)
    with seed.store.write() as conn:
        fanned, claimed = store_webhooks.fan_out(conn, limit=10, now=now, claim=claim)
        due = store_webhooks.due(conn, now=now, limit=100)
    claimed_events = [(c.url, json.loads(c.body)["event"]["messageId"]) for c in claimed]
    expected = [("http://127.0.0.1:9/live", m.uuid) for m in fresh[:2]]
    assert (7, expected, [c.attempt for c in claimed]) == (fanned, claimed_events, [1, 1])
    assert all(c.webhook_id == live for c in claimed)
    with seed.store.read() as conn:
        rows = conn.execute(
            sa.select(
                webhook_deliveries.c.id,
                webhook_deliveries.c.message_uuid,
                webhook_deliveries.c.webhook_id,
                webhook_deliveries.c.claimed_by,
            )
            .where(webhook_deliveries.c.webhook_id == live)
            .order_by(webhook_deliveries.c.id)
        ).all()
    first_of = {}
    for row in rows:
        first_of.setdefault(row.message_uuid, row.id)
    # due: the busy message's first delivery (from the earlier pass) and the third fresh
    # message's first (no room left for it); never a later event of a message
    assert sorted(r for r, _ in due) == sorted([first_of[busy.uuid], first_of[fresh[2].uuid]])
    assert [r.claimed_by for r in rows if r.claimed_by] == ["w", "w"]
