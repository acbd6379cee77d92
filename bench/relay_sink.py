"""A lean SMTP sink for the relay benchmark: a real SMTP server that counts what it accepts.

The test suites use aiosmtpd (``devtools.smtp_servers``), which is complete but spends about 2 ms
of CPU per message in pure Python; in a throughput benchmark on a 2-core machine that sink would
take most of a core away from the worker being measured. This server speaks just enough SMTP to
be a faithful far side for a relay client, and does it with one ``asyncio.Protocol`` per
connection:

- greeting ``220``; ``EHLO`` (advertising ``PIPELINING``, ``8BITMIME``, ``SIZE``) and ``HELO``;
  ``MAIL FROM``, ``RCPT TO``, ``DATA``, ``RSET``, ``NOOP``, ``QUIT``; anything else ``502``;
- command order enforced as an MTA does (``503`` for RCPT before MAIL, DATA before RCPT);
- DATA read to the ``CRLF.CRLF`` terminator and dot-unstuffed (RFC 5321 4.5.2), then ``250``;
- every complete command line in a read is answered, replies written together (pipelining).

It keeps the first accepted message (envelope and unstuffed bytes) so the benchmark can check
that what arrived carries a valid DKIM signature.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

MAX_LINE = 4096
SIZE_LIMIT = 52_428_800


@dataclass
class SinkStats:
    messages: int = 0
    octets: int = 0
    first: tuple[str, list[str], bytes] | None = None
    connections: int = 0


def unstuff(data: bytes) -> bytes:
    """Undo SMTP dot-stuffing: a line starting with ``..`` starts with ``.`` in the message."""
    if data.startswith(b".."):
        data = data[1:]
    return data.replace(b"\r\n..", b"\r\n.")


class SinkProtocol(asyncio.Protocol):
    def __init__(self, stats: SinkStats, hostname: str = "sink.localhost") -> None:
        self.stats = stats
        self.hostname = hostname
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.in_data = False
        self.scanned = 0
        self.sender: str | None = None
        self.recipients: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.stats.connections += 1
        transport.write(f"220 {self.hostname} ESMTP bench sink\r\n".encode())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies: list[bytes] = []
        closing = False
        while self.buffer and not closing:
            if self.in_data:
                reply = self._data_end()
                if reply is None:
                    break
                replies.append(reply)
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE:
                    replies.append(b"500 5.5.2 line too long\r\n")
                    closing = True
                break
            line = bytes(self.buffer[:end]).decode("utf-8", "replace")
            del self.buffer[: end + 2]
            reply, closing = self._command(line)
            replies.append(reply)
        assert self.transport is not None
        if replies:
            self.transport.write(b"".join(replies))
        if closing:
            self.transport.close()

    def _data_end(self) -> bytes | None:
        if self.buffer.startswith(b".\r\n"):
            end, body = 0, b""
        else:
            end = self.buffer.find(b"\r\n.\r\n", max(0, self.scanned - 4))
            if end < 0:
                self.scanned = len(self.buffer)
                return None
            body = bytes(self.buffer[: end + 2])
            end += 2
        del self.buffer[: end + 3]
        self.scanned = 0
        self.in_data = False
        message = unstuff(body)
        self.stats.messages += 1
        self.stats.octets += len(message)
        if self.stats.first is None:
            self.stats.first = (self.sender or "", list(self.recipients), message)
        self.sender, self.recipients = None, []
        return f"250 2.0.0 Ok: queued as {self.stats.messages}\r\n".encode()

    def _command(self, line: str) -> tuple[bytes, bool]:
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        if verb == "EHLO":
            self.sender, self.recipients = None, []
            return (
                f"250-{self.hostname}\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                f"250 SIZE {SIZE_LIMIT}\r\n".encode(),
                False,
            )
        if verb == "HELO":
            self.sender, self.recipients = None, []
            return f"250 {self.hostname}\r\n".encode(), False
        if verb == "MAIL":
            if self.sender is not None:
                return b"503 5.5.1 nested MAIL command\r\n", False
            if not argument.upper().startswith("FROM:"):
                return b"501 5.5.4 syntax: MAIL FROM:<address>\r\n", False
            self.sender = _address(argument[5:])
            return b"250 2.1.0 Ok\r\n", False
        if verb == "RCPT":
            if self.sender is None:
                return b"503 5.5.1 need MAIL before RCPT\r\n", False
            if not argument.upper().startswith("TO:"):
                return b"501 5.5.4 syntax: RCPT TO:<address>\r\n", False
            self.recipients.append(_address(argument[3:]))
            return b"250 2.1.5 Ok\r\n", False
        if verb == "DATA":
            if not self.recipients:
                return b"503 5.5.1 need RCPT before DATA\r\n", False
            self.in_data = True
            return b"354 End data with <CR><LF>.<CR><LF>\r\n", False
        if verb == "RSET":
            self.sender, self.recipients = None, []
            return b"250 2.0.0 Ok\r\n", False
        if verb == "NOOP":
            return b"250 2.0.0 Ok\r\n", False
        if verb == "QUIT":
            return b"221 2.0.0 Bye\r\n", True
        return b"502 5.5.2 command not recognised\r\n", False


def _address(text: str) -> str:
    """The address of a ``<...>`` path, ignoring any ESMTP parameters after it."""
    text = text.strip()
    if text.startswith("<"):
        return text[1 : text.find(">")] if ">" in text else text[1:]
    return text.split(" ", 1)[0]


async def start_sink(stats: SinkStats, host: str = "127.0.0.1") -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SinkProtocol(stats), host, 0)
