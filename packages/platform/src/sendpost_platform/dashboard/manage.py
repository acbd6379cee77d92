"""Managing Custom SMTP providers from the dashboard, without curl (forms, no script).

::

    GET  /dashboard/providers/new              the form; POST runs the SMTP test (button "Test")
                                               or creates the provider once it passes ("Create")
    GET  /dashboard/providers/{id}/edit        the form filled in; POST saves (re-tested when a
                                               connection setting changes)
    POST /dashboard/providers/{id}/rotate-key  a new ingestion key, shown once

Every action goes through the same functions as the providers API (``api/providers.py``:
``smtp_test``, ``create``, ``update``, ``rotate``), so validation, the egress policy, the
password rules and the SMTP test are the API's. Every POST is refused when it comes from
another site (``auth.Editor``). Each SMTP test shows its stages with the server's reply and
the time taken.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool

from sendpost_platform.api import providers as provider_api
from sendpost_platform.api.deps import AppContext, ContextDep
from sendpost_platform.dashboard.auth import Editor, Viewer, renderer
from sendpost_platform.dashboard.render import PREFIX
from sendpost_platform.errors import ApiError
from sendpost_platform.smtp.connectivity import SmtpTestResult
from sendpost_platform.store import accounts

router = APIRouter(include_in_schema=False)

FIELDS = (
    "name",
    "host",
    "port",
    "security",
    "username",
    "password",
    "testFrom",
    "testTo",
    "maxRatePerHour",
)
GRACE_CHOICES = {"86400": "24 hours (default)", "3600": "1 hour", "0": "now (after a leak)"}


def _form_values(form: Any) -> dict[str, str]:
    values = {name: str(form.get(name, "")).strip() for name in FIELDS}
    values["password"] = str(form.get("password", ""))  # passwords keep their spaces
    values["verifyCertificate"] = "on" if form.get("verifyCertificate") else ""
    return values


def _body(values: dict[str, str], *, keep_empty_password: bool) -> dict[str, Any]:
    """The API's JSON body from the form (empty optional fields left out)."""
    body: dict[str, Any] = {}
    for name in FIELDS:
        value = values[name]
        if value == "" and name in ("username", "password", "maxRatePerHour"):
            continue
        body[name] = value
    body["verifyCertificate"] = values["verifyCertificate"] == "on"
    if keep_empty_password:
        body.pop("password", None)
    return body


def _field_errors(exc: ValidationError) -> dict[str, str]:
    out: dict[str, str] = {}
    for error in exc.errors():
        location = [str(p) for p in error.get("loc", ()) if p != "body"]
        name = to_camel(location[0]) if location else "form"
        out.setdefault(name, str(error.get("msg", "invalid")))
    return out


def _api_errors(exc: ApiError) -> tuple[dict[str, str], str]:
    fields: dict[str, str] = {}
    for error in exc.errors:
        field = str(error.get("field", "")).removeprefix("body.")
        fields.setdefault(field or "form", str(error.get("message", "")))
    return fields, str(exc)


def _result(exc: ApiError) -> SmtpTestResult | dict[str, Any] | None:
    extra = exc.extra or {}
    return extra if "stages" in extra else None


def _page(
    request: Request,
    ctx: AppContext,
    viewer: accounts.Account,
    *,
    status: int = 200,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    result: Any = None,
    provider_id: int | None = None,
) -> Response:
    return renderer(ctx).page(
        request,
        "provider_form.html",
        account=viewer,
        status=status,
        values=values,
        errors=errors or {},
        problem=problem,
        result=result.to_json() if isinstance(result, SmtpTestResult) else result,
        provider_id=provider_id,
    )


EMPTY = {name: "" for name in FIELDS} | {
    "port": "587",
    "security": "starttls",
    "maxRatePerHour": "100",
    "verifyCertificate": "on",
}


@router.get(f"{PREFIX}/providers/new")
def new_provider(request: Request, ctx: ContextDep, viewer: Viewer) -> Response:
    if isinstance(viewer, Response):
        return viewer
    return _page(request, ctx, viewer, values=dict(EMPTY))


@router.post(f"{PREFIX}/providers/new")
async def create_provider(request: Request, ctx: ContextDep, viewer: Editor) -> Response:
    if isinstance(viewer, Response):
        return viewer
    form = await request.form()
    values = _form_values(form)
    action = str(form.get("action", "test"))
    try:
        body = provider_api.ProviderIn.model_validate(_body(values, keep_empty_password=False))
    except ValidationError as exc:
        return _page(request, ctx, viewer, status=400, values=values, errors=_field_errors(exc))
    try:
        if action == "create":
            created = await provider_api.create(ctx, viewer.id, body)
        else:
            result = await provider_api.smtp_test(ctx, body)
            return _page(
                request, ctx, viewer, status=200 if result.ok else 422, values=values, result=result
            )
    except ApiError as exc:
        fields, problem = _api_errors(exc)
        return _page(
            request,
            ctx,
            viewer,
            status=exc.status,
            values=values,
            errors=fields,
            problem=problem,
            result=_result(exc),
        )
    return renderer(ctx).page(
        request,
        "provider_key.html",
        account=viewer,
        status=201,
        provider=created,
        key=created["eventIngestionApiKey"],
        expires=None,
    )


def _values_of(provider: dict[str, Any]) -> dict[str, str]:
    values = {name: "" if provider.get(name) is None else str(provider[name]) for name in FIELDS}
    values["password"] = ""
    values["verifyCertificate"] = "on" if provider.get("verifyCertificate") else ""
    return values


async def _load(ctx: AppContext, viewer: accounts.Account, provider_id: int) -> dict[str, Any]:
    provider = await run_in_threadpool(provider_api.load, ctx, viewer.id, provider_id)
    return provider_api.provider_json(provider, ctx.clock.now())


@router.get(f"{PREFIX}/providers/{{provider_id}}/edit")
async def edit_provider(
    request: Request, ctx: ContextDep, viewer: Viewer, provider_id: int
) -> Response:
    if isinstance(viewer, Response):
        return viewer
    try:
        provider = await _load(ctx, viewer, provider_id)
    except ApiError:
        return renderer(ctx).error(request, 404, "No such provider", "Not found.", viewer)
    return _page(request, ctx, viewer, values=_values_of(provider), provider_id=provider_id)


@router.post(f"{PREFIX}/providers/{{provider_id}}/edit")
async def save_provider(
    request: Request, ctx: ContextDep, viewer: Editor, provider_id: int
) -> Response:
    if isinstance(viewer, Response):
        return viewer
    try:
        current = await _load(ctx, viewer, provider_id)
    except ApiError:
        return renderer(ctx).error(request, 404, "No such provider", "Not found.", viewer)
    values = _form_values(await request.form())
    wanted = _body(values, keep_empty_password=values["password"] == "")
    if not values["username"]:
        wanted["username"] = None
    try:
        patch = provider_api.ProviderPatch.model_validate(wanted)
    except ValidationError as exc:
        return _page(
            request,
            ctx,
            viewer,
            status=400,
            values=values,
            errors=_field_errors(exc),
            provider_id=provider_id,
        )
    given = {
        name: getattr(patch, name)
        for name in patch.model_fields_set
        if getattr(patch, name) != current.get(to_camel(name))
        or (name == "password" and getattr(patch, name) is not None)
    }
    try:
        await provider_api.update(ctx, viewer.id, provider_id, given)
    except ApiError as exc:
        fields, problem = _api_errors(exc)
        return _page(
            request,
            ctx,
            viewer,
            status=exc.status,
            values=values,
            errors=fields,
            problem=problem,
            result=_result(exc),
            provider_id=provider_id,
        )
    return Response(status_code=303, headers={"Location": f"{PREFIX}/providers"})


@router.post(f"{PREFIX}/providers/{{provider_id}}/rotate-key")
async def rotate_key(
    request: Request, ctx: ContextDep, viewer: Editor, provider_id: int
) -> Response:
    if isinstance(viewer, Response):
        return viewer
    grace = str((await request.form()).get("grace", "86400"))
    if grace not in GRACE_CHOICES:
        return renderer(ctx).error(
            request, 400, "Not rotated", f"grace: one of {', '.join(GRACE_CHOICES)}", viewer
        )
    try:
        provider = await _load(ctx, viewer, provider_id)
        grace_seconds = min(int(grace), int(ctx.settings.ingest_key_grace))
        rotated = provider_api.rotate(ctx, viewer.id, provider_id, grace_seconds)
    except ApiError as exc:
        return renderer(ctx).error(request, exc.status, "Not rotated", str(exc), viewer)
    return renderer(ctx).page(
        request,
        "provider_key.html",
        account=viewer,
        provider=provider,
        key=rotated["eventIngestionApiKey"],
        expires=rotated["previousKeysExpireAt"],
    )
