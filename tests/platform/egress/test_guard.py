"""The egress guard (``egress.py``): which addresses are refused, and resolution through a real
DNS server on loopback. Nothing here opens a connection to a refused address: resolution is
checked before any connection, and only loopback servers are ever connected to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sendpost_platform.config import Settings
from sendpost_platform.dns_verify import ResolverSettings
from sendpost_platform.egress import (
    AddressClass,
    EgressPolicy,
    EgressRefused,
    UnresolvableHost,
    classify,
)
from sendpost_platform.errors import ConfigError

from devtools.dns import DnsServer

REFUSED = [
    # IPv4
    ("127.0.0.1", AddressClass.loopback),
    ("127.255.255.254", AddressClass.loopback),
    ("10.0.0.1", AddressClass.private),
    ("10.255.255.255", AddressClass.private),
    ("172.16.0.1", AddressClass.private),
    ("172.31.255.254", AddressClass.private),
    ("192.168.1.1", AddressClass.private),
    ("169.254.0.1", AddressClass.link_local),
    ("169.254.169.254", AddressClass.metadata),
    ("169.254.170.2", AddressClass.metadata),
    ("100.100.100.200", AddressClass.metadata),
    ("168.63.129.16", AddressClass.metadata),
    ("100.64.0.1", AddressClass.cgnat),
    ("100.127.255.254", AddressClass.cgnat),
    ("224.0.0.1", AddressClass.multicast),
    ("239.255.255.250", AddressClass.multicast),
    ("0.0.0.0", AddressClass.unspecified),
    ("0.1.2.3", AddressClass.reserved),
    ("255.255.255.255", AddressClass.reserved),
    ("240.0.0.1", AddressClass.reserved),
    ("192.0.2.10", AddressClass.reserved),
    ("198.18.0.1", AddressClass.reserved),
    ("198.51.100.7", AddressClass.reserved),
    ("203.0.113.9", AddressClass.reserved),
    ("192.0.0.8", AddressClass.reserved),
    # IPv6
    ("::1", AddressClass.loopback),
    ("::", AddressClass.unspecified),
    ("fe80::1", AddressClass.link_local),
    ("fe80::1%1", AddressClass.link_local),
    ("fc00::1", AddressClass.unique_local),
    ("fd12:3456:789a::1", AddressClass.unique_local),
    ("fd00:ec2::254", AddressClass.metadata),
    ("fd20:ce::254", AddressClass.metadata),
    ("ff02::1", AddressClass.multicast),
    ("ff0e::1", AddressClass.multicast),
    ("fec0::1", AddressClass.reserved),
    ("2001:db8::1", AddressClass.reserved),
    ("100::1", AddressClass.reserved),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", AddressClass.reserved),  # Teredo
    ("64:ff9b:1::1", AddressClass.reserved),
    # IPv6 forms carrying an IPv4 address are judged by it
    ("::ffff:127.0.0.1", AddressClass.loopback),
    ("::ffff:7f00:1", AddressClass.loopback),
    ("::ffff:10.0.0.1", AddressClass.private),
    ("::ffff:169.254.169.254", AddressClass.metadata),
    ("::ffff:100.64.0.1", AddressClass.cgnat),
    ("::ffff:0.0.0.0", AddressClass.unspecified),
    ("::127.0.0.1", AddressClass.loopback),  # IPv4-compatible (deprecated)
    ("::8.8.8.8", AddressClass.reserved),  # IPv4-compatible: reaches nothing real
    ("64:ff9b::7f00:1", AddressClass.loopback),  # NAT64 of 127.0.0.1
    ("64:ff9b::a9fe:a9fe", AddressClass.metadata),  # NAT64 of 169.254.169.254
    ("2002:7f00:1::1", AddressClass.loopback),  # 6to4 of 127.0.0.1
    ("2002:c0a8:101::1", AddressClass.private),  # 6to4 of 192.168.1.1
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "192.167.255.255",
    "11.0.0.1",
    "169.253.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of a public address
    "2002:808:808::1",  # 6to4 of a public address
]


@pytest.mark.parametrize(("address", "expected"), REFUSED)
def test_each_refused_class_is_named(address: str, expected: AddressClass) -> None:
    """Every loopback, private, link-local, CGNAT, multicast, unspecified, reserved and metadata
    address (and IPv6 forms of them) is refused with its class."""
    assert expected == classify(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_globally_routable_addresses_are_allowed(address: str) -> None:
    """Public addresses, including the ones right next to refused ranges, are allowed."""
    assert None is classify(address)


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address; "),
        ("[::1]", "::1 is a loopback address; "),
        ("169.254.169.254", "169.254.169.254 is a cloud metadata address; "),
        ("10.1.2.3", "10.1.2.3 is a private address (RFC 1918); "),
        ("100.64.1.1", "100.64.1.1 is a shared address (CGNAT, 100.64.0.0/10); "),
        ("::ffff:127.0.0.1", "::ffff:7f00:1 is a loopback address; "),
    ],
)
async def test_literal_refusal_names_the_address_and_its_class(host: str, message: str) -> None:
    """An IP literal is refused before any connection; the message names the address, its class
    and the development setting that would allow it."""
    with pytest.raises(EgressRefused) as refused:
        await EgressPolicy().resolve(host, 25)
    assert str(refused.value).startswith(message)
    assert "SENDPOST_ALLOW_PRIVATE_NETWORKS=true" in str(refused.value)


async def test_system_resolver_name_for_loopback_is_refused() -> None:
    """``localhost`` through the system resolver (no nameserver configured) is refused as
    loopback: the check applies to what a name resolves to, not to how it is spelled."""
    with pytest.raises(EgressRefused) as refused:
        await EgressPolicy().resolve("localhost", 25)
    assert AddressClass.loopback == refused.value.address_class
    assert str(refused.value).startswith("localhost resolves to ")


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


def _policy(server: DnsServer, *, allow_private: bool = False) -> EgressPolicy:
    resolver = ResolverSettings(nameserver="127.0.0.1", port=server.port, timeout_seconds=2.0)
    return EgressPolicy(allow_private=allow_private, resolver=resolver)


NAMES = [
    ("loopback.test", "A", "127.0.0.7", AddressClass.loopback),
    ("private10.test", "A", "10.20.30.40", AddressClass.private),
    ("private172.test", "A", "172.20.0.5", AddressClass.private),
    ("private192.test", "A", "192.168.0.10", AddressClass.private),
    ("linklocal.test", "A", "169.254.10.10", AddressClass.link_local),
    ("metadata.test", "A", "169.254.169.254", AddressClass.metadata),
    ("cgnat.test", "A", "100.100.0.1", AddressClass.cgnat),
    ("multicast.test", "A", "224.0.0.251", AddressClass.multicast),
    ("zero.test", "A", "0.0.0.0", AddressClass.unspecified),
    ("reserved.test", "A", "240.1.2.3", AddressClass.reserved),
    ("loopback6.test", "AAAA", "::1", AddressClass.loopback),
    ("ula.test", "AAAA", "fd00::1234", AddressClass.unique_local),
    ("metadata6.test", "AAAA", "fd00:ec2::254", AddressClass.metadata),
    ("mapped.test", "AAAA", "::ffff:127.0.0.1", AddressClass.loopback),
    ("linklocal6.test", "AAAA", "fe80::abcd", AddressClass.link_local),
]


@pytest.mark.parametrize(("name", "rdtype", "address", "expected"), NAMES)
async def test_names_resolving_to_refused_addresses_are_refused(
    dns_server: DnsServer, name: str, rdtype: str, address: str, expected: AddressClass
) -> None:
    """A name whose A or AAAA record (served by a real DNS server) is in a refused class is
    refused with that class; the message names the name and the address it resolved to."""
    dns_server.add(name, rdtype, address)
    with pytest.raises(EgressRefused) as refused:
        await _policy(dns_server).resolve(name, 587)
    assert (expected, name) == (refused.value.address_class, refused.value.host)
    assert str(refused.value).startswith(f"{name} resolves to ")


async def test_one_refused_address_among_public_ones_refuses_the_name(
    dns_server: DnsServer,
) -> None:
    """A public A record does not launder a private AAAA record: the whole name is refused."""
    dns_server.add("mixed.test", "A", "93.184.215.14")
    dns_server.add("mixed.test", "AAAA", "fd00::1")
    with pytest.raises(EgressRefused) as refused:
        await _policy(dns_server).resolve("mixed.test", 25)
    assert ("fd00::1", AddressClass.unique_local) == (
        refused.value.address,
        refused.value.address_class,
    )


async def test_public_name_resolves_to_its_checked_addresses(dns_server: DnsServer) -> None:
    """A name with public records yields a target holding exactly those addresses, and the
    name itself for TLS."""
    dns_server.add("smtp.public.test", "A", "93.184.215.14")
    dns_server.add("smtp.public.test", "AAAA", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    target = await _policy(dns_server).resolve("smtp.public.test", 465)
    assert ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c") == target.addresses
    assert ("smtp.public.test", 465) == (target.tls_name, target.port)


async def test_development_switch_allows_private_names(dns_server: DnsServer) -> None:
    """With ``allow_private`` a name on loopback resolves (the demo and tests rely on it)."""
    dns_server.add("local.test", "A", "127.0.0.1")
    target = await _policy(dns_server, allow_private=True).resolve("local.test", 25)
    assert ("127.0.0.1",) == target.addresses


async def test_unknown_name_is_an_os_error_not_a_refusal(dns_server: DnsServer) -> None:
    """NXDOMAIN is a network failure (``UnresolvableHost``, an ``OSError``), named as such."""
    with pytest.raises(UnresolvableHost) as failed:
        await _policy(dns_server).resolve("nowhere.test", 25)
    assert "cannot resolve nowhere.test: no such name" == str(failed.value)


async def test_answer_changing_after_the_check_does_not_change_the_target(
    dns_server: DnsServer,
) -> None:
    """Rebinding: the name answers a public address when checked, then loopback. The checked
    target keeps the public address (the caller connects to it), and resolving again - what a
    connection by name would do - is refused."""
    dns_server.add("rebind.test", "A", "93.184.215.14")
    policy = _policy(dns_server)
    target = await policy.resolve("rebind.test", 25)
    dns_server.remove("rebind.test")
    dns_server.add("rebind.test", "A", "127.0.0.1")
    with pytest.raises(EgressRefused):
        await policy.resolve("rebind.test", 25)
    assert ("93.184.215.14",) == target.addresses


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("127.0.0.53", "127.0.0.53 is a loopback address; set SENDPOST_ALLOW_PRIVATE_NETWORKS"),
        ("169.254.169.253", "169.254.169.253 is a cloud metadata address; set"),
        ("10.0.0.2", "10.0.0.2 is a private address (RFC 1918); set"),
        ("ns.example", "expected an IP address"),
    ],
)
def test_dns_nameserver_setting_is_checked(value: str, problem: str) -> None:
    """SENDPOST_DNS_NAMESERVER is an outbound connection too: a refused address (or a name)
    stops the platform at start-up with the variable named."""
    with pytest.raises(ConfigError) as failed:
        Settings.from_env({"SENDPOST_DNS_NAMESERVER": value})
    assert ("SENDPOST_DNS_NAMESERVER", value) == (failed.value.variable, failed.value.value)
    assert failed.value.problem.startswith(problem)


def test_dns_nameserver_on_loopback_with_the_development_switch() -> None:
    """With SENDPOST_ALLOW_PRIVATE_NETWORKS=true a loopback nameserver is accepted (the demo's
    DNS server), and a public one always is."""
    local = Settings.from_env(
        {"SENDPOST_DNS_NAMESERVER": "127.0.0.1", "SENDPOST_ALLOW_PRIVATE_NETWORKS": "true"}
    )
    public = Settings.from_env({"SENDPOST_DNS_NAMESERVER": "9.9.9.9"})
    assert ("127.0.0.1", True, "9.9.9.9", False) == (
        local.dns_nameserver,
        local.allow_private_networks,
        public.dns_nameserver,
        public.allow_private_networks,
    )
