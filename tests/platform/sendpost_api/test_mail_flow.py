"""Suppressions, messages and statistics through the official SDK, fed by real mail: sends
relayed to a loopback SMTP sink, an unsubscribe through the message's own link, a hard bounce
reported by the agent's ingestion API, and a suppression added after a message was accepted."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re

import httpx
import pytest
import sendpost_python_sdk as sp
from sendpost_platform.store import events, messages, providers
from sendpost_platform.worker import Worker, build_jobs
from sendpost_python_sdk.exceptions import NotFoundException, UnprocessableEntityException
from sendpost_wire import EventType

from tests.platform.core.helpers import agent_event, post_events
from tests.platform.sendpost_api.conftest import MailSdk

DAY = dt.timedelta(days=1)


def send(mail: MailSdk, *recipients: str, **fields: object) -> list[sp.EmailResponse]:
    message = sp.EmailMessageObject(
        var_from=sp.EmailAddress(email="news@shop.example", name="Shop"),
        to=[sp.Recipient(email=r, name=f"Name {i}") for i, r in enumerate(recipients)],
        subject="Hello",
        text_body="Hello there",
        html_body='<p>Hello <a href="https://shop.example/x">there</a></p>',
        ippool=fields.pop("ippool", "main"),
        **fields,
    )
    return sp.EmailApi(mail.client).send_email(message)


async def relay(mail: MailSdk) -> int:
    job = mail.relay_job()
    try:
        return await job.run_once()
    finally:
        await job.close()


def suppressed(mail: MailSdk) -> dict[str, sp.Suppression]:
    today = mail.setup.clock.now().date()
    found = sp.SuppressionApi(mail.client).get_suppression_list(today - DAY, today + DAY)
    return {s.email or "": s for s in found}


async def test_suppressions_are_fed_and_consulted(mail_sdk: MailSdk) -> None:
    """Manual suppressions made through the SDK drop the recipient at send; an unsubscribe
    (the message's one-click link) and an agent-reported hard bounce add suppressions with
    reasons 1 and 2, the message UUID and the SMTP reply; a suppression added after a message
    was accepted stops its relay (CSDropped, ``Recipient is suppressed``); deleting lifts it."""
    mail = mail_sdk
    api = sp.SuppressionApi(mail.client)
    created = api.create_suppression(
        sp.CreateSuppressionRequest(
            manual=[sp.CreateSuppressionRequestManualInner(email="Blocked@Example.org")],
            spam_complaint=[
                sp.CreateSuppressionRequestSpamComplaintInner(email="spam@example.org")
            ],
        )
    )
    assert [(s.email, s.reason, s.reason_text) for s in created] == [
        ("blocked@example.org", 0, "manual"),
        ("spam@example.org", 3, "spamComplaint"),
    ]
    [dropped, queued, late, bounced] = send(
        mail,
        "blocked@example.org",
        "accept-1@example.org",
        "accept-late@example.org",
        "accept-bounce@example.org",
    )
    assert (dropped.error_code, queued.error_code) == (2, 0)
    api.create_suppression(
        sp.CreateSuppressionRequest(
            unsubscribe=[
                sp.CreateSuppressionRequestUnsubscribeInner(email="accept-late@example.org")
            ]
        )
    )
    assert await relay(mail) == 3
    delivered = {r.rcpt_tos[0] for r in mail.setup.sink.received()}
    assert delivered == {"accept-1@example.org", "accept-bounce@example.org"}
    with mail.setup.store.read() as conn:
        late_events = events.events_for_message(conn, late.message_id or "")
    assert [(e["event_type"], e["reason"]) for e in late_events][-1] == (
        EventType.CSDropped,
        "Recipient is suppressed",
    )

    [first] = [r for r in mail.setup.sink.received() if r.rcpt_tos == ("accept-1@example.org",)]
    message = email.message_from_bytes(first.data, policy=email.policy.default)
    link = re.search(
        r"<https://sp\.example\.net(/track/tpsp/unsubscribe/[^>]+)>", message["List-Unsubscribe"]
    )
    assert link is not None
    async with httpx.AsyncClient(base_url=mail.live.base) as client:
        done = await client.post(
            link[1],
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200
        hard = agent_event(
            bounced.message_id or "",
            "bounced",
            smtp_code=550,
            enhanced_status="5.1.1",
            smtp_command="RCPT TO",
            smtp_description="550 5.1.1 <accept-bounce@example.org>: User unknown",
        )
        answer = await post_events(client, mail.setup.seed.ingest_key, [hard])
        assert answer.status_code == 200, answer.text
    await Worker(build_jobs(mail.setup.settings, mail.setup.store, mail.setup.clock)).drain()

    listed = suppressed(mail)
    unsubscribed = listed["accept-1@example.org"]
    assert (unsubscribed.reason, unsubscribed.message_uuid) == (1, queued.message_id)
    hard_bounce = listed["accept-bounce@example.org"]
    assert (hard_bounce.reason, hard_bounce.message_uuid) == (2, bounced.message_id)
    assert "550" in (hard_bounce.smtp_error or "")
    assert "User unknown" in (hard_bounce.smtp_error or "")
    assert [
        s.email
        for s in api.get_suppression_list(
            mail.setup.clock.now().date(), mail.setup.clock.now().date(), type="hardBounce"
        )
    ] == ["accept-bounce@example.org"]
    assert [
        s.email
        for s in api.get_suppression_list(
            mail.setup.clock.now().date(), mail.setup.clock.now().date(), search="SPAM"
        )
    ] == ["spam@example.org"]

    gone = api.delete_suppression(
        sp.DeleteSuppressionRequest(
            suppressions=[
                sp.DeleteSuppressionRequestSuppressionsInner(email="blocked@example.org"),
                sp.DeleteSuppressionRequestSuppressionsInner(email="never@example.org"),
            ]
        )
    )
    assert gone.message == "1 suppression(s) deleted; 1 address(es) were not suppressed"
    assert "blocked@example.org" not in suppressed(mail)
    [again] = send(mail, "blocked@example.org")
    assert again.error_code == 0


def test_suppression_refusals(mail_sdk: MailSdk) -> None:
    """A date range over 60 days, an unknown type and a malformed address are refused,
    naming the parameter or field."""
    api = sp.SuppressionApi(mail_sdk.client)
    today = mail_sdk.setup.clock.now().date()
    with pytest.raises(sp.ApiException) as too_long:
        api.get_suppression_list(today - 61 * DAY, today)
    assert (too_long.value.status, '"query.to"' in (too_long.value.body or "")) == (400, True)
    with pytest.raises(sp.ApiException) as unknown:
        api.get_suppression_list(today, today, type="bounce")
    assert (unknown.value.status, '"query.type"' in (unknown.value.body or "")) == (400, True)
    with pytest.raises(UnprocessableEntityException) as malformed:
        api.create_suppression(
            sp.CreateSuppressionRequest(
                hard_bounce=[sp.CreateSuppressionRequestHardBounceInner(email="not an address")]
            )
        )
    assert '"hardBounce[0].email"' in (malformed.value.body or "")


async def test_messages_and_statistics(mail_sdk: MailSdk) -> None:
    """A message answers its sender, recipient (with display name), subject, bodies, pool and
    nanosecond submittedAt; the listing covers the range; daily and aggregate statistics count
    the CS* events per sub-account and account (processed, sent, dropped, delivered, opened)."""
    mail = mail_sdk
    sp.SuppressionApi(mail.client).create_suppression(
        sp.CreateSuppressionRequest(
            manual=[sp.CreateSuppressionRequestManualInner(email="gone@example.org")]
        )
    )
    now = mail.setup.clock.now()
    [sent, dropped] = send(mail, "accept-1@example.org", "gone@example.org", track_opens=True)
    assert await relay(mail) == 1
    async with httpx.AsyncClient(base_url=mail.live.base) as client:
        delivered = agent_event(sent.message_id or "", "delivered")
        assert (
            await post_events(client, mail.setup.seed.ingest_key, [delivered])
        ).status_code == 200
    await Worker(build_jobs(mail.setup.settings, mail.setup.store, mail.setup.clock)).drain()

    message_api = sp.MessageApi(mail.client)
    found = message_api.get_message_by_id(sent.message_id or "")
    assert (found.message_id, found.sub_account_id) == (
        sent.message_id,
        mail.setup.seed.account.subaccount_id,
    )
    assert found.var_from is not None
    assert (found.var_from.email, found.var_from.name) == ("news@shop.example", "Shop")
    assert found.to is not None
    assert (found.to.email, found.to.name) == ("accept-1@example.org", "Name 0")
    assert (found.subject, found.text_body, found.ip_pool, found.track_opens) == (
        "Hello",
        "Hello there",
        "main",
        True,
    )
    expected_ns = (now - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    assert found.submitted_at == expected_ns * 1000
    listed = message_api.get_all_messages(now - dt.timedelta(hours=1), now + dt.timedelta(hours=1))
    assert {m.message_id for m in listed} == {sent.message_id, dropped.message_id}
    assert message_api.get_all_messages(now + DAY, now + 2 * DAY) == []
    with pytest.raises(NotFoundException):
        message_api.get_message_by_id("00000000-0000-0000-0000-000000000000")

    today = now.date()
    sub_id = mail.setup.seed.account.subaccount_id
    stats = sp.StatsApi(mail.client)
    [day] = stats.account_subaccount_stat_subaccount_id_get(today, today, sub_id)
    counts = (day.processed, day.sent, day.dropped, day.delivered, day.smtp_dropped)
    assert counts == (2, 1, 1, 1, 0)
    total = stats.account_subaccount_stat_subaccount_id_aggregate_get(today - DAY, today, sub_id)
    assert (total.processed, total.sent, total.dropped, total.delivered) == (2, 1, 1, 1)
    account = sp.StatsAApi(mail.client)
    days = account.get_all_account_stats(today - DAY, today)
    assert [(d.var_date, d.stat.processed if d.stat else None) for d in days] == [
        (today - DAY, 0),
        (today, 2),
    ]
    aggregate = account.get_account_aggregate_stats(today - DAY, today)
    assert (aggregate.processed, aggregate.delivered, aggregate.hard_bounced) == (2, 1, 0)
    with pytest.raises(NotFoundException):
        stats.account_subaccount_stat_subaccount_id_get(today, today, sub_id + 1000)


async def test_overflow_pool_carries_mail_when_the_pool_has_no_live_provider(
    mail_sdk: MailSdk,
) -> None:
    """A pool whose providers were all deleted sends through its overflow pool (its provider
    relays the message); without shouldOverflow the same send is refused naming ``ippool``."""
    mail = mail_sdk
    seed = mail.setup.seed
    doomed, _ = seed.other_provider("doomed")
    pools_api = sp.IPPoolsApi(mail.client)
    pools_api.create_ip_pool(
        sp.IPPoolCreateRequest(
            name="edge", tpsps=[doomed.id], should_overflow=True, overflow_pool_name="main"
        )
    )
    pools_api.create_ip_pool(sp.IPPoolCreateRequest(name="lonely", tpsps=[doomed.id]))
    with mail.setup.store.write() as conn:
        providers.delete_provider(
            conn,
            account_id=seed.account.account_id,
            provider_id=doomed.id,
            now=mail.setup.clock.now(),
        )
    [result] = send(mail, "accept-1@example.org", ippool="edge")
    assert result.error_code == 0
    found = sp.MessageApi(mail.client).get_message_by_id(result.message_id or "")
    assert found.ip_pool == "edge"
    assert await relay(mail) == 1  # by the main pool's provider: the only one aimed at the sink
    assert [r.rcpt_tos for r in mail.setup.sink.received()] == [("accept-1@example.org",)]
    with pytest.raises(sp.ApiException) as refused:
        send(mail, "accept-1@example.org", ippool="lonely")
    # The send API's status for a body it cannot route (400 today, SendPost documents 422).
    assert refused.value.status in (400, 422)
    assert '"ippool"' in (refused.value.body or "")


async def test_email_provider_rules_route_as_sendpost_numbers_them(mail_sdk: MailSdk) -> None:
    """A pool made through the SDK with routingStrategy 1 and rules keyed by SendPost's email
    types (0 Gmail, 3 Microsoft, others) routes each recipient to the provider its rule names:
    the message records that provider, and the Gmail one reaches the sink's provider."""
    mail = mail_sdk
    sink_provider = mail.setup.seed.provider.id
    other, _ = mail.setup.seed.other_provider("other")
    rules = {
        "0": f'["TPSP_{sink_provider}"]',
        "3": f'["TPSP_{other.id}"]',
        "others": [f"TPSP_{other.id}"],
    }
    sp.IPPoolsApi(mail.client).create_ip_pool(
        sp.IPPoolCreateRequest(
            name="by-type", routing_strategy=1, routing_meta_data=json.dumps(rules)
        )
    )
    results = send(mail, "a@gmail.com", "b@outlook.com", "c@example.org", ippool="by-type")
    with mail.setup.store.read() as conn:
        routed = [messages.get_message(conn, r.message_id or "") for r in results]
    assert [m.provider_id if m else None for m in routed] == [sink_provider, other.id, other.id]
