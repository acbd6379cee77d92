"""The relay under the egress guard: a provider on loopback is refused without the development
switch (a clear failure recorded, nothing sent), and a provider's name is looked up once per
connection, the connection going to the address that was checked."""

from __future__ import annotations

from sendpost_platform.store import events, relay
from sendpost_wire import EventType

from devtools.dns import DnsServer
from tests.platform.egress.rebinding import FlippingZone, servers_on_one_port
from tests.platform.sending.conftest import SendingSetup


async def test_relay_refuses_a_provider_on_loopback(sending: SendingSetup) -> None:
    """Without ``allow_private_networks`` the relay does not connect to the provider at
    127.0.0.1: the sink sees no session, the attempt's reply names the address and its class,
    and (with no retries left) the message is CSDropped with that reason."""
    [result] = await sending.send(to=["accept-1@example.org"])
    job = sending.relay_job(allow_private_networks=False, relay_retry_schedule=())
    assert 1 == await job.run_once()
    await job.close()
    with sending.store.read() as conn:
        [attempt] = relay.attempts_of(conn, result["messageId"])
        timeline = events.events_for_message(conn, result["messageId"])
    assert (0, []) == (sending.sink.sessions(), sending.sink.received())
    assert str(attempt["reply"]).startswith("refused: 127.0.0.1 is a loopback address; ")
    assert [EventType.CSProcessed, EventType.CSDropped] == [e["event_type"] for e in timeline]
    assert "connect: refused: 127.0.0.1 is a loopback address" in str(timeline[-1]["description"])


async def test_relay_with_the_development_switch_reaches_loopback(sending: SendingSetup) -> None:
    """The control: the same message through the same provider is relayed when
    ``allow_private_networks`` is on (the sending fixtures' setting)."""
    [result] = await sending.send(to=["accept-1@example.org"])
    job = sending.relay_job()
    assert 1 == await job.run_once()
    await job.close()
    assert 1 == len(sending.sink.received())
    with sending.store.read() as conn:
        timeline = events.events_for_message(conn, result["messageId"])
    assert EventType.CSSent == timeline[-1]["event_type"]


async def test_relay_connects_to_the_checked_address_when_dns_rebinds(
    sending: SendingSetup,
) -> None:
    """Rebinding: the provider's name answers 127.0.0.2 to the relay's lookup, then 127.0.0.3.
    The message reaches only the server at 127.0.0.2: the relay connected to the address it
    checked, not to the name (which now resolves elsewhere)."""
    zone = FlippingZone("mx.rebind.test", "127.0.0.2", "127.0.0.3")
    with servers_on_one_port("127.0.0.2", "127.0.0.3") as (checked, moved), DnsServer(zone) as dns:
        sending.point_provider(host="mx.rebind.test", port=checked.port)
        await sending.send(to=["accept-1@example.org"])
        job = sending.relay_job(dns_nameserver="127.0.0.1", dns_port=dns.port)
        assert 1 == await job.run_once()
        await job.close()
        delivered = (len(checked.messages), len(moved.messages))
    assert ((1, 0), 1) == (delivered, zone.a_queries)
