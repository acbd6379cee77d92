"""Rendering dashboard pages: one Jinja2 environment (autoescape on for every template), the
stylesheet, and the headers every page carries.

Pages are HTML with no script at all; the Content-Security-Policy says so (``default-src
'none'``), so even a value that escaped escaping could not run. Pages are never cached (they show
an account's data) and never framed. Links to other sites leave no referrer (filter URLs name
recipients): ``Referrer-Policy: same-origin``, which also lets browsers send the page's real
``Origin`` on its own form posts (``no-referrer`` makes them send ``Origin: null``, which the
same-origin check in ``auth.py`` cannot tell from a cross-site post).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from importlib import resources
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from sendpost_platform.dashboard import charts, views
from sendpost_platform.store.accounts import Account

PREFIX = "/dashboard"
STYLESHEET_PATH = f"{PREFIX}/static/dashboard.css"
ICON_PATH = f"{PREFIX}/static/icon.svg"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Renderer:
    env: jinja2.Environment
    stylesheet: bytes
    icon: bytes
    session_secret: bytes | None
    """None when the platform secret is unset (then nobody can log in with the form)."""

    def page(
        self,
        request: Request,
        template: str,
        *,
        account: Account | None,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **values: Any,
    ) -> HTMLResponse:
        tz = views.zone(request.cookies.get(views.TZ_COOKIE))
        html = self.env.get_template(template).render(
            account=account, path=request.url.path, tz=tz, tz_name=str(tz), **values
        )
        return HTMLResponse(
            html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
        )

    def error(
        self, request: Request, status: int, title: str, message: str, account: Account | None
    ) -> HTMLResponse:
        return self.page(
            request, "error.html", account=account, status=status, title=title, message=message
        )


def _in_viewer_zone(format_time: Callable[[Any, dt.tzinfo], str]) -> Callable[..., str]:
    """A template filter calling ``format_time`` with the page's ``tz`` (UTC when unset)."""

    @jinja2.pass_context
    def formatted(context: jinja2.runtime.Context, value: Any) -> str:
        tz = context.get("tz")
        return format_time(value, tz if isinstance(tz, dt.tzinfo) else dt.UTC)

    return formatted


def build_renderer(session_secret: bytes | None) -> Renderer:
    package = resources.files("sendpost_platform.dashboard")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sendpost_platform.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _in_viewer_zone(views.when)
    env.filters["type_name"] = views.type_name
    env.filters["form_time"] = _in_viewer_zone(views.form_time)
    env.filters["zip"] = lambda left, right: list(zip(left, right, strict=True))
    env.globals["stylesheet"] = STYLESHEET_PATH
    env.globals["icon"] = ICON_PATH
    env.globals["legend"] = [(t, charts.LABELS[t]) for t in charts.OUTCOMES]
    env.globals["prefix"] = PREFIX
    env.globals["UTC"] = dt.UTC
    stylesheet = (package / "static" / "dashboard.css").read_bytes()
    icon = (package / "static" / "icon.svg").read_bytes()
    return Renderer(env=env, stylesheet=stylesheet, icon=icon, session_secret=session_secret)
