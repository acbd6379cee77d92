"""End to end with the real Postfix: send API → relay worker → Postfix → sink, and the agent's
parser finds the message UUID in Postfix's log."""

from __future__ import annotations

import re
from collections.abc import Iterator

import dkim as dkimpy
import pytest
from sendpost_platform.smtp import dkim
from sendpost_platform.store import events
from sendpost_wire import EventType

from devtools.rig import LocalMta
from tests.platform.sending.conftest import DOMAIN, SELECTOR, SendingSetup
from tests.platform.sending.dns_support import txt_lookup


@pytest.fixture
def rig() -> Iterator[LocalMta]:
    with LocalMta() as running:
        yield running


@pytest.mark.postfix
async def test_relay_through_postfix_and_agent_parse(sending: SendingSetup, rig: LocalMta) -> None:
    """The relayed message is delivered by Postfix with a valid DKIM signature, and
    ``sendpost-agent parse`` reports it delivered under the platform's message UUID."""
    sending.point_provider(host="127.0.0.1", port=rig.mta.smtp_port)
    [result] = await sending.send(to=["accept-1@sink.test"])
    uuid = result["messageId"]
    job = sending.relay_job()
    assert await job.run_once() == 1
    await job.close()
    with sending.store.read() as conn:
        timeline = events.events_for_message(conn, uuid)
    sent = timeline[-1]
    assert sent["event_type"] == EventType.CSSent
    assert sent["smtp_code"] == 250
    queued = re.search(r"queued as (\w+)", str(sent["description"]))
    assert queued is not None
    rig.settle([queued.group(1)])
    [delivered] = rig.sink.wait_for_messages(1, timeout=20)
    lookup = txt_lookup({f"{SELECTOR}._domainkey.{DOMAIN}": dkim.txt_record(sending.key)})
    assert dkimpy.verify(delivered.data, dnsfunc=lookup) is True
    assert delivered.rcpt_tos == ("accept-1@sink.test",)
    reported = [e for e in rig.parse().events if e.get("message_id") == uuid]
    assert [(e["event_type"], e["recipient"]) for e in reported] == [
        ("delivered", "accept-1@sink.test")
    ]
