"""A message's page tells the truth: its state follows the terminal event, the timeline keeps
lifecycle order when agent times (whole seconds) tie with the platform's, the subject, sender
and every relay attempt with its SMTP reply are shown, and merged reports render as fields."""

from __future__ import annotations

import datetime as dt
import re

from sendpost_platform.dashboard import views
from sendpost_wire import EventType

from tests.platform.dashboard.helpers import add_event, event_ids, sign_in
from tests.platform.sending.conftest import SendingSetup, domain_key, sending, sink

__all__ = ["domain_key", "sending", "sink"]  # fixtures used here, defined for the sending tests

E = EventType


def _event(event_id: int, kind: EventType, at: dt.datetime, **extra: object) -> dict[str, object]:
    return {"id": event_id, "event_type": int(kind), "occurred_at": at, **extra}


def test_timeline_breaks_same_second_ties_by_lifecycle() -> None:
    """CSDelivered logged at 12:00:00 (agent, whole seconds) comes after CSProcessed and CSSent
    at 12:00:00.2/.4 (platform); across different seconds, time alone decides."""
    t = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    stored = [
        _event(3, E.CSDelivered, t),
        _event(1, E.CSProcessed, t + dt.timedelta(milliseconds=200)),
        _event(2, E.CSSent, t + dt.timedelta(milliseconds=400)),
        _event(4, E.CSOpen, t + dt.timedelta(seconds=1)),
        _event(5, E.CSProcessed, t - dt.timedelta(seconds=1)),
    ]
    assert [5, 1, 2, 3, 4] == [e["id"] for e in views.timeline(stored)]


def test_outcome_follows_the_last_terminal_event() -> None:
    """No terminal event: the message's own state; a soft then a hard bounce: hard bounce, with
    its code, reason and reply."""
    t = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert ("sent", "Sent; waiting for the outcome") == (
        views.outcome("sent", []).state,
        views.outcome("sent", []).label,
    )
    events = [
        _event(1, E.CSSent, t),
        _event(2, E.CSSoftBounced, t + dt.timedelta(minutes=1), smtp_code=452),
        _event(
            3,
            E.CSHardBounced,
            t + dt.timedelta(minutes=2),
            smtp_code=550,
            enhanced_status="5.1.1",
            reason="user_unknown",
            description="550 5.1.1 <a@b.test>: Recipient address rejected",
        ),
    ]
    result = views.outcome("sent", events)
    assert (result.state, result.label, result.code, result.reason) == (
        "bounced",
        "Hard bounce",
        "550 5.1.1",
        "user_unknown",
    )
    assert result.reply.startswith("550 5.1.1")


def test_details_render_nested_reports_as_fields() -> None:
    """A merged report (a list of objects) becomes groups of fields, not JSON text; event types
    inside details are named."""
    fields = views.details_fields(
        {
            "queueId": "4Xyz1ABC",
            "merged": [{"source": "dsn", "smtp_code": 550, "event_type": 63}],
        }
    )
    assert ["merged", "queueId"] == [f.name for f in fields]
    [group] = fields[0].groups
    assert {"event_type": "CSHardBounced (63)", "smtp_code": "550", "source": "dsn"} == {
        f.name: f.text for f in group
    }
    assert "4Xyz1ABC" == fields[1].text


async def test_message_page_shows_subject_sender_attempts_and_final_state(
    sending: SendingSetup,
) -> None:
    """A message sent through the send API and relayed: the page names its subject and From,
    lists the relay attempt with the sink's 250 reply, and once the agent reports CSDelivered
    (at a whole second that ties with CSSent) the state is delivered and the timeline order is
    processed, sent, delivered; a merged bounce report shows as fields."""
    [result] = await sending.send(to=["accept-1@example.org"], subject="Spring sale")
    job = sending.relay_job()
    assert await job.run_once() == 1
    await job.close()
    uuid = result["messageId"]
    now = sending.clock.now()
    delivered = add_event(
        sending.seed,
        uuid,
        E.CSDelivered,
        now.replace(microsecond=0),
        recipient="accept-1@example.org",
        smtp_code=250,
        description="250 2.0.0 Ok: queued as 912265B1F5",
        details={"merged": [{"source": "dsn", "reason": "user_unknown"}]},
    )
    async with sending.client() as client:
        await sign_in(client, sending.seed.account.account_key)
        page = (await client.get(f"/dashboard/messages/{uuid}")).text
    assert "Spring sale" in page
    assert re.search(r'data-state="delivered"', page)
    assert 'data-outcome="delivered"' in page
    assert event_ids(page)[-1] == delivered
    attempts = re.findall(r'<tr data-attempt="(\d+)">(.*?)</tr>', page, re.S)
    assert ["1"] == [a[0] for a in attempts]
    assert "accepted" in attempts[0][1]
    assert "250" in attempts[0][1]
    assert "<dt>reason</dt>" in page
    assert "user_unknown" in page
    assert "{&#34;" not in page
    assert '{"' not in page
