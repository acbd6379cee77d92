"""Domain records are verified by real DNS queries to a loopback authoritative server."""

from __future__ import annotations

from collections.abc import Iterator

import dns.asyncresolver
import dns.rdatatype
import pytest
from sendpost_platform.dns_verify import (
    RecordPurpose,
    ResolverSettings,
    check_records,
    expected_records,
)
from sendpost_platform.smtp import dkim

from devtools.dns import DnsServer

BOUNCE_TARGET = "bounce.sendpost.example"


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture(scope="module")
def key() -> dkim.DkimKey:
    return dkim.generate_key()


def settings(server: DnsServer) -> ResolverSettings:
    return ResolverSettings(nameserver="127.0.0.1", port=server.port, timeout_seconds=2.0)


async def test_published_records_verify(dns_server: DnsServer, key: dkim.DkimKey) -> None:
    """With both records published as listed, both checks pass."""
    records = expected_records("shop.example", "sp1", dkim.txt_record(key), BOUNCE_TARGET)
    for record in records:
        dns_server.add(record.name, record.type, record.value)
    checks = await check_records(settings(dns_server), records)
    assert [c.verified for c in checks] == [True, True]
    assert (f"{BOUNCE_TARGET}.",) == checks[1].found


async def test_missing_and_wrong_records_fail(dns_server: DnsServer, key: dkim.DkimKey) -> None:
    """A missing DKIM name gives NXDOMAIN; a CNAME to the wrong target does not verify."""
    records = expected_records("shop.example", "sp1", dkim.txt_record(key), BOUNCE_TARGET)
    dns_server.add("sp-bounce.shop.example", "CNAME", "elsewhere.example.")
    checks = await check_records(settings(dns_server), records)
    assert [
        (RecordPurpose.dkim, False, "no such name"),
        (RecordPurpose.return_path, False, None),
    ] == [(c.record.purpose, c.verified, c.error) for c in checks]


async def test_dkim_record_with_other_key_fails(dns_server: DnsServer, key: dkim.DkimKey) -> None:
    """A DKIM TXT record carrying another public key does not verify."""
    other = dkim.generate_key(dkim.DkimAlgorithm.ed25519)
    records = expected_records("shop.example", "sp1", dkim.txt_record(key), BOUNCE_TARGET)
    dns_server.add(records[0].name, "TXT", dkim.txt_record(other))
    checks = await check_records(settings(dns_server), records[:1])
    assert [c.verified for c in checks] == [False]


async def test_long_txt_over_udp_and_tcp(dns_server: DnsServer, key: dkim.DkimKey) -> None:
    """A 2048-bit DKIM value (split in 255-byte strings) reads back whole over UDP and TCP."""
    value = dkim.txt_record(key)
    dns_server.add("sp1._domainkey.shop.example", "TXT", value)
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = dns_server.port
    for tcp in (False, True):
        answer = await resolver.resolve("sp1._domainkey.shop.example", "TXT", tcp=tcp)
        assert [value] == [b"".join(r.strings).decode() for r in answer]


async def test_unreachable_nameserver_is_a_failed_check(key: dkim.DkimKey) -> None:
    """A nameserver that does not answer gives a failed check, not an exception."""
    with DnsServer() as server:
        port = server.port
    records = expected_records("shop.example", "sp1", dkim.txt_record(key), BOUNCE_TARGET)
    quiet = ResolverSettings(nameserver="127.0.0.1", port=port, timeout_seconds=0.3)
    checks = await check_records(quiet, records[:1])
    assert [c.verified for c in checks] == [False]
    assert dns.rdatatype.from_text(checks[0].record.type) == dns.rdatatype.TXT
