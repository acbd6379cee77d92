"""``POST /api/v1/tpsp/custom-smtp/agent/heartbeat``: an agent says it is alive, and how it is.

The body is ``sendpost_wire.heartbeat`` (an extension of the wire contract); the key is the
provider's ingestion key, as for events, and the request counts against the same per-key rate
limit. The heartbeat is kept on the provider (``agent_report``) and marks the agent as seen;
``domain/agent_health.py`` turns it into the ✓ / ⚠️ the dashboard and the providers API show.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from sendpost_wire.heartbeat import HEARTBEAT_PATH, MAX_HEARTBEAT_BYTES, validate_heartbeat

from sendpost_platform.api.auth import IngestKeyHeader, require_ingest_key
from sendpost_platform.api.deps import AppContext
from sendpost_platform.api.ingest import read_bounded
from sendpost_platform.api.ratelimit import RateLimiter
from sendpost_platform.errors import BadRequest, RateLimited
from sendpost_platform.store import providers as provider_store

router = APIRouter(tags=["ingestion"])


@router.post(
    HEARTBEAT_PATH,
    summary="Agent heartbeat: alive, version, source, lag, WAL depth, last error",
    status_code=204,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    responses={204: {"description": "Recorded"}},
)
async def heartbeat(request: Request, api_key: IngestKeyHeader) -> Response:
    ctx: AppContext = request.app.state.ctx
    key = await require_ingest_key(ctx, api_key, request)
    limiter: RateLimiter = ctx.extras["ingest.limiter"]
    retry_after = await limiter.hit(key.key_hash)
    if retry_after is not None:
        raise RateLimited("too many requests for this key", retry_after=retry_after)
    body = await read_bounded(request, MAX_HEARTBEAT_BYTES)
    beat = validate_heartbeat(body)
    if isinstance(beat, list):
        raise BadRequest(
            "invalid heartbeat",
            errors=[{"field": p.split(":", 1)[0], "message": p} for p in beat],
        )
    now = ctx.clock.now()

    def record() -> None:
        with ctx.store.write() as conn:
            provider_store.record_heartbeat(conn, key.provider_id, beat.to_wire(), now)

    await asyncio.to_thread(record)
    return Response(status_code=204)
