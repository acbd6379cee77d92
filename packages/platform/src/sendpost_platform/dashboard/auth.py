"""Who is looking at the dashboard: the account API key, from a header or a login session.

- ``X-Account-ApiKey`` on the request (scripts, proxies): that account; an unknown key is a 401
  page.
- Otherwise the session cookie set by ``POST /dashboard/login`` (see ``session.py``): signed with
  a key derived from the platform secret, ``HttpOnly``, ``SameSite=Lax``, ``Path=/dashboard``,
  ``Secure`` over HTTPS. A session whose account key has changed since login, or that was signed
  out (``POST /dashboard/logout`` records its ID in the store), is over.
- Login and logout posts from another site are refused (:func:`cross_site`).
- Neither: a redirect (303) to the login form, which then returns to the page asked for.

The key typed into the form is never written back into any page, cookie or log.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from sendpost_platform import keys
from sendpost_platform.api import throttle
from sendpost_platform.api.auth import ACCOUNT_HEADER
from sendpost_platform.api.deps import AppContext, ContextDep
from sendpost_platform.dashboard import session
from sendpost_platform.dashboard.render import PREFIX, SECURITY_HEADERS, Renderer
from sendpost_platform.store import accounts
from sendpost_platform.store.dashboard_queries import account_key_hash, end_session, session_ended

router = APIRouter(include_in_schema=False)

LOGIN_PATH = f"{PREFIX}/login"
EXTRA = "dashboard"


def renderer(ctx: AppContext) -> Renderer:
    found = ctx.extras[EXTRA]
    assert isinstance(found, Renderer)
    return found


def safe_next(value: str) -> str:
    """Only a dashboard path on this host (never an open redirect)."""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith(f"{PREFIX}/") or "\\" in value:
        return f"{PREFIX}/"
    return value


def _from_cookie(ctx: AppContext, value: str) -> accounts.Account | None:
    secret = renderer(ctx).session_secret
    if secret is None:
        return None
    found = session.read_cookie(secret, value, now=ctx.clock.now())
    if found is None:
        return None
    with ctx.store.read() as conn:
        row = account_key_hash(conn, found.account_id)
        if row is not None and session_ended(conn, found.session_id):
            row = None
    if row is None:
        return None
    name, key_hash = row
    if session.key_fingerprint(secret, key_hash) != found.key_fingerprint:
        return None
    return accounts.Account(found.account_id, name)


def authenticate(request: Request, ctx: ContextDep) -> accounts.Account | Response:
    """The viewing account, or the answer to give instead (401 page or redirect to login)."""
    key = request.headers.get(ACCOUNT_HEADER)
    if key:
        wait = throttle.wait(ctx, request)
        if wait is not None:
            return _throttled(request, ctx, wait)
        with ctx.store.read() as conn:
            account = accounts.account_by_key(conn, key)
        if account is None:
            throttle.failed(ctx, request)
            return renderer(ctx).error(
                request,
                401,
                "Not signed in",
                f"The {ACCOUNT_HEADER} header holds an unknown account API key.",
                None,
            )
        return account
    cookie = request.cookies.get(session.COOKIE_NAME)
    account = _from_cookie(ctx, cookie) if cookie else None
    if account is not None:
        return account
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = {"next": target}
    if cookie:
        query["expired"] = "1"
    response = RedirectResponse(f"{LOGIN_PATH}?{urlencode(query)}", status_code=303)
    if cookie:
        response.delete_cookie(session.COOKIE_NAME, path=PREFIX)
    return response


def _throttled(request: Request, ctx: AppContext, wait: int) -> HTMLResponse:
    page = renderer(ctx).error(
        request,
        429,
        "Too many wrong keys",
        f"Too many wrong keys came from your address; try again in {wait} s.",
        None,
    )
    page.headers["Retry-After"] = str(wait)
    return page


def authenticate_form(request: Request, ctx: ContextDep) -> accounts.Account | Response:
    """:func:`authenticate` for a form that changes something: also the 403 page when the form
    was posted from another site (:func:`cross_site`)."""
    viewer = authenticate(request, ctx)
    if not isinstance(viewer, Response) and cross_site(request):
        return renderer(ctx).error(
            request, 403, "Not saved", "The form was posted from another site.", viewer
        )
    return viewer


Viewer = Annotated[accounts.Account | Response, Depends(authenticate)]
"""A page's viewer, or the answer to give instead (sign-in redirect, 401 page)."""
Editor = Annotated[accounts.Account | Response, Depends(authenticate_form)]
"""The viewer of a form that changes something, or the answer to give instead (also 403)."""


def _login_page(
    request: Request, ctx: AppContext, *, status: int, problem: str | None, next_path: str
) -> HTMLResponse:
    return renderer(ctx).page(
        request, "login.html", account=None, status=status, problem=problem, next_path=next_path
    )


@router.get(LOGIN_PATH)
def login_form(request: Request, ctx: ContextDep, next: str = "", expired: str = "") -> Response:
    problem = "Your session has ended; sign in again." if expired else None
    if renderer(ctx).session_secret is None:
        problem = "Sign-in is unavailable: the platform secret (SENDPOST_SECRET_KEY) is not set."
    return _login_page(request, ctx, status=200, problem=problem, next_path=safe_next(next))


def cross_site(request: Request) -> bool:
    """Whether a form post comes from another site (login and logout refuse it).

    Browsers say where a request comes from in ``Sec-Fetch-Site`` (every current engine sends
    it; only ``same-origin`` and ``none``, a user's own action, are this site's). Older ones
    send ``Origin``, compared with the ``Host`` the request was sent to; ``Origin: null`` (an
    opaque origin: a sandboxed frame, a ``data:`` page) is never this site. A client that sends
    neither (curl, a script) is not a browser a forged page could drive, so it passes.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.lower() not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


@router.post(LOGIN_PATH)
def login(
    request: Request,
    ctx: ContextDep,
    key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    next_path = safe_next(next[:2000])
    secret = renderer(ctx).session_secret
    if secret is None:
        problem = "Sign-in is unavailable: the platform secret (SENDPOST_SECRET_KEY) is not set."
        return _login_page(request, ctx, status=503, problem=problem, next_path=next_path)
    if cross_site(request):
        problem = "Sign-in refused: the form was posted from another site."
        return _login_page(request, ctx, status=403, problem=problem, next_path=next_path)
    key = key.strip()
    if not key:
        problem = "Enter your account API key."
        return _login_page(request, ctx, status=401, problem=problem, next_path=next_path)
    wait = throttle.wait(ctx, request)
    if wait is not None:
        problem = f"Too many wrong keys from your address; try again in {wait} s."
        page = _login_page(request, ctx, status=429, problem=problem, next_path=next_path)
        page.headers["Retry-After"] = str(wait)
        return page
    with ctx.store.read() as conn:
        account = accounts.account_by_key(conn, key) if len(key) <= 200 else None
    if account is None:
        throttle.failed(ctx, request)
        problem = "Unknown account API key: no account has this key."
        return _login_page(request, ctx, status=401, problem=problem, next_path=next_path)
    now = ctx.clock.now()
    cookie = session.make_cookie(
        secret,
        session.Session(account.id, now, session.key_fingerprint(secret, keys.hash_key(key))),
    )
    response = RedirectResponse(next_path, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        session.COOKIE_NAME,
        cookie,
        max_age=int(session.LIFETIME / dt.timedelta(seconds=1)),
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post(f"{PREFIX}/logout")
def logout(request: Request, ctx: ContextDep) -> Response:
    """End the session for good (a copy of the cookie stops working too) and forget the cookie.
    A sign-out posted from another site is refused like a sign-in."""
    if cross_site(request):
        return renderer(ctx).error(
            request, 403, "Sign-out refused", "The form was posted from another site.", None
        )
    secret = renderer(ctx).session_secret
    cookie = request.cookies.get(session.COOKIE_NAME)
    found = session.read_cookie(secret, cookie, now=ctx.clock.now()) if secret and cookie else None
    if found is not None:
        with ctx.store.write() as conn:
            end_session(conn, found.session_id, found.expires_at, ctx.clock.now())
    response = RedirectResponse(LOGIN_PATH, status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(session.COOKIE_NAME, path=PREFIX, httponly=True, samesite="lax")
    return response
