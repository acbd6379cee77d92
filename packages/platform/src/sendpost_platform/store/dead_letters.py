"""Ingestion dead letters: what processing could not store, kept whole for an operator.

A row is one event of a stored batch (``event_index`` set) that the validator refuses or that
the database would not take, or a whole batch that cannot be read at all (``event_index``
NULL, ``raw`` the body). ``reason`` says why; ``raw`` holds the event exactly as received, as
ASCII JSON (NUL and lone surrogates escaped), so it fits any database. The rest of the batch is
stored normally: one bad event never takes the others with it.

Rows are written in the processing transaction; nothing reads them but operators
(``sendpost-platform dead-letters``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.store.schema import ingest_dead_letters as table

MAX_REASON = 2000


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    batch_id: int
    provider_id: int
    event_index: int | None
    received_at: dt.datetime
    reason: str
    raw: bytes


def safe_text(text: str, limit: int = MAX_REASON) -> str:
    """``text`` made storable anywhere: lone surrogates and NUL written as escapes, capped."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def raw_event(value: object) -> bytes:
    """An event's raw JSON value as ASCII JSON bytes (a placeholder for one too deep to encode
    again: the validator refuses those at ingestion, but a batch stored earlier may hold one)."""
    try:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    except (RecursionError, ValueError):
        return UNENCODABLE


UNENCODABLE = b'"(the event could not be encoded again: nested too deeply)"'


def add(conn: Connection, letters: list[DeadLetter], *, now: dt.datetime) -> None:
    if letters:
        conn.execute(
            sa.insert(table),
            [
                {
                    "batch_id": d.batch_id,
                    "provider_id": d.provider_id,
                    "event_index": d.event_index,
                    "received_at": d.received_at,
                    "dead_lettered_at": now,
                    "reason": safe_text(d.reason),
                    "raw": d.raw,
                }
                for d in letters
            ],
        )


def recent(conn: Connection, *, limit: int = 100) -> list[dict[str, object]]:
    """The newest dead letters first, for an operator (``raw`` decoded as text)."""
    rows = conn.execute(sa.select(table).order_by(table.c.id.desc()).limit(limit))
    out = []
    for row in rows:
        item = dict(row._mapping)
        item["raw"] = bytes(item["raw"]).decode("utf-8", "replace")
        out.append(item)
    return out
