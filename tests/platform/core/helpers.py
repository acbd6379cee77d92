"""Small helpers for the platform core tests."""

from __future__ import annotations

from typing import Any

import httpx
from sendpost_platform.api.ingest import PATH as INGEST_PATH

__all__ = ["INGEST_PATH", "agent_event", "post_events"]


def agent_event(message_id: str, event_type: str = "delivered", **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"message_id": message_id, "event_type": event_type}
    if event_type == "delivered":
        event.setdefault("smtp_code", 250)
        event.setdefault("smtp_description", "250 2.0.0 OK queued")
    event.update(extra)
    return event


async def post_events(
    client: httpx.AsyncClient, key: str, events: list[dict[str, Any]]
) -> httpx.Response:
    return await client.post(
        INGEST_PATH, headers={"X-SP-Event-ApiKey": key}, json={"events": events}
    )
