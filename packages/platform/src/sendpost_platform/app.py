"""The composition root: builds the FastAPI app from settings (the only place that wires things).

To add an API module, put ``router = APIRouter()`` in it and add its dotted name to
:data:`ROUTER_MODULES`; if it needs components built once per app, give it a
``setup(ctx: AppContext) -> None`` that stores them in ``ctx.extras``; request body models its
routes read themselves go in its ``SCHEMAS`` (published in ``/openapi.json``). Background jobs
are listed in ``worker.build_jobs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from sendpost_platform import __version__
from sendpost_platform.api import bodies, errors, openapi
from sendpost_platform.api.deps import AppContext
from sendpost_platform.clock import Clock, SystemClock
from sendpost_platform.config import Settings
from sendpost_platform.dashboard.auth import renderer as dashboard_renderer
from sendpost_platform.dashboard.render import PREFIX
from sendpost_platform.store import Store
from sendpost_platform.worker import Worker, build_jobs

ROUTER_MODULES: tuple[str, ...] = (
    "sendpost_platform.api.ingest",
    "sendpost_platform.api.heartbeat",
    "sendpost_platform.api.events",
    "sendpost_platform.api.providers",
    "sendpost_platform.dashboard.routes",
    "sendpost_platform.api.domains",
    "sendpost_platform.api.pools",
    "sendpost_platform.api.suppressions",
    "sendpost_platform.api.subaccounts",
    "sendpost_platform.api.messages",
    "sendpost_platform.api.stats",
    "sendpost_platform.api.ips",
    "sendpost_platform.api.send",
    "sendpost_platform.api.templates",
    "sendpost_platform.api.tracking",
    "sendpost_platform.api.webhooks",
)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    run_worker: bool = False,
) -> FastAPI:
    """The platform's HTTP app. With ``run_worker`` the background worker runs in the app's
    lifespan (``serve``). A store passed in stays the caller's to dispose of."""
    clock = clock or SystemClock()
    owns_store = store is None
    store = store or Store.open(settings.database_url)
    ctx = AppContext(settings=settings, store=store, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if run_worker:
            worker = Worker(
                build_jobs(settings, store, clock), idle_interval=settings.worker_idle_interval
            )
            task = asyncio.create_task(worker.run(stop))
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            if owns_store:
                store.dispose()

    app = FastAPI(
        title="SendPost Custom SMTP platform",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/openapi.json",
    )
    app.state.ctx = ctx
    errors.install(app)
    app.add_middleware(bodies.BodyLimits)  # size limits and JSON every route can take
    schemas: list[type[BaseModel]] = []
    for name in ROUTER_MODULES:
        module = importlib.import_module(name)
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(ctx)
        app.include_router(module.router)
        schemas += getattr(module, "SCHEMAS", ())

    openapi.install(app, schemas)
    errors.install_fallback(app, PREFIX, _error_page(ctx))

    @app.get("/health", tags=["operations"], summary="Liveness")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _error_page(ctx: AppContext) -> errors.PageRenderer:
    def page(request: Request, status: int, title: str, message: str) -> Response:
        return dashboard_renderer(ctx).error(request, status, title, message, None)

    return page


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` with several worker processes (API role, no worker)."""
    from sendpost_platform.config import load_settings

    return create_app(load_settings())
