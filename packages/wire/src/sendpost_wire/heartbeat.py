"""The agent's heartbeat: how an agent says it is alive and well when it has nothing to ship.

An extension of the wire contract (``docs/wire.md``): ``POST`` :data:`HEARTBEAT_PATH` on the
platform, with the provider's ingestion key in ``X-SP-Event-ApiKey`` (the same key as the
events), a JSON object of at most :data:`MAX_HEARTBEAT_BYTES`::

    {"agentVersion": "0.1.0", "source": "file:/var/log/mail.log", "healthy": true,
     "problems": [], "logBytesBehind": 0, "walEvents": 0, "walBytes": 0,
     "lastError": null, "lastShipAt": "2026-02-19T12:00:00Z", "sentAt": "2026-02-19T12:00:30Z"}

The agent sends one every ``heartbeat_interval`` seconds (default 60) whether or not it has
events; the platform answers 204. ``problems`` are the reasons its own ``/health`` gives when it
is unhealthy (log unreadable, WAL nearly full, events waiting); ``lastError`` is the last
shipping error. Unknown fields are ignored, so either side can add some.

Validation never raises: :func:`validate_heartbeat` returns the heartbeat or the problems, each
naming its field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from sendpost_wire.schema import parse_timestamp

HEARTBEAT_PATH = "/api/v1/tpsp/custom-smtp/agent/heartbeat"
MAX_HEARTBEAT_BYTES = 16 * 1024
MAX_PROBLEMS = 10
_TEXT_LIMITS = {"agentVersion": 64, "source": 512, "lastError": 512}
_PROBLEM_LIMIT = 300


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat:
    agent_version: str
    source: str
    healthy: bool
    problems: tuple[str, ...] = ()
    log_bytes_behind: int | None = None
    wal_events: int = 0
    wal_bytes: int = 0
    last_error: str | None = None
    last_ship_at: dt.datetime | None = None
    sent_at: dt.datetime | None = None

    def to_wire(self) -> dict[str, Any]:
        def stamp(value: dt.datetime | None) -> str | None:
            if value is None:
                return None
            return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        return {
            "agentVersion": self.agent_version,
            "source": self.source,
            "healthy": self.healthy,
            "problems": list(self.problems),
            "logBytesBehind": self.log_bytes_behind,
            "walEvents": self.wal_events,
            "walBytes": self.wal_bytes,
            "lastError": self.last_error,
            "lastShipAt": stamp(self.last_ship_at),
            "sentAt": stamp(self.sent_at),
        }


def _count(raw: dict[str, Any], name: str, problems: list[str], *, nullable: bool) -> int | None:
    value = raw.get(name)
    if value is None and nullable:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**62:
        problems.append(f"{name}: a whole number from 0 is required")
        return None
    return value


def _text(raw: dict[str, Any], name: str, problems: list[str], *, required: bool) -> str | None:
    value = raw.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        problems.append(f"{name}: {'a non-empty ' if required else 'a '}string is required")
        return None
    if len(value) > _TEXT_LIMITS[name] or "\x00" in value:
        problems.append(f"{name}: at most {_TEXT_LIMITS[name]} characters, no NUL")
        return None
    return value


def _time(raw: dict[str, Any], name: str, problems: list[str]) -> dt.datetime | None:
    value = raw.get(name)
    if value is None:
        return None
    parsed = parse_timestamp(value) if isinstance(value, str) else None
    if parsed is None:
        problems.append(f"{name}: an RFC 3339 timestamp or null is required")
    return parsed


def validate_heartbeat(body: bytes) -> Heartbeat | list[str]:
    """The heartbeat in ``body``, or the problems found (each naming its field)."""
    if len(body) > MAX_HEARTBEAT_BYTES:
        return [f"body: over {MAX_HEARTBEAT_BYTES} bytes"]
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return ["body: not JSON"]
    if not isinstance(raw, dict):
        return ["body: a JSON object is required"]
    problems: list[str] = []
    version = _text(raw, "agentVersion", problems, required=True)
    source = _text(raw, "source", problems, required=True)
    healthy = raw.get("healthy")
    if not isinstance(healthy, bool):
        problems.append("healthy: true or false is required")
    listed = raw.get("problems", [])
    if not isinstance(listed, list) or len(listed) > MAX_PROBLEMS:
        problems.append(f"problems: a list of at most {MAX_PROBLEMS} strings is required")
        listed = []
    for i, item in enumerate(listed):
        if not isinstance(item, str) or len(item) > _PROBLEM_LIMIT or "\x00" in item:
            problems.append(f"problems[{i}]: a string of at most {_PROBLEM_LIMIT} characters")
    behind = _count(raw, "logBytesBehind", problems, nullable=True)
    wal_events = _count(raw, "walEvents", problems, nullable=False)
    wal_bytes = _count(raw, "walBytes", problems, nullable=False)
    last_error = _text(raw, "lastError", problems, required=False)
    last_ship = _time(raw, "lastShipAt", problems)
    sent_at = _time(raw, "sentAt", problems)
    if problems:
        return problems
    assert version is not None
    assert source is not None
    assert isinstance(healthy, bool)
    return Heartbeat(
        agent_version=version,
        source=source,
        healthy=healthy,
        problems=tuple(listed),
        log_bytes_behind=behind,
        wal_events=wal_events or 0,
        wal_bytes=wal_bytes or 0,
        last_error=last_error,
        last_ship_at=last_ship,
        sent_at=sent_at,
    )
