"""The account's sending set-up in the dashboard: domains, IP pools and suppressions.

::

    GET  /dashboard/domains                    domains with the DNS records to publish and what
                                               the last check found; POST adds a domain
    POST /dashboard/domains/{id}/verify        checks the records in DNS now (the API's verify)
    GET  /dashboard/pools                      IP pools, their strategy and providers; POST
                                               creates one (the pools API's validation)
    GET  /dashboard/suppressions               suppressed recipients per sub-account; POST adds
    POST /dashboard/suppressions/remove        lifts one suppression

Domains go through the domains API's own functions (``api/domains.py``), so validation, key
generation and the DNS check are the API's. Every POST is refused from another site.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from starlette.concurrency import run_in_threadpool

from sendpost_platform.api import domains as domain_api
from sendpost_platform.api import pools as pool_api
from sendpost_platform.api.deps import AppContext, ContextDep
from sendpost_platform.dashboard.auth import Editor, Viewer, renderer
from sendpost_platform.dashboard.render import PREFIX
from sendpost_platform.domain.addresses import is_address
from sendpost_platform.domain.routing import Strategy
from sendpost_platform.domain.suppression import SuppressionReason
from sendpost_platform.errors import ApiError
from sendpost_platform.store import accounts, dashboard_queries, suppressions

router = APIRouter(include_in_schema=False)

SUPPRESSIONS_SHOWN = 1000


def _domains_page(
    request: Request,
    ctx: AppContext,
    viewer: accounts.Account,
    *,
    status: int = 200,
    problem: str | None = None,
    checked: dict[str, Any] | None = None,
    name: str = "",
) -> Response:
    found = [domain_api.summary(ctx, d) for d in domain_api.list_for(ctx, viewer.id)]
    return renderer(ctx).page(
        request,
        "domains.html",
        account=viewer,
        status=status,
        domains=found,
        problem=problem,
        checked=checked,
        name=name,
    )


@router.get(f"{PREFIX}/domains")
def domains_page(request: Request, ctx: ContextDep, viewer: Viewer) -> Response:
    if isinstance(viewer, Response):
        return viewer
    return _domains_page(request, ctx, viewer)


@router.post(f"{PREFIX}/domains")
def add_domain(
    request: Request, ctx: ContextDep, viewer: Editor, name: Annotated[str, Form()] = ""
) -> Response:
    if isinstance(viewer, Response):
        return viewer
    try:
        domain_api.add_domain(ctx, viewer.id, {"name": name[:300]})
    except ApiError as exc:
        detail = "; ".join(str(e.get("message", "")) for e in exc.errors) or str(exc)
        return _domains_page(
            request, ctx, viewer, status=exc.status, problem=detail, name=name[:300]
        )
    return Response(status_code=303, headers={"Location": f"{PREFIX}/domains"})


@router.post(f"{PREFIX}/domains/{{domain_id}}/verify")
async def verify_domain(
    request: Request, ctx: ContextDep, viewer: Editor, domain_id: int
) -> Response:
    if isinstance(viewer, Response):
        return viewer
    try:
        updated, report = await domain_api.check_domain(ctx, viewer.id, domain_id)
        checked = {**domain_api.summary(ctx, updated), "checks": report}
    except ApiError as exc:
        return renderer(ctx).error(request, exc.status, "Not checked", str(exc), viewer)
    return await run_in_threadpool(lambda: _domains_page(request, ctx, viewer, checked=checked))


def _pools_page(
    request: Request,
    ctx: AppContext,
    viewer: accounts.Account,
    *,
    status: int = 200,
    problem: str | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    found = pool_api.dashboard_pools(ctx, viewer)
    with ctx.store.read() as conn:
        labels = dashboard_queries.provider_labels(conn, viewer.id)
    return renderer(ctx).page(
        request,
        "pools.html",
        account=viewer,
        status=status,
        pools=found,
        labels=labels,
        strategies=[s.value for s in Strategy],
        problem=problem,
        form=form or {"name": "", "strategy": Strategy.round_robin.value, "providers": []},
    )


@router.get(f"{PREFIX}/pools")
def pools_page(request: Request, ctx: ContextDep, viewer: Viewer) -> Response:
    if isinstance(viewer, Response):
        return viewer
    return _pools_page(request, ctx, viewer)


@router.post(f"{PREFIX}/pools")
async def add_pool(request: Request, ctx: ContextDep, viewer: Editor) -> Response:
    """Create a pool from the form, through the pools API's own validation."""
    if isinstance(viewer, Response):
        return viewer
    data = await request.form()
    chosen = [str(v) for v in data.getlist("provider")]
    form = {
        "name": str(data.get("name", ""))[:200],
        "strategy": str(data.get("strategy", "")),
        "providers": chosen,
    }
    body = {
        "name": form["name"],
        "strategy": form["strategy"],
        "providers": [{"id": int(v)} for v in chosen if v.isdigit() and len(v) < 19],
    }
    try:
        await run_in_threadpool(pool_api.dashboard_create, ctx, viewer, body)
    except ApiError as exc:
        detail = "; ".join(
            f"{e.get('field', '')}: {e.get('message', '')}" for e in exc.errors
        ) or str(exc)
        status = exc.status
        return await run_in_threadpool(
            lambda: _pools_page(request, ctx, viewer, status=status, problem=detail, form=form)
        )
    return Response(status_code=303, headers={"Location": f"{PREFIX}/pools"})


def _suppressions_page(
    request: Request,
    ctx: AppContext,
    viewer: accounts.Account,
    *,
    status: int = 200,
    problem: str | None = None,
    recipient: str = "",
) -> Response:
    with ctx.store.read() as conn:
        names = dashboard_queries.subaccount_names(conn, viewer.id)
        rows = [
            {**row, "subaccount_name": name}
            for sub_id, name in names.items()
            for row in suppressions.list_suppressions(conn, subaccount_id=sub_id)
        ]
    rows.sort(key=lambda r: r["created_at"], reverse=True)
    return renderer(ctx).page(
        request,
        "suppressions.html",
        account=viewer,
        status=status,
        rows=rows[:SUPPRESSIONS_SHOWN],
        total=len(rows),
        shown=SUPPRESSIONS_SHOWN,
        subaccounts=names,
        problem=problem,
        recipient=recipient,
    )


@router.get(f"{PREFIX}/suppressions")
def suppressions_page(request: Request, ctx: ContextDep, viewer: Viewer) -> Response:
    if isinstance(viewer, Response):
        return viewer
    return _suppressions_page(request, ctx, viewer)


def _own_subaccount(ctx: AppContext, viewer: accounts.Account, value: str) -> int | None:
    if not value.isdigit():
        return None
    with ctx.store.read() as conn:
        names = dashboard_queries.subaccount_names(conn, viewer.id)
    return int(value) if int(value) in names else None


@router.post(f"{PREFIX}/suppressions")
def add_suppression(
    request: Request,
    ctx: ContextDep,
    viewer: Editor,
    recipient: Annotated[str, Form()] = "",
    subaccount: Annotated[str, Form()] = "",
) -> Response:
    if isinstance(viewer, Response):
        return viewer
    recipient = recipient.strip()[:320]
    sub_id = _own_subaccount(ctx, viewer, subaccount)
    problem = None
    if not is_address(recipient):
        problem = f"recipient: not an email address ({recipient!r})"
    elif sub_id is None:
        problem = "sub-account: pick one of this account's sub-accounts"
    if problem is not None:
        return _suppressions_page(
            request, ctx, viewer, status=400, problem=problem, recipient=recipient
        )
    assert sub_id is not None
    with ctx.store.write() as conn:
        suppressions.add_suppression(
            conn,
            account_id=viewer.id,
            subaccount_id=sub_id,
            recipient=recipient,
            reason=SuppressionReason.manual.value,
            now=ctx.clock.now(),
        )
    return Response(status_code=303, headers={"Location": f"{PREFIX}/suppressions"})


@router.post(f"{PREFIX}/suppressions/remove")
def remove_suppression(
    request: Request,
    ctx: ContextDep,
    viewer: Editor,
    recipient: Annotated[str, Form()] = "",
    subaccount: Annotated[str, Form()] = "",
) -> Response:
    if isinstance(viewer, Response):
        return viewer
    sub_id = _own_subaccount(ctx, viewer, subaccount)
    if sub_id is None:
        return _suppressions_page(
            request, ctx, viewer, status=400, problem="sub-account: not one of this account's"
        )
    with ctx.store.write() as conn:
        suppressions.remove_suppression(conn, subaccount_id=sub_id, recipient=recipient[:320])
    return Response(status_code=303, headers={"Location": f"{PREFIX}/suppressions"})
