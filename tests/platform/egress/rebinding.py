"""Helpers for the rebinding tests: a DNS zone whose answer changes after the first query, and
two SMTP servers on the same port at two loopback addresses (where each answer points)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import dns.message
import dns.name
import dns.rdatatype

from devtools.dns import DnsZone
from devtools.smtp_servers import TestServer


class FlippingZone(DnsZone):
    """Answers the A query for ``name`` with ``first`` once, then with ``then`` (TTL 0): what an
    attacker's DNS server does to pass a check and move the connection afterwards."""

    def __init__(self, name: str, first: str, then: str) -> None:
        super().__init__(ttl=0)
        self._name = dns.name.from_text(name)
        self._then = then
        self._count_lock = threading.Lock()
        self.a_queries = 0
        self.add(name, "A", first)

    def answer(self, wire: bytes) -> bytes:
        reply = super().answer(wire)
        question = dns.message.from_wire(wire).question
        if question and (question[0].name, question[0].rdtype) == (self._name, dns.rdatatype.A):
            with self._count_lock:
                self.a_queries += 1
                if self.a_queries == 1:
                    self.remove(self._name.to_text(), "A")
                    self.add(self._name.to_text(), "A", self._then)
        return reply


@contextlib.contextmanager
def servers_on_one_port(first: str, then: str) -> Iterator[tuple[TestServer, TestServer]]:
    """Two SMTP servers at ``first`` and ``then`` (loopback addresses), sharing one port."""
    for _ in range(20):
        with TestServer(host=first) as one:
            try:
                two = TestServer(host=then, port=one.port).__enter__()
            except OSError:
                continue  # that port is taken at the second address: try another
            try:
                yield one, two
            finally:
                two.__exit__(None, None, None)
            return
    raise OSError("no port free at both addresses")  # pragma: no cover
