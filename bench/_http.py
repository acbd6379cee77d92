"""What the benchmarks' raw HTTP/1.1 clients share: reading one response off a kept-alive
connection. The clients write pre-built requests on plain asyncio streams so that the client
costs little next to the server it measures."""

from __future__ import annotations

import asyncio


async def response_status(reader: asyncio.StreamReader) -> bytes:
    """Read one response (status line, headers, a ``Content-Length`` body) and return its
    status code, e.g. ``b"200"``."""
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status_line.split()[1]
