"""What every route may depend on: the application context (settings, store, clock, ...).

Use in a route::

    from sendpost_platform.api.deps import ContextDep

    @router.get("/api/v1/things")
    def list_things(ctx: ContextDep, account: AccountDep) -> ...:
        with ctx.store.read() as conn: ...
        now = ctx.clock.now()

Sync (``def``) routes run in FastAPI's thread pool, which suits the synchronous store.

Database IDs in paths and queries: use ``IdPath`` / ``IdQuery`` (1 ≤ id ≤ 2**62), so a huge
number is a 400 naming the parameter rather than a driver overflow. Paged lists (SendPost's
``limit``/``offset``): ``PageLimit`` (1–1000, none means all) and ``PageOffset`` (0–2**31).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request

from sendpost_platform.clock import Clock
from sendpost_platform.config import Settings
from sendpost_platform.store import Store


@dataclasses.dataclass
class AppContext:
    settings: Settings
    store: Store
    clock: Clock
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Components other modules attach at startup (e.g. ``extras["ingest"]``)."""


def get_context(request: Request) -> AppContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, AppContext)
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


MAX_ID = 2**62
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int, Query(ge=1, le=MAX_ID)]
PageLimit = Annotated[int | None, Query(ge=1, le=1000)]
PageOffset = Annotated[int, Query(ge=0, le=2**31)]
