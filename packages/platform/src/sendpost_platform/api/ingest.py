"""``POST /api/v1/tpsp/custom-smtp/events``: the agent's event ingestion (SPEC "Wire contract").

The hot path does only what the answer depends on: authenticate the key, count the request
against the key's rate limit, read the body without ever holding more than 1 MiB, validate it
with :func:`sendpost_wire.check_batch` (the verdict of ``parse_batch`` without building
events), and store the raw body durably (group commit, see
``groupcommit.py``). Events are interpreted later by the worker (``processing.py``).

Answers: 200 ``{"accepted": n, "batchId": id}``; 400 ``{"error", "code", "errors": [{"index",
"field", "message"}]}``; 401; 413 (over 1 MiB or 1,000 events); 429 with ``Retry-After``;
503 when the database is unavailable (retry).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sendpost_wire import (
    AGENT_EVENT_TYPES,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    BatchError,
    check_batch,
)

from sendpost_platform.api.auth import IngestKeyHeader, ingest_key_cache, require_ingest_key
from sendpost_platform.api.deps import AppContext
from sendpost_platform.api.groupcommit import GroupCommitter
from sendpost_platform.api.ratelimit import RateLimiter
from sendpost_platform.errors import BadRequest, PayloadTooLarge, RateLimited
from sendpost_platform.store.ingest import IncomingBatch

PATH = "/api/v1/tpsp/custom-smtp/events"

router = APIRouter(tags=["event ingestion"])

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["message_id", "event_type"],
    "properties": {
        "message_id": {"type": "string", "format": "uuid"},
        "event_type": {"type": "string", "enum": sorted(AGENT_EVENT_TYPES)},
        "timestamp": {"type": "string", "format": "date-time"},
        "smtp_code": {"type": "integer", "minimum": 200, "maximum": 599},
        "smtp_description": {"type": "string"},
        "recipient": {"type": "string", "format": "email"},
        "event_id": {"type": "string"},
        "enhanced_status": {"type": "string", "pattern": r"^[245]\.\d{1,3}\.\d{1,3}$"},
        "smtp_command": {"type": "string"},
        "queue_id": {"type": "string"},
        "final_recipient": {"type": "string", "format": "email"},
    },
}
_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["events"],
    "properties": {
        "events": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_BATCH_EVENTS,
            "items": _EVENT_SCHEMA,
        }
    },
}


def setup(ctx: AppContext) -> None:
    """Attach the ingestion components to the app context (called by ``create_app``)."""
    ctx.extras["ingest.committer"] = GroupCommitter(ctx.store, ctx.clock)
    ctx.extras["ingest.limiter"] = RateLimiter(
        ctx.settings.ingest_rate_limit, ctx.settings.rate_limit_url, namespace="ingest"
    )
    ingest_key_cache(ctx)


async def read_bounded(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit")
    return bytes(body)


def _too_many_events(body: bytes) -> int | None:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    events = doc.get("events") if isinstance(doc, dict) else None
    if isinstance(events, list) and len(events) > MAX_BATCH_EVENTS:
        return len(events)
    return None


def _too_large(count: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"{count} events in one batch; at most {MAX_BATCH_EVENTS} allowed")


@router.post(
    PATH,
    summary="Ingest delivery events from the agent",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
    responses={
        200: {"description": "Stored durably; processed asynchronously"},
        400: {"description": "Malformed JSON or invalid events (each named by index and field)"},
        401: {"description": "Missing, invalid, expired or revoked key"},
        413: {"description": "Over 1 MiB or 1,000 events"},
        429: {"description": "Over the per-key rate limit; see Retry-After"},
    },
)
async def ingest_events(request: Request, api_key: IngestKeyHeader) -> JSONResponse:
    ctx: AppContext = request.app.state.ctx
    key = await require_ingest_key(ctx, api_key, request)
    limiter: RateLimiter = ctx.extras["ingest.limiter"]
    retry_after = await limiter.hit(key.key_hash)
    if retry_after is not None:
        raise RateLimited("too many requests for this key", retry_after=retry_after)
    body = await read_bounded(request, MAX_BATCH_BYTES)
    try:
        count = check_batch(body)
    except BatchError as exc:
        too_many = _too_many_events(body)
        if too_many is not None:
            raise _too_large(too_many) from None
        raise BadRequest(
            "invalid event batch; nothing was accepted", errors=[e.to_json() for e in exc.errors]
        ) from None
    if count > MAX_BATCH_EVENTS:
        raise _too_large(count)
    committer: GroupCommitter = ctx.extras["ingest.committer"]
    batch_id = await committer.submit(IncomingBatch(key.provider_id, body, count))
    return JSONResponse({"accepted": count, "batchId": batch_id})
