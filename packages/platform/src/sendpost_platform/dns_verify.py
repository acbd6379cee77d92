"""The DNS records a sender domain publishes, and their verification through real DNS queries.

Two records per domain:

- ``TXT {selector}._domainkey.{domain}``: ``v=DKIM1; k=rsa|ed25519; p={public key}``;
- ``CNAME sp-bounce.{domain}`` → the platform's bounce host (the return-path domain).

The CNAME target is the same for every account, so it proves nothing about who added the
domain; the DKIM record, carrying a key generated for one account's domain row, is that
account's proof of control. Sending needs both (``sending.py``).

Queries go to the configured nameserver and port (``None`` uses the system's resolv.conf) with
dnspython's asynchronous resolver; tests point it at ``devtools.dns.DnsServer`` on loopback.
A DKIM record matches when its ``p=`` value equals the key's, whitespace ignored; a CNAME
matches when its target equals the configured one, case and the final dot ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from sendpost_platform.smtp.prepare import BOUNCE_SUBDOMAIN


class RecordPurpose(enum.StrEnum):
    dkim = "dkim"
    return_path = "return_path"


@dataclass(frozen=True)
class DnsRecord:
    purpose: RecordPurpose
    type: str
    name: str
    value: str


@dataclass(frozen=True)
class RecordCheck:
    record: DnsRecord
    verified: bool
    found: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True)
class ResolverSettings:
    nameserver: str | None = None
    port: int = 53
    timeout_seconds: float = 3.0


def expected_records(
    domain: str, selector: str, dkim_txt: str, bounce_target: str
) -> tuple[DnsRecord, DnsRecord]:
    return (
        DnsRecord(RecordPurpose.dkim, "TXT", f"{selector}._domainkey.{domain}", dkim_txt),
        DnsRecord(
            RecordPurpose.return_path,
            "CNAME",
            f"{BOUNCE_SUBDOMAIN}.{domain}",
            bounce_target.rstrip("."),
        ),
    )


def make_resolver(settings: ResolverSettings) -> dns.asyncresolver.Resolver:
    if settings.nameserver is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [settings.nameserver]
        resolver.port = settings.port
    resolver.lifetime = settings.timeout_seconds
    resolver.timeout = settings.timeout_seconds
    return resolver


def _dkim_key(txt: str) -> str | None:
    tags = {}
    for part in txt.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = "".join(value.split())
    return tags.get("p")


def record_matches(record: DnsRecord, found: str) -> bool:
    if record.type == "CNAME":
        return found.rstrip(".").lower() == record.value.rstrip(".").lower()
    return _dkim_key(found) == _dkim_key(record.value) and _dkim_key(found) is not None


async def _lookup(resolver: dns.asyncresolver.Resolver, record: DnsRecord) -> tuple[str, ...]:
    answer = await resolver.resolve(record.name, record.type, raise_on_no_answer=False)
    values: list[str] = []
    for rdata in answer:
        if record.type == "TXT":
            values.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        else:
            values.append(rdata.to_text())
    return tuple(values)


async def check_record(resolver: dns.asyncresolver.Resolver, record: DnsRecord) -> RecordCheck:
    try:
        found = await _lookup(resolver, record)
    except dns.resolver.NXDOMAIN:
        return RecordCheck(record, False, (), "no such name")
    except dns.exception.Timeout:
        return RecordCheck(record, False, (), "DNS timeout")
    except dns.exception.DNSException as exc:
        return RecordCheck(record, False, (), f"DNS error: {exc}")
    return RecordCheck(record, any(record_matches(record, v) for v in found), found)


async def check_records(
    settings: ResolverSettings, records: Sequence[DnsRecord]
) -> list[RecordCheck]:
    resolver = make_resolver(settings)
    return [await check_record(resolver, record) for record in records]
