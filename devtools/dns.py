"""A small authoritative DNS server on loopback, speaking real DNS over UDP and TCP.

Tests and the demo publish the records a sender domain needs (DKIM TXT, the ``sp-bounce`` CNAME)
here and point the platform's resolver at it, so verification goes through the real protocol
instead of a patched resolver. Built on dnspython's message API::

    with DnsServer() as dns_server:
        dns_server.add("s1._domainkey.example.com", "TXT", "v=DKIM1; k=rsa; p=...")
        resolver_port = dns_server.port

Behaviour: answers with the AA flag for the names it holds; a name it does not hold gets NXDOMAIN,
a held name without records of the asked type gets an empty NOERROR answer; a CNAME is returned
for any question type at that name (the resolver follows it). Long TXT values are split into
255-byte strings as a real zone file would publish them.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from devtools.service import Service

_TXT_CHUNK = 255


def _quote_txt(value: str) -> str:
    """Render a TXT value as zone-file text: quoted strings of at most 255 bytes each."""
    raw = value.encode()
    chunks = [raw[i : i + _TXT_CHUNK] for i in range(0, len(raw), _TXT_CHUNK)] or [b""]
    parts = []
    for chunk in chunks:
        text = chunk.decode().replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'"{text}"')
    return " ".join(parts)


class DnsZone:
    """Records held by the server, keyed by owner name; safe to change while serving."""

    def __init__(self, ttl: int = 60) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._records: dict[dns.name.Name, dict[dns.rdatatype.RdataType, list[str]]] = {}

    def add(self, name: str, rdtype: str, value: str) -> None:
        """Add one record; ``value`` is the record's data (for TXT the plain, unquoted text)."""
        owner = dns.name.from_text(name)
        kind = dns.rdatatype.from_text(rdtype)
        if kind == dns.rdatatype.TXT:
            text = _quote_txt(value)
        elif kind in (dns.rdatatype.CNAME, dns.rdatatype.NS, dns.rdatatype.PTR):
            text = value if value.endswith(".") else value + "."
        else:
            text = value
        with self._lock:
            self._records.setdefault(owner, {}).setdefault(kind, []).append(text)

    def remove(self, name: str, rdtype: str | None = None) -> None:
        """Remove every record of a name, or only those of one type."""
        owner = dns.name.from_text(name)
        with self._lock:
            if rdtype is None:
                self._records.pop(owner, None)
            else:
                self._records.get(owner, {}).pop(dns.rdatatype.from_text(rdtype), None)

    def answer(self, wire: bytes) -> bytes:
        """Build the wire-format response to one wire-format query."""
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        with self._lock:
            held = self._records.get(question.name)
            if held is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                return response.to_wire()
            kind = question.rdtype
            if kind not in held and dns.rdatatype.CNAME in held:
                kind = dns.rdatatype.CNAME
            values = list(held.get(kind, []))
        if values:
            rrset = dns.rrset.from_text_list(
                question.name, self._ttl, dns.rdataclass.IN, kind, values
            )
            response.answer.append(rrset)
        return response.to_wire()


class _UdpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        zone: DnsZone = self.server.zone  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            sock.sendto(zone.answer(data), self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        zone: DnsZone = self.server.zone  # type: ignore[attr-defined]
        conn: socket.socket = self.request
        conn.settimeout(5)
        with contextlib.suppress(Exception):
            while True:
                header = conn.recv(2, socket.MSG_WAITALL)
                if len(header) < 2:
                    return
                (length,) = struct.unpack("!H", header)
                query = conn.recv(length, socket.MSG_WAITALL)
                reply = zone.answer(query)
                conn.sendall(struct.pack("!H", len(reply)) + reply)


class _Udp(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = False
    zone: DnsZone


class _Tcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = False
    zone: DnsZone


class DnsServer(Service):
    """Serve a :class:`DnsZone` on ``host`` at one dynamically chosen port, UDP and TCP."""

    def __init__(self, zone: DnsZone | None = None, host: str = "127.0.0.1") -> None:
        self.zone = zone or DnsZone()
        self.host = host
        self.port = 0
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    def add(self, name: str, rdtype: str, value: str) -> None:
        self.zone.add(name, rdtype, value)

    def remove(self, name: str, rdtype: str | None = None) -> None:
        self.zone.remove(name, rdtype)

    def start(self) -> DnsServer:
        for _ in range(20):
            udp = _Udp((self.host, 0), _UdpHandler)
            port = udp.server_address[1]
            try:
                tcp = _Tcp((self.host, port), _TcpHandler)
            except OSError:
                udp.server_close()
                continue
            break
        else:  # pragma: no cover - twenty collisions in a row
            raise OSError("no port free for both UDP and TCP")
        udp.zone = tcp.zone = self.zone
        servers: tuple[socketserver.BaseServer, ...] = (udp, tcp)
        for server in servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="dns"
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.port = port
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()
