"""Which ``relay=`` values are our own content filter or Postfix instance (hop candidates).

An entry of the ``internal-relays`` setting is one of:

* a network or address, ``127.0.0.0/8``, ``10.0.0.5``, ``::1``: matches the address in brackets
  (``127.0.0.1[127.0.0.1]:10024``);
* a name, ``localhost``, ``private/amavis``: matches the relay's name or the bracket content (a
  unix-socket relay, ``amavis[private/amavis]``);
* either with a port, ``127.0.0.1:10024``, ``[::1]:10024``, ``localhost:10024``: matches only
  relays on that port, so a filter on ``127.0.0.1:10024`` and a smarthost on ``127.0.0.1:2525``
  are told apart.

Naming a relay only makes its ``sent ... queued as NEWID`` lines hop *candidates*: a candidate
is a hop only when NEWID shows up in the log (see ``correlate``), so a wrong entry never loses a
delivery.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

# Relays that are our own content filter or Postfix instance: loopback addresses, by address
# (``127.0.0.1[127.0.0.1]:10024``) or by name. Unix-socket relays (``[private/dovecot-lmtp]``)
# are final deliveries by default; name one here to make it a hop candidate.
DEFAULT_INTERNAL_RELAYS: tuple[str, ...] = ("127.0.0.0/8", "::1/128", "localhost")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_RELAY = re.compile(r"(?P<name>[^\[]*)(?:\[(?P<addr>[^\]]*)\])?(?::(?P<port>\d+))?")
_NAME = re.compile(r"[A-Za-z0-9.\-_/]+")
_WITH_PORT = re.compile(r"(?:\[(?P<bracketed>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})")


def parse_entry(text: str) -> tuple[Network | str, int | None]:
    """One setting entry as (network or lower-case name, port or None); ValueError naming the
    problem when it is none of the forms in the module docstring."""
    text = text.strip()
    port: int | None = None
    try:
        return ipaddress.ip_network(text, strict=False), None
    except ValueError:
        pass
    m = _WITH_PORT.fullmatch(text)
    if m is not None:
        port = int(m.group("port"))
        if not 0 < port < 65536:
            raise ValueError(f"{text!r}: port {port} is out of range")
        text = m.group("bracketed") or m.group("host")
        try:
            return ipaddress.ip_network(text, strict=False), port
        except ValueError:
            pass
    if not _NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not an address, network, host or host:port")
    return text.lower(), port


class InternalRelays:
    """Matches ``relay=`` values against the entries (see the module docstring)."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.networks: list[tuple[Network, int | None]] = []
        self.names: list[tuple[str, int | None]] = []
        for entry in entries:
            value, port = parse_entry(entry)
            if isinstance(value, str):
                self.names.append((value, port))
            else:
                self.networks.append((value, port))
        self._cache: dict[str, bool] = {}

    def __contains__(self, relay: str) -> bool:
        known = self._cache.get(relay)
        if known is None:
            known = self._cache[relay] = self._check(relay)
            if len(self._cache) > 10_000:
                self._cache.clear()
        return known

    def _check(self, relay: str) -> bool:
        m = _RELAY.fullmatch(relay)
        if m is None:
            return False
        name, addr = m.group("name").lower(), m.group("addr")
        port = int(m.group("port")) if m.group("port") else None
        if addr is not None:
            addr = addr.lower()
        for wanted, wanted_port in self.names:
            if (name == wanted or addr == wanted) and wanted_port in (None, port):
                return True
        if addr is None:
            return False
        try:
            ip = ipaddress.ip_address(addr.removeprefix("ipv6:"))
        except ValueError:
            return False
        return any(ip in net and p in (None, port) for net, p in self.networks)
