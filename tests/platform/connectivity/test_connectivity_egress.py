"""The SMTP test under the egress guard: refusal before any connection, the connection made to
the address that was checked (no rebinding), and TLS verified for the name, not the address."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sendpost_platform.dns_verify import ResolverSettings
from sendpost_platform.egress import AddressClass, EgressPolicy, EgressRefused
from sendpost_platform.smtp.connectivity import SmtpTestSettings, run_smtp_test

from devtools.dns import DnsServer
from devtools.smtp_servers import TestServer, TlsMaterial
from tests.platform.egress.rebinding import FlippingZone, servers_on_one_port

FAST = 3.0


def _settings(host: str, port: int, **overrides: object) -> SmtpTestSettings:
    values: dict[str, object] = {
        "host": host,
        "port": port,
        "security": "none",
        "test_from": "probe@sender.example",
        "test_to": "postmaster@receiver.example",
        "helo_name": "platform.test",
    }
    values.update(overrides)
    return SmtpTestSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on loopback that is never accepted on: a connection made to it would
    wait in the backlog, where a non-blocking ``accept`` finds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def _connections(listener: socket.socket) -> int:
    count = 0
    for _ in range(100):
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1
    return count


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0.0.0.0"])
async def test_default_policy_refuses_before_connecting(listener: socket.socket, host: str) -> None:
    """Without the development switch the test raises ``EgressRefused`` (loopback or
    unspecified, each named) and the listening server sees no connection at all."""
    port = listener.getsockname()[1]
    with pytest.raises(EgressRefused) as refused:
        await run_smtp_test(_settings(host, port), timeout=FAST)
    assert refused.value.address_class in (AddressClass.loopback, AddressClass.unspecified)
    assert 0 == _connections(listener)


async def test_same_listener_is_reached_with_the_development_switch(
    listener: socket.socket,
) -> None:
    """The control for the test above: with ``allow_private`` the same target is connected to
    (the connection then waits for a greeting that never comes)."""
    port = listener.getsockname()[1]
    result = await run_smtp_test(
        _settings("127.0.0.1", port), timeout=0.3, egress=EgressPolicy(allow_private=True)
    )
    assert ("timeout", 1) == (result.stage, _connections(listener))


async def test_connection_goes_to_the_checked_address_when_dns_rebinds() -> None:
    """Rebinding: the name answers 127.0.0.2 to the check, then 127.0.0.3. The test connects
    to 127.0.0.2 (the address that was checked; the name is looked up once) and its message
    reaches only that server, although the name now resolves elsewhere."""
    zone = FlippingZone("rebind.test", "127.0.0.2", "127.0.0.3")
    with servers_on_one_port("127.0.0.2", "127.0.0.3") as (checked, moved), DnsServer(zone) as dns:
        resolver = ResolverSettings("127.0.0.1", dns.port, 2.0)
        policy = EgressPolicy(allow_private=True, resolver=resolver)
        result = await run_smtp_test(_settings("rebind.test", checked.port), egress=policy)
        now = await policy.resolve("rebind.test", checked.port)
        delivered = (len(checked.messages), len(moved.messages))
    assert (True, (1, 0)) == (result.ok, delivered)
    assert "* connected to 127.0.0.2" in result.transcript
    assert (("127.0.0.3",), 2) == (now.addresses, zone.a_queries)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return TlsMaterial.create(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize(
    ("host", "ok"), [("localhost", True), ("127.0.0.1", True), ("wrong.test", False)]
)
async def test_certificate_is_verified_for_the_name_not_the_address(
    tls: TlsMaterial, tmp_path: Path, host: str, ok: bool
) -> None:
    """All three hosts lead to 127.0.0.1 (names through the configured DNS server), which the
    certificate (for ``localhost`` and ``127.0.0.1``) covers; ``wrong.test`` still fails at tls
    with a hostname mismatch: STARTTLS verifies the name the customer gave, not the address the
    connection went to."""
    with TestServer(starttls=tls) as server, DnsServer() as dns:
        dns.add("localhost", "A", "127.0.0.1")
        dns.add("wrong.test", "A", "127.0.0.1")
        policy = EgressPolicy(
            allow_private=True, resolver=ResolverSettings("127.0.0.1", dns.port, 2.0)
        )
        settings = _settings(host, server.port, security="starttls", ca_file=str(tls.ca_file))
        result = await run_smtp_test(settings, timeout=FAST, egress=policy)
    assert (ok, None if ok else "tls") == (result.ok, result.stage)
    assert "* connected to 127.0.0.1" in result.transcript
    if not ok:
        assert "wrong.test" in str(result.reply)
