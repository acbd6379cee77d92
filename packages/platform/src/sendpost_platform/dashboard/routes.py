"""The dashboard's pages (server-rendered HTML, no script), for one account at a time.

::

    GET  /dashboard/                   overview: providers' agent status, last 24 h, latest events
    GET  /dashboard/providers          Custom SMTP providers with agent status ✓ / ⚠️
    GET  /dashboard/events             events, newest first, the events API's filters (recipient,
                                       sender, subject as substrings), a count, paging both ways,
                                       optional auto-refresh
    GET  /dashboard/events.csv         the same filters, every matching event as CSV
    GET  /dashboard/messages/{uuid}    one message's timeline, oldest first, codes and raw text
    GET  /dashboard/stats?range=24h    counts per event type over time (24h | 7d | 30d)
    GET  /dashboard/preferences        the viewer's time zone (POST saves it in a cookie)
    GET  /dashboard/login              the sign-in form; POST signs in, POST /logout signs out
    GET  /dashboard/static/dashboard.css, /dashboard/static/icon.svg
    GET  /                             303 to /dashboard/; any other /dashboard/… is a 404 page

The events page lists through :func:`sendpost_platform.store.events.list_events`, the same query
and cursor as ``GET /api/v1/events``. Authentication: ``auth.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from sendpost_wire.schema import format_timestamp

from sendpost_platform.api.deps import AppContext, ContextDep
from sendpost_platform.api.events import encode_cursor
from sendpost_platform.api.providers import agent_health
from sendpost_platform.dashboard import auth, charts, manage, session, setup_pages, views
from sendpost_platform.dashboard.auth import Editor, Viewer, renderer
from sendpost_platform.dashboard.render import (
    ICON_PATH,
    PREFIX,
    SECURITY_HEADERS,
    STYLESHEET_PATH,
    build_renderer,
)
from sendpost_platform.store import accounts, dashboard_queries, messages
from sendpost_platform.store import events as event_store
from sendpost_platform.store import providers as provider_store

router = APIRouter(include_in_schema=False)
router.include_router(auth.router)
router.include_router(manage.router)
router.include_router(setup_pages.router)

TIMELINE_LIMIT = 1000
OVERVIEW_EVENTS = 10


def setup(ctx: AppContext) -> None:
    try:
        secret: bytes | None = session.session_secret(ctx.settings.secret_key)
    except ValueError:
        secret = None
    ctx.extras[auth.EXTRA] = build_renderer(secret)


@router.get(STYLESHEET_PATH)
def stylesheet(ctx: ContextDep) -> Response:
    return Response(
        renderer(ctx).stylesheet,
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get(ICON_PATH)
def icon(ctx: ContextDep) -> Response:
    return Response(
        renderer(ctx).icon,
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


def _provider_rows(ctx: AppContext, account: accounts.Account) -> list[dict[str, object]]:
    now = ctx.clock.now()
    with ctx.store.read() as conn:
        found = provider_store.list_providers(conn, account_id=account.id)
    rows = []
    for p in found:
        health = agent_health(p, now)
        rows.append({"provider": p, "status": health.status, "badge": views.agent_badge(health)})
    return rows


@router.get(f"{PREFIX}/")
def overview(request: Request, ctx: ContextDep, viewer: Viewer) -> Response:
    if isinstance(viewer, Response):
        return viewer
    providers = _provider_rows(ctx, viewer)
    buckets = views.stats_range("24h", ctx.clock.now())
    with ctx.store.read() as conn:
        counts = dashboard_queries.counts_by_bucket(conn, viewer.id, buckets)
        latest, _ = event_store.list_events(
            conn, event_store.EventFilter(account_id=viewer.id), limit=OVERVIEW_EVENTS
        )
        labels = dashboard_queries.provider_labels(conn, viewer.id)
        subaccounts = dashboard_queries.subaccount_names(conn, viewer.id)
    return renderer(ctx).page(
        request,
        "overview.html",
        account=viewer,
        providers=providers,
        stats=views.stats_view(buckets, counts, "%H:00"),
        events=latest,
        labels=labels,
        subaccounts=subaccounts,
    )


@router.get(f"{PREFIX}/providers")
def providers_page(request: Request, ctx: ContextDep, viewer: Viewer) -> Response:
    if isinstance(viewer, Response):
        return viewer
    return renderer(ctx).page(
        request,
        "providers.html",
        account=viewer,
        providers=_provider_rows(ctx, viewer),
        grace_choices=manage.GRACE_CHOICES,
    )


COUNT_CAP = 10_000
CSV_CAP = 100_000
REFRESH_SECONDS = 30
CSV_COLUMNS = (
    "occurred_at",
    "event_type",
    "event_name",
    "message_uuid",
    "recipient",
    "provider_id",
    "subaccount_id",
    "smtp_code",
    "enhanced_status",
    "smtp_command",
    "reason",
    "description",
    "source",
    "received_at",
    "id",
)


def _event_query(request: Request, viewer: accounts.Account) -> views.EventQuery:
    params = request.query_params
    tz = views.zone(request.cookies.get(views.TZ_COOKIE))
    return views.parse_event_filters(viewer.id, params, params.getlist("type"), tz)


@router.get(f"{PREFIX}/events")
def events_page(request: Request, ctx: ContextDep, viewer: Viewer) -> Response:
    if isinstance(viewer, Response):
        return viewer
    query = _event_query(request, viewer)
    rows: list[dict[str, object]] = []
    older_link = newer_link = None
    total = 0
    with ctx.store.read() as conn:
        if query.where is not None:
            rows, position = event_store.list_events(
                conn, query.where, limit=query.limit, after=query.after, before=query.before
            )
            total = event_store.count_events(conn, query.where, cap=COUNT_CAP)
            if query.before is not None:
                if position is not None:
                    newer_link = query.link(before=encode_cursor(position))
                older = rows[-1] if rows else None
                if older is not None:
                    older_link = query.link(
                        cursor=encode_cursor(
                            event_store.Position(older["occurred_at"], older["id"])  # type: ignore[arg-type]
                        )
                    )
            else:
                if position is not None:
                    older_link = query.link(cursor=encode_cursor(position))
                if query.after is not None and rows:
                    first = event_store.Position(rows[0]["occurred_at"], rows[0]["id"])  # type: ignore[arg-type]
                    if event_store.newer_exists(conn, query.where, first):
                        newer_link = query.link(before=encode_cursor(first))
        labels = dashboard_queries.provider_labels(conn, viewer.id)
        subaccounts = dashboard_queries.subaccount_names(conn, viewer.id)
    paging = query.after is not None or query.before is not None
    refresh = request.query_params.get("refresh") == "on" and not paging and not query.errors
    return renderer(ctx).page(
        request,
        "events.html",
        account=viewer,
        status=400 if query.errors else 200,
        headers={"Refresh": str(REFRESH_SECONDS)} if refresh else None,
        query=query,
        events=rows,
        total=total,
        total_capped=total >= COUNT_CAP,
        next_link=older_link,
        prev_link=newer_link,
        first_link=query.link(cursor=None, before=None) if paging else None,
        csv_link=query.link(cursor=None, before=None, limit=None),
        refresh=refresh,
        refresh_seconds=REFRESH_SECONDS,
        labels=labels,
        subaccounts=subaccounts,
        all_types=views.SHOWN_TYPES,
        page_sizes=views.PAGE_SIZES,
    )


@router.get(f"{PREFIX}/events.csv")
def events_csv(request: Request, ctx: ContextDep, viewer: Viewer) -> Response:
    """Every event the events page's filters match (not just one page), newest first, as CSV
    (at most CSV_CAP rows; the last line says when there were more)."""
    if isinstance(viewer, Response):
        return viewer
    query = _event_query(request, viewer)
    if query.where is None:
        return renderer(ctx).error(request, 400, "Invalid filters", "; ".join(query.errors), viewer)
    where = query.where

    def lines() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        written = 0
        with ctx.store.read() as conn:
            for event in event_store.iterate_events(conn, where, cap=CSV_CAP + 1):
                if written == CSV_CAP:
                    writer.writerow([f"# more than {CSV_CAP} events; narrow the filters"])
                    break
                writer.writerow(_csv_row(event))
                written += 1
                if out.tell() > 65536:
                    yield out.getvalue()
                    out.seek(0)
                    out.truncate()
        yield out.getvalue()

    stamp = ctx.clock.now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="events-{stamp}.csv"',
        },
    )


def _csv_cell(value: object) -> object:
    """Text that a spreadsheet would run as a formula is prefixed with ``'`` (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_row(event: Mapping[str, Any]) -> list[object]:
    row: list[object] = []
    for column in CSV_COLUMNS:
        if column == "event_name":
            value: object = views.type_name(int(event["event_type"]))
        elif column in ("occurred_at", "received_at"):
            value = format_timestamp(event[column])
        else:
            value = event[column]
        row.append("" if value is None else _csv_cell(value))
    return row


@router.get(f"{PREFIX}/messages/{{message_id}}")
def message_page(request: Request, ctx: ContextDep, viewer: Viewer, message_id: str) -> Response:
    if isinstance(viewer, Response):
        return viewer
    try:
        message_uuid = str(uuid.UUID(message_id))
    except ValueError:
        return renderer(ctx).error(
            request, 404, "No such message", "That is not a message UUID.", viewer
        )
    where = event_store.EventFilter(account_id=viewer.id, message_uuid=message_uuid)
    with ctx.store.read() as conn:
        newest_first, more = event_store.list_events(conn, where, limit=TIMELINE_LIMIT)
        message = messages.get_message(conn, message_uuid)
        if message is not None and message.account_id != viewer.id:
            message = None
        facts = dashboard_queries.message_facts(conn, message_uuid) if message else None
        labels = dashboard_queries.provider_labels(conn, viewer.id)
        subaccounts = dashboard_queries.subaccount_names(conn, viewer.id)
    if message is None and not newest_first:
        return renderer(ctx).error(
            request, 404, "No such message", "This account has no message with that UUID.", viewer
        )
    ordered = views.timeline(newest_first)
    return renderer(ctx).page(
        request,
        "message.html",
        account=viewer,
        message_uuid=message_uuid,
        message=message,
        facts=facts,
        outcome=views.outcome(message.state if message else None, ordered),
        events=ordered,
        truncated=more is not None,
        labels=labels,
        subaccounts=subaccounts,
        details_fields=views.details_fields,
    )


@router.get(f"{PREFIX}/stats")
def stats_page(
    request: Request,
    ctx: ContextDep,
    viewer: Viewer,
    period: Annotated[str, Query(alias="range")] = "24h",
    provider: Annotated[str, Query(alias="providerId")] = "",
) -> Response:
    if isinstance(viewer, Response):
        return viewer
    problems = []
    if period not in views.STATS_RANGES:
        problems.append(f"range: one of {', '.join(views.STATS_RANGES)} ({period!r})")
        period = "24h"
    provider_id = None
    if provider:
        if provider.isdigit() and int(provider) <= 2**62:
            provider_id = int(provider)
        else:
            problems.append(f"providerId: not an ID ({provider!r})")
    buckets = views.stats_range(period, ctx.clock.now())
    with ctx.store.read() as conn:
        counts = dashboard_queries.counts_by_bucket(
            conn, viewer.id, buckets, provider_id=provider_id
        )
        per_provider = dashboard_queries.counts_by_provider(
            conn, viewer.id, buckets.start, buckets.end
        )
        labels = dashboard_queries.provider_labels(conn, viewer.id)
    hourly = buckets.step < dt.timedelta(days=1)
    label_format = "%Y-%m-%d %H:00" if hourly else "%Y-%m-%d"
    provider_rates = [
        (pid, charts.rates(per_type))
        for pid, per_type in sorted(per_provider.items(), key=lambda kv: (kv[0] is None, kv[0]))
        if provider_id is None or pid == provider_id
    ]
    return renderer(ctx).page(
        request,
        "stats.html",
        account=viewer,
        status=400 if problems else 200,
        problems=problems,
        range=period,
        ranges=views.STATS_RANGES,
        provider_id=provider_id,
        labels=labels,
        buckets=buckets,
        stats=views.stats_view(buckets, counts, "%H:00" if hourly else "%m-%d"),
        provider_rates=provider_rates,
        label_format=label_format,
    )


@router.get(f"{PREFIX}/preferences")
def preferences_page(request: Request, ctx: ContextDep, viewer: Viewer, next: str = "") -> Response:
    if isinstance(viewer, Response):
        return viewer
    return renderer(ctx).page(
        request,
        "preferences.html",
        account=viewer,
        problem=None,
        zones=views.zone_choices(),
        next_path=auth.safe_next(next[:2000]),
    )


@router.post(f"{PREFIX}/preferences")
def save_preferences(
    request: Request,
    ctx: ContextDep,
    viewer: Editor,
    tz: Annotated[str, Form()] = "UTC",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Remember the viewer's time zone in a cookie (a preference, not a secret) for a year."""
    if isinstance(viewer, Response):
        return viewer
    if tz != "UTC" and views.zone(tz) is dt.UTC:
        return renderer(ctx).page(
            request,
            "preferences.html",
            account=viewer,
            status=400,
            problem=f"Unknown time zone {tz[:64]!r}: pick one from the list.",
            zones=views.zone_choices(),
            next_path=auth.safe_next(next[:2000]),
        )
    response = RedirectResponse(auth.safe_next(next[:2000]), status_code=303)
    response.set_cookie(
        views.TZ_COOKIE,
        tz,
        max_age=365 * 86400,
        path=PREFIX,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/", include_in_schema=False)
def root() -> Response:
    """The platform's address itself leads to the dashboard."""
    return RedirectResponse(f"{PREFIX}/", status_code=303)


@router.get(f"{PREFIX}/{{rest:path}}")
def not_found(request: Request, ctx: ContextDep, viewer: Viewer, rest: str) -> Response:
    """Any other dashboard address: a 404 page in the dashboard's layout, not JSON. Declared
    last, so every real page matches first."""
    account = None if isinstance(viewer, Response) else viewer
    return renderer(ctx).error(
        request,
        404,
        "Page not found",
        "The dashboard has no page at this address. Use the menu above, or start from the "
        "overview.",
        account,
    )
