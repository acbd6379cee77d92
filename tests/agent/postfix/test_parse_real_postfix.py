"""`sendpost-agent parse` against logs written by the real Postfix (Debian's package).

Messages go over SMTP into a private Postfix that relays to sinks answering by recipient prefix
(accept / reject at RCPT / defer at RCPT / mailbox full / reject after DATA). Once Postfix has
finished with a message (and its re-injected copy and notifications), the real executable parses
the whole log and we check: exactly one terminal event (delivered, bounced, soft_bounced) of the
right type and codes per (message UUID, recipient), and nothing for notifications or foreign mail.

Every test runs twice (see conftest): short queue IDs with direct delivery, and long queue IDs
with a content filter that re-injects into a second smtpd (no header_checks there).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from devtools.postfix import MessageTrace
from devtools.rig import LocalMta

pytestmark = pytest.mark.postfix

TERMINAL = ("delivered", "bounced", "soft_bounced")


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def addresses(uuid: str, *prefixes: str) -> list[str]:
    """Recipient addresses unique to this test: ``{prefix}-{uuid[:8]}@sink.test``."""
    return [f"{prefix}-{uuid[:8]}@sink.test" for prefix in prefixes]


def terminal_types(events: Iterable[dict[str, Any]], uuid: str) -> dict[str, list[str]]:
    """recipient -> the terminal event types reported for message ``uuid``, in order."""
    found: dict[str, list[str]] = {}
    for event in events:
        if event["message_id"] == uuid and event["event_type"] in TERMINAL:
            found.setdefault(event["recipient"], []).append(event["event_type"])
    return found


def terminal_codes(events: Iterable[dict[str, Any]], uuid: str) -> dict[str, tuple[Any, ...]]:
    """recipient -> (smtp_code, enhanced_status, smtp_command) of its terminal event."""
    return {
        event["recipient"]: (
            event.get("smtp_code"),
            event.get("enhanced_status"),
            event.get("smtp_command"),
        )
        for event in events
        if event["message_id"] == uuid and event["event_type"] in TERMINAL
    }


def report(trace: MessageTrace, events: list[dict[str, Any]], uuid: str) -> str:
    """The evidence for a failure: Postfix's lines for the message and parse's events for it."""
    mine = [e for e in events if e["message_id"] == uuid or e.get("queue_id") in trace.queue_ids]
    return (
        f"\nsendpost-agent parse disagrees with Postfix for message {uuid}."
        "\nPostfix log lines of its queue IDs (copies and notifications included):\n  "
        + "\n  ".join(trace.lines)
        + "\nevents printed for it:\n  "
        + "\n  ".join(map(str, mine))
    )


def deliver(
    rig: LocalMta, uuid: str, recipients: list[str], **how: bool
) -> tuple[MessageTrace, list[dict[str, Any]]]:
    """Send one message, wait until Postfix is done with it, parse the whole log."""
    queue_id = rig.send(uuid, recipients, **how)
    trace = rig.settle([queue_id])
    result = rig.parse()
    assert result.returncode == 0, result.stderr
    return trace, result.events


def test_accepted_recipient_is_delivered_once(rig: LocalMta) -> None:
    """A recipient the remote server accepts gets one `delivered` event carrying its 250 reply."""
    uuid = new_uuid()
    [rcpt] = addresses(uuid, "accept")
    trace, events = deliver(rig, uuid, [rcpt])
    assert {rcpt: ["delivered"]} == terminal_types(events, uuid), report(trace, events, uuid)
    assert {rcpt: (250, "2.0.0", None)} == terminal_codes(events, uuid), report(trace, events, uuid)


@pytest.mark.parametrize(
    ("prefix", "codes"),
    [
        pytest.param("reject", (550, "5.1.1", "RCPT TO"), id="unknown-user-550-at-rcpt"),
        pytest.param("full", (552, "5.2.2", "RCPT TO"), id="mailbox-full-552-at-rcpt"),
        pytest.param("dataerr", (554, "5.7.1", "DATA"), id="content-554-after-data"),
    ],
)
def test_permanent_rejection_is_bounced_once(
    rig: LocalMta, prefix: str, codes: tuple[Any, ...]
) -> None:
    """A 5xx from the remote server (at RCPT or after DATA) gives one `bounced` event with the
    server's code, enhanced status and the command it answered."""
    uuid = new_uuid()
    [rcpt] = addresses(uuid, prefix)
    trace, events = deliver(rig, uuid, [rcpt])
    assert {rcpt: ["bounced"]} == terminal_types(events, uuid), report(trace, events, uuid)
    assert {rcpt: codes} == terminal_codes(events, uuid), report(trace, events, uuid)


@pytest.mark.parametrize(
    ("prefix", "codes"),
    [
        pytest.param("defer", (450, "4.2.0", "RCPT TO"), id="450-at-rcpt"),
        pytest.param("greylist", (451, "4.7.1", "RCPT TO"), id="greylist-451-at-rcpt"),
    ],
)
def test_deferral_until_expiry_is_one_soft_bounce(
    rig: LocalMta, prefix: str, codes: tuple[Any, ...]
) -> None:
    """A recipient deferred (4xx at RCPT) until maximal_queue_lifetime runs out gets `deferred`
    events and then exactly one `soft_bounced` (from qmgr's `status=expired`), with the last
    reply's codes."""
    uuid = new_uuid()
    [rcpt] = addresses(uuid, prefix)
    trace, events = deliver(rig, uuid, [rcpt])
    assert any("status=expired" in line for line in trace.lines), "\n".join(trace.lines)
    types = [e["event_type"] for e in events if e["message_id"] == uuid]
    expected = ["deferred", "soft_bounced"]
    assert expected == types, report(trace, events, uuid)
    assert {rcpt: codes} == terminal_codes(events, uuid), report(trace, events, uuid)


def test_unreachable_server_soft_bounces_without_an_smtp_code(rig: LocalMta) -> None:
    """When the receiving server cannot be reached (connection refused: relay=none, dsn=4.4.1)
    until expiry, the recipient gets one `soft_bounced` with the DSN code and no SMTP code."""
    uuid = new_uuid()
    rcpt = f"user-{uuid[:8]}@down.test"
    trace, events = deliver(rig, uuid, [rcpt])
    assert {rcpt: ["soft_bounced"]} == terminal_types(events, uuid), report(trace, events, uuid)
    assert {rcpt: (None, "4.4.1", None)} == terminal_codes(events, uuid), report(
        trace, events, uuid
    )


def test_data_rejection_bounces_every_recipient_of_the_transaction(rig: LocalMta) -> None:
    """SMTP has one reply to DATA for all recipients: a 554 after DATA bounces each recipient of
    the transaction, each with its own event and the same codes."""
    uuid = new_uuid()
    dataerr, accept = addresses(uuid, "dataerr", "accept")
    trace, events = deliver(rig, uuid, [dataerr, accept])
    expected = {dataerr: ["bounced"], accept: ["bounced"]}
    assert expected == terminal_types(events, uuid), report(trace, events, uuid)
    codes = (554, "5.7.1", "DATA")
    assert {dataerr: codes, accept: codes} == terminal_codes(events, uuid), report(
        trace, events, uuid
    )


def test_mixed_recipients_each_get_their_own_outcome(rig: LocalMta) -> None:
    """One message to five recipients with five different answers: one terminal event each, of
    the right type, and none for anybody else."""
    uuid = new_uuid()
    accept, reject, defer, full, greylist = addresses(
        uuid, "accept", "reject", "defer", "full", "greylist"
    )
    trace, events = deliver(rig, uuid, [accept, reject, defer, full, greylist])
    expected = {
        accept: ["delivered"],
        reject: ["bounced"],
        defer: ["soft_bounced"],
        full: ["bounced"],
        greylist: ["soft_bounced"],
    }
    assert expected == terminal_types(events, uuid), report(trace, events, uuid)
    expected_codes = {
        accept: (250, "2.0.0", None),
        reject: (550, "5.1.1", "RCPT TO"),
        defer: (450, "4.2.0", "RCPT TO"),
        full: (552, "5.2.2", "RCPT TO"),
        greylist: (451, "4.7.1", "RCPT TO"),
    }
    assert expected_codes == terminal_codes(events, uuid), report(trace, events, uuid)


def test_many_recipients_over_several_transactions(rig: LocalMta) -> None:
    """90 recipients (more than Postfix's 50 per delivery, so several SMTP transactions) with
    three outcomes: exactly one terminal event each, none missing, none doubled."""
    uuid = new_uuid()
    outcome = {"accept": "delivered", "reject": "bounced", "defer": "soft_bounced"}
    recipients = [f"{prefix}-{n}-{uuid[:8]}@sink.test" for n in range(30) for prefix in outcome]
    trace, events = deliver(rig, uuid, recipients)
    expected = {rcpt: [outcome[rcpt.split("-")[0]]] for rcpt in recipients}
    assert expected == terminal_types(events, uuid), report(trace, events, uuid)


def test_internationalised_recipient(rig: LocalMta) -> None:
    """A non-ASCII (SMTPUTF8) recipient is reported with its address as Postfix logged it."""
    uuid = new_uuid()
    rcpt = f"accept-jürgen-{uuid[:8]}@sink.test"
    trace, events = deliver(rig, uuid, [rcpt])
    assert {rcpt: ["delivered"]} == terminal_types(events, uuid), report(trace, events, uuid)


def test_quoted_and_mixed_case_recipients(rig: LocalMta) -> None:
    """Recipients are reported exactly as Postfix logs them: quoted local parts holding spaces,
    commas and parentheses, and mixed case."""
    uuid = new_uuid()
    tag = uuid[:8]
    quoted_ok, quoted_bad = f'"accept {tag}"@sink.test', f'"reject ({tag}), y"@sink.test'
    mixed = f"Accept.{tag}@Sink.TEST"
    trace, events = deliver(rig, uuid, [quoted_ok, quoted_bad, mixed])
    expected = {quoted_ok: ["delivered"], quoted_bad: ["bounced"], mixed: ["delivered"]}
    assert expected == terminal_types(events, uuid), report(trace, events, uuid)


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(
            {"uuid_header": True, "uuid_message_id": False, "platform_sender": False},
            id="header-only",
        ),
        pytest.param(
            {"uuid_header": False, "uuid_message_id": True, "platform_sender": False},
            id="message-id-only",
        ),
        pytest.param(
            {"uuid_header": True, "uuid_message_id": True, "platform_sender": False},
            id="header-and-message-id",
        ),
        pytest.param(
            {"uuid_header": False, "uuid_message_id": False, "platform_sender": True},
            id="envelope-sender-only",
        ),
        pytest.param(
            {"uuid_header": True, "uuid_message_id": True, "platform_sender": True},
            id="as-the-platform-sends",
        ),
    ],
)
def test_uuid_is_found_wherever_the_message_carries_it(rig: LocalMta, how: dict[str, bool]) -> None:
    """The UUID is recovered from the X-Sendpost-Message-UUID header, the Message-ID's local part
    or the bounces+{uuid}+{sub}@sp-bounce.{domain} envelope sender, alone or together."""
    uuid = new_uuid()
    accept, reject = addresses(uuid, "accept", "reject")
    trace, events = deliver(rig, uuid, [accept, reject], **how)
    assert {accept: ["delivered"], reject: ["bounced"]} == terminal_types(events, uuid), report(
        trace, events, uuid
    )


def test_no_event_for_bounce_notifications(rig: LocalMta) -> None:
    """Postfix's non-delivery notifications (to the bounces+ return path, carrying the original
    headers) are delivered but produce no event: only the original recipients are reported."""
    uuid = new_uuid()
    reject, defer = addresses(uuid, "reject", "defer")
    trace, events = deliver(rig, uuid, [reject, defer])
    assert trace.notifications, "Postfix generated no notification:\n" + "\n".join(trace.lines)
    notified = [m for m in rig.bounce_sink.messages() if uuid in " ".join(m.rcpt_tos)]
    assert len(trace.notifications) == len(notified)
    about_notifications = [e for e in events if e.get("queue_id") in trace.notifications]
    nothing: list[dict[str, Any]] = []
    assert nothing == about_notifications, report(trace, events, uuid)
    assert {reject, defer} == {e["recipient"] for e in events if e["message_id"] == uuid}


def test_no_event_for_success_notifications(rig: LocalMta) -> None:
    """A DSN request (RCPT ... NOTIFY=SUCCESS) makes Postfix send a delivery status notification
    to the return path; the recipient is reported delivered once and the notification not at all."""
    uuid = new_uuid()
    [accept] = addresses(uuid, "accept")
    queue_id = rig.send(uuid, [accept], rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    trace = rig.settle([queue_id])
    events = rig.parse().events
    assert trace.notifications, "no success notification:\n" + "\n".join(trace.lines)
    assert {accept: ["delivered"]} == terminal_types(events, uuid), report(trace, events, uuid)
    about_notifications = [e for e in events if e.get("queue_id") in trace.notifications]
    nothing: list[dict[str, Any]] = []
    assert nothing == about_notifications, report(trace, events, uuid)


def test_no_event_for_mail_without_a_uuid(rig: LocalMta) -> None:
    """Mail that did not come from the platform (no UUID header, Message-ID or bounces+ sender)
    produces no event at all, whatever happens to it."""
    marker = new_uuid()
    accept, reject = addresses(marker, "accept", "reject")
    queue_id = rig.send(
        marker, [accept, reject], uuid_header=False, uuid_message_id=False, platform_sender=False
    )
    trace = rig.settle([queue_id])
    events = rig.parse().events
    mine = [e for e in events if e.get("queue_id") in trace.queue_ids | trace.notifications]
    nothing: list[dict[str, Any]] = []
    assert nothing == mine, report(trace, events, marker)


def test_event_ids_are_unique_across_the_log(rig: LocalMta) -> None:
    """Every event parse prints for the shared log has its own event_id (deterministic IDs must
    not collide between recipients, messages or re-injected copies)."""
    uuid = new_uuid()
    rig.settle([rig.send(uuid, addresses(uuid, "accept", "reject", "defer"))])
    events = rig.parse().events
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    assert len(events) >= 3


def test_retried_deferrals_then_expiry(local_mta: Callable[..., LocalMta]) -> None:
    """A recipient deferred on several attempts (1 s backoff) until maximal_queue_lifetime (3 s)
    ends gets one `deferred` event per attempt and exactly one final `soft_bounced`; the
    accepted recipient of the same message is delivered once, on the first attempt."""
    # Postfix checks the lifetime at the end of each attempt: a second attempt happens unless the
    # first one ends more than 3 s after the message arrived (a badly overloaded machine).
    rig = local_mta(maximal_queue_lifetime="3s", retry_delay="1s")
    uuid = new_uuid()
    accept, defer = addresses(uuid, "accept", "defer")
    trace, events = deliver(rig, uuid, [accept, defer])
    attempts = sum(f"to=<{defer}>" in line and "status=deferred" in line for line in trace.lines)
    assert attempts >= 2, "expected several delivery attempts:\n" + "\n".join(trace.lines)
    types = [e["event_type"] for e in events if e["message_id"] == uuid and e["recipient"] == defer]
    expected = ["deferred"] * attempts + ["soft_bounced"]
    assert expected == types, report(trace, events, uuid)
    assert {accept: ["delivered"], defer: ["soft_bounced"]} == terminal_types(events, uuid), report(
        trace, events, uuid
    )


def test_forced_expiry_is_one_soft_bounce(local_mta: Callable[..., LocalMta]) -> None:
    """`postsuper -e` on a deferred message (qmgr: `status=force-expired`) gives its still-pending
    recipient one `soft_bounced`; the recipient delivered earlier keeps its single `delivered`."""
    rig = local_mta(maximal_queue_lifetime="1h", retry_delay="1h")
    uuid = new_uuid()
    defer, accept = addresses(uuid, "defer", "accept")
    queue_id = rig.send(uuid, [defer, accept])
    rig.mta.wait_for_log(lambda text: f"{queue_id}: to=<{defer}>" in text, timeout=20)
    rig.mta.force_expire(queue_id)
    trace = rig.settle([queue_id])
    events = rig.parse().events
    assert any("status=force-expired" in line for line in trace.lines), "\n".join(trace.lines)
    expected = {defer: ["soft_bounced"], accept: ["delivered"]}
    assert expected == terminal_types(events, uuid), report(trace, events, uuid)
