"""The outbound-connection guard: where the platform may connect on a customer's behalf.

A customer names the SMTP server of a provider (and, later, webhook URLs); without a guard the
connectivity test and the relay would connect to the platform's own loopback services, the
private network it runs in, or the cloud metadata service, and the test's timing and transcript
would make a port scanner of it. :class:`EgressPolicy` closes that:

1. :meth:`EgressPolicy.resolve` turns the host into addresses, once: an IP literal is taken as
   it is; a name goes to the platform's configured nameserver (``SENDPOST_DNS_NAMESERVER``,
   dnspython, A and AAAA) or, when none is configured, to the system resolver (``getaddrinfo``);
2. every address is classified (:func:`classify`); if any is refused, the whole host is refused
   with :class:`EgressRefused`, whose message names the address and its class
   (``127.0.0.1 is a loopback address; ...``);
3. the caller connects to the addresses in the returned :class:`CheckedTarget` with
   :func:`open_socket`, never to the name again, so a DNS answer that changes between the check
   and the connection (rebinding) cannot move the connection. The name is kept for TLS (SNI and
   certificate verification: aiosmtplib's ``hostname`` with a connected ``sock``).

Refused classes (:class:`AddressClass`): cloud metadata addresses, unspecified, loopback,
link-local, private (RFC 1918), unique local (ULA, ``fc00::/7``), shared CGNAT space
(``100.64.0.0/10``), multicast, and reserved (documentation, benchmarking, ``240.0.0.0/4``,
broadcast, site-local, Teredo, anything else not globally routable). IPv6 forms that carry an
IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by that IPv4 address.

``SENDPOST_ALLOW_PRIVATE_NETWORKS=true`` (``Settings.allow_private_networks``) allows every
class: for development, the demo and tests, whose servers listen on loopback.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from sendpost_platform.dns_verify import ResolverSettings, make_resolver
from sendpost_platform.errors import PlatformError

if TYPE_CHECKING:
    from sendpost_platform.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_SETTING = "SENDPOST_ALLOW_PRIVATE_NETWORKS"


class AddressClass(enum.StrEnum):
    """Why an address is refused; the value is the ``addressClass`` answered by the API."""

    metadata = "metadata"
    unspecified = "unspecified"
    loopback = "loopback"
    link_local = "link-local"
    private = "private"
    unique_local = "unique-local"
    cgnat = "cgnat"
    multicast = "multicast"
    reserved = "reserved"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    AddressClass.metadata: "a cloud metadata address",
    AddressClass.unspecified: "an unspecified address",
    AddressClass.loopback: "a loopback address",
    AddressClass.link_local: "a link-local address",
    AddressClass.private: "a private address (RFC 1918)",
    AddressClass.unique_local: "a unique local address (ULA, fc00::/7)",
    AddressClass.cgnat: "a shared address (CGNAT, 100.64.0.0/10)",
    AddressClass.multicast: "a multicast address",
    AddressClass.reserved: "a reserved address (not globally routable)",
}

_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, ...
        "169.254.169.253",  # AWS VPC DNS
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.170.23",  # AWS EKS pod identity
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server (a public address, so named explicitly)
        "192.0.0.192",  # Oracle Cloud (legacy)
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::253",
        "fd00:ec2::23",
        "fd20:ce::254",  # GCP over IPv6
    )
)


def _nets(kind: AddressClass, *cidrs: str) -> list[tuple[Any, AddressClass]]:
    return [(ipaddress.ip_network(c), kind) for c in cidrs]


# Checked in order (the first match names the class), after the metadata addresses.
_V4_TABLE = [
    *_nets(AddressClass.unspecified, "0.0.0.0/32"),
    *_nets(AddressClass.loopback, "127.0.0.0/8"),
    *_nets(AddressClass.link_local, "169.254.0.0/16"),
    *_nets(AddressClass.private, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
    *_nets(AddressClass.cgnat, "100.64.0.0/10"),
    *_nets(AddressClass.multicast, "224.0.0.0/4"),
    *_nets(
        AddressClass.reserved,
        "0.0.0.0/8",  # "this network": Linux connects 0.x to the local host
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "240.0.0.0/4",  # includes 255.255.255.255
    ),
]
_V6_TABLE = [
    *_nets(AddressClass.unspecified, "::/128"),
    *_nets(AddressClass.loopback, "::1/128"),
    *_nets(AddressClass.link_local, "fe80::/10"),
    *_nets(AddressClass.unique_local, "fc00::/7"),
    *_nets(AddressClass.multicast, "ff00::/8"),
    *_nets(
        AddressClass.reserved,
        "fec0::/10",  # site-local (deprecated)
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",
        "3fff::/20",  # documentation
        "64:ff9b:1::/48",  # local-use NAT64
        "5f00::/16",  # SRv6 SIDs
        "::/8",  # the rest of the IPv4-compatible and reserved space
    ),
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def classify(address: IPAddress | str) -> AddressClass | None:
    """The class that refuses ``address``, or None for a globally routable address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = embedded_ipv4(ip)
        if inner is not None:
            kind = classify(inner)
            if kind is None and ip in _V4_COMPATIBLE:
                return AddressClass.reserved  # deprecated form: nothing real is reached by it
            return kind
    if ip in _METADATA:
        return AddressClass.metadata
    table = _V4_TABLE if ip.version == 4 else _V6_TABLE
    for network, kind in table:
        if ip in network:
            return kind
    return None if ip.is_global else AddressClass.reserved


class EgressRefused(PlatformError):
    """The host is, or resolves to, an address outbound connections may not reach."""

    def __init__(self, host: str, address: str, address_class: AddressClass) -> None:
        subject = (
            f"{address} is" if _literal(host) is not None else f"{host} resolves to {address},"
        )
        super().__init__(
            f"{subject} {address_class.description}; connections to loopback, private, "
            f"link-local, CGNAT, multicast, reserved and metadata addresses are refused "
            f"({ALLOW_SETTING}=true allows them for development)"
        )
        self.host = host
        self.address = address
        self.address_class = address_class

    def to_json(self) -> dict[str, str]:
        return {"host": self.host, "address": self.address, "addressClass": self.address_class}


class UnresolvableHost(OSError):
    """The host has no address (or the resolver failed); a network failure like any other."""


@dataclass(frozen=True)
class CheckedTarget:
    """Where to connect: the checked ``addresses`` (in order), and the name for TLS."""

    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def tls_name(self) -> str:
        """The name for SNI and certificate verification (brackets of an IPv6 literal removed)."""
        return self.host.strip("[]")


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    """Resolve-and-check for outbound connections; ``allow_private`` is the development switch.

    ``resolver`` is the platform's nameserver setting (None: the system resolver)."""

    allow_private: bool = False
    resolver: ResolverSettings | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        resolver = (
            None
            if settings.dns_nameserver is None
            else ResolverSettings(settings.dns_nameserver, settings.dns_port, settings.dns_timeout)
        )
        return cls(allow_private=settings.allow_private_networks, resolver=resolver)

    def check(self, host: str, addresses: Iterable[str]) -> tuple[str, ...]:
        """Raise :class:`EgressRefused` for the first refused address; else return them all."""
        checked = tuple(dict.fromkeys(addresses))
        if not self.allow_private:
            for address in checked:
                kind = classify(address)
                if kind is not None:
                    raise EgressRefused(host, address, kind)
        return checked

    async def resolve(self, host: str, port: int) -> CheckedTarget:
        """Resolve ``host`` once and check every address (see the module docstring).

        Raises :class:`EgressRefused`, or :class:`UnresolvableHost` (an ``OSError``)."""
        literal = _literal(host)
        if literal is not None:
            addresses: list[str] = [str(literal)]
        elif self.resolver is not None:
            addresses = await _resolve_dns(make_resolver(self.resolver), host)
        else:
            addresses = await _resolve_system(host, port)
        if not addresses:
            raise UnresolvableHost(f"cannot resolve {host}: no address")
        return CheckedTarget(host, port, self.check(host, addresses))


async def _resolve_dns(resolver: dns.asyncresolver.Resolver, host: str) -> list[str]:
    found: list[str] = []
    problems: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            raise UnresolvableHost(f"cannot resolve {host}: no such name") from None
        except dns.exception.Timeout:
            problems.append(f"{rdtype} lookup timed out")
            continue
        except dns.exception.DNSException as exc:
            problems.append(f"{rdtype} lookup failed: {exc}")
            continue
        found.extend(rdata.to_text() for rdata in answer)
    if not found and problems:
        raise UnresolvableHost(f"cannot resolve {host}: {'; '.join(problems)}")
    return found


async def _resolve_system(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnresolvableHost(f"cannot resolve {host}: {exc.strerror}") from None
    return [str(info[4][0]) for info in infos]


async def open_socket(target: CheckedTarget, timeout: float) -> socket.socket:  # noqa: ASYNC109
    """A TCP socket connected to the first of the target's checked addresses that answers.

    Connects to addresses only (never to the name): the DNS answer cannot change underneath."""
    loop = asyncio.get_running_loop()
    error: OSError = UnresolvableHost(f"cannot resolve {target.host}: no address")
    for address in target.addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, (address, target.port))
        except TimeoutError:
            sock.close()
            error = TimeoutError(f"connecting to {address} port {target.port} timed out")
            continue
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error
