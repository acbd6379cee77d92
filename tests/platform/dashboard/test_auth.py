"""Dashboard sign-in: the login form, the session cookie, the header, and sign-out."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sendpost_platform.app import create_app
from sendpost_platform.clock import ManualClock
from sendpost_platform.config import Settings
from sendpost_platform.dashboard import session
from sendpost_platform.store import Store, accounts

from tests.platform.conftest import Seed
from tests.platform.dashboard.helpers import sign_in


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    """Sign-in does not depend on the database kind: SQLite only (pages run on both)."""
    return sqlite_store


PAGES = (
    "/dashboard/",
    "/dashboard/providers",
    "/dashboard/events",
    "/dashboard/stats",
)


async def test_wrong_key_answers_401_page_naming_the_problem(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """A wrong key re-shows the form with 401, says the key is unknown, and sets no cookie."""
    wrong = "spa_" + "x" * 43
    response = await sign_in(client, wrong)
    assert response.status_code == 401
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "Unknown account API key" in response.text
    assert wrong not in response.text
    assert None is response.cookies.get(session.COOKIE_NAME)
    empty = await sign_in(client, "")
    assert (empty.status_code, "Enter your account API key" in empty.text) == (401, True)


async def test_right_key_sets_a_hardened_cookie_and_returns_to_the_page(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """The right key answers 303 to the page asked for, with an HttpOnly, SameSite=Lax cookie
    scoped to /dashboard that does not contain the key."""
    response = await sign_in(client, seed.account.account_key, "/dashboard/events?type=60")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/events?type=60"
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=lax" in cookie.lower()
    assert "path=/dashboard" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP here; HTTPS adds Secure
    assert seed.account.account_key not in cookie
    for page in PAGES:
        shown = await client.get(page)
        assert (page, 200) == (page, shown.status_code)
        assert "Acme" in shown.text
        assert seed.account.account_key not in shown.text


async def test_unauthenticated_pages_redirect_to_login_with_next(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """Without header or cookie every page redirects (303) to the form, remembering the page."""
    for page in PAGES:
        response = await client.get(page)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/dashboard/login?next=")
    form = await client.get("/dashboard/login?next=/dashboard/stats")
    assert form.status_code == 200
    assert 'name="next" value="/dashboard/stats"' in form.text


async def test_next_never_leaves_the_dashboard(client: httpx.AsyncClient, seed: Seed) -> None:
    """After sign-in a ``next`` pointing elsewhere (another site, a scheme-relative URL, a
    non-dashboard path) is replaced by the overview: no open redirect."""
    for target in ("https://evil.example/", "//evil.example/x", "/api/v1/events", "/\\evil"):
        response = await sign_in(client, seed.account.account_key, target)
        assert (target, "/dashboard/") == (target, response.headers["location"])


async def test_header_key_works_and_a_bad_header_is_401(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """``X-Account-ApiKey`` is accepted instead of the cookie; an unknown one is a 401 page."""
    good = await client.get(
        "/dashboard/providers", headers={"X-Account-ApiKey": seed.account.account_key}
    )
    assert good.status_code == 200
    assert seed.account.account_key not in good.text
    bad = await client.get("/dashboard/providers", headers={"X-Account-ApiKey": "spa_nope"})
    assert bad.status_code == 401
    assert "unknown account API key" in bad.text
    assert "spa_nope" not in bad.text


async def test_forged_or_tampered_cookie_is_refused(
    client: httpx.AsyncClient, seed: Seed, clock: ManualClock
) -> None:
    """A cookie signed with another secret, or edited to name another account, is no session."""
    with seed.store.write() as conn:
        other = accounts.create_account(conn, name="Other", now=clock.now())
    foreign = session.make_cookie(
        session.session_secret("another-secret"),
        session.Session(other.account_id, clock.now(), "x"),
    )
    client.cookies.set(session.COOKIE_NAME, foreign, path="/dashboard")
    response = await client.get("/dashboard/events")
    assert response.status_code == 303
    assert "expired=1" in response.headers["location"]
    client.cookies.clear()
    await sign_in(client, seed.account.account_key)
    value = client.cookies.get(session.COOKIE_NAME)
    assert value is not None
    payload, _, signature = value.partition(".")
    client.cookies.clear()
    client.cookies.set(session.COOKIE_NAME, f"{payload}x.{signature}", path="/dashboard")
    assert (await client.get("/dashboard/events")).status_code == 303


async def test_session_ends_after_its_lifetime(
    client: httpx.AsyncClient, seed: Seed, clock: ManualClock
) -> None:
    """A session is good for 12 hours of the platform's clock, then the form is shown again."""
    await sign_in(client, seed.account.account_key)
    clock.advance(hours=11, minutes=59)
    assert (await client.get("/dashboard/providers")).status_code == 200
    clock.advance(minutes=2)
    expired = await client.get("/dashboard/providers")
    assert expired.status_code == 303
    form = await client.get(expired.headers["location"])
    assert "Your session has ended" in form.text


async def test_sign_out_clears_the_cookie(client: httpx.AsyncClient, seed: Seed) -> None:
    """POST /dashboard/logout removes the session; pages then redirect to the form."""
    await sign_in(client, seed.account.account_key)
    assert (await client.get("/dashboard/")).status_code == 200
    response = await client.post("/dashboard/logout")
    assert (response.status_code, response.headers["location"]) == (303, "/dashboard/login")
    assert None is client.cookies.get(session.COOKIE_NAME)
    assert (await client.get("/dashboard/")).status_code == 303


async def test_a_copied_cookie_dies_with_sign_out(client: httpx.AsyncClient, seed: Seed) -> None:
    """Sign-out ends the session in the store: the same cookie value, replayed afterwards (a
    copy taken before sign-out), redirects to the form; a new sign-in works again."""
    await sign_in(client, seed.account.account_key)
    copied = client.cookies.get(session.COOKIE_NAME)
    assert copied is not None
    assert (await client.post("/dashboard/logout")).status_code == 303
    client.cookies.set(session.COOKIE_NAME, copied, path="/dashboard")
    replay = await client.get("/dashboard/")
    assert replay.status_code == 303
    assert replay.headers["location"].startswith("/dashboard/login")
    client.cookies.clear()
    await sign_in(client, seed.account.account_key)
    assert (await client.get("/dashboard/")).status_code == 200


async def test_cross_site_sign_out_is_refused(client: httpx.AsyncClient, seed: Seed) -> None:
    """A sign-out posted from another site (logout CSRF) is refused and the session lives on."""
    await sign_in(client, seed.account.account_key)
    refused = await client.post("/dashboard/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    assert (await client.get("/dashboard/")).status_code == 200


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Sec-Fetch-Site": "same-origin", "Origin": "http://platform.test"}, True),
        ({"Sec-Fetch-Site": "same-origin", "Origin": "null"}, True),
        ({"Sec-Fetch-Site": "none"}, True),
        ({"Sec-Fetch-Site": "same-site", "Origin": "http://shop.platform.test"}, False),
        ({"Sec-Fetch-Site": "cross-site", "Origin": "http://platform.test"}, False),
        ({"Origin": "http://platform.test"}, True),
        ({"Origin": "http://PLATFORM.test"}, True),
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({}, True),
    ],
)
async def test_same_origin_check_follows_what_browsers_send(
    client: httpx.AsyncClient, seed: Seed, headers: dict[str, str], allowed: bool
) -> None:
    """Sec-Fetch-Site decides when present (a browser behind a no-referrer page sends
    ``Origin: null`` with ``same-origin``); otherwise Origin against Host; null is never ours."""
    response = await client.post(
        "/dashboard/login", data={"key": seed.account.account_key}, headers=headers
    )
    assert response.status_code == (303 if allowed else 403)


async def test_cross_site_login_post_is_refused(client: httpx.AsyncClient, seed: Seed) -> None:
    """A sign-in form posted from another origin (login CSRF) is refused with 403."""
    response = await client.post(
        "/dashboard/login",
        data={"key": seed.account.account_key},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert None is response.cookies.get(session.COOKIE_NAME)
    same = await client.post(
        "/dashboard/login",
        data={"key": seed.account.account_key},
        headers={"Origin": "http://platform.test"},
    )
    assert same.status_code == 303


async def test_pages_carry_security_headers(client: httpx.AsyncClient, seed: Seed) -> None:
    """Pages forbid scripts and framing and are never cached."""
    await sign_in(client, seed.account.account_key)
    response = await client.get("/dashboard/events")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert (
        response.headers["x-frame-options"],
        response.headers["cache-control"],
    ) == ("DENY", "no-store")


async def test_secure_cookie_over_https(app: FastAPI, seed: Seed) -> None:
    """Signed in over HTTPS, the session cookie is also marked Secure."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://platform.test") as https:
        response = await sign_in(https, seed.account.account_key)
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower().split("; ")


async def test_without_platform_secret_sign_in_is_refused_but_header_works(
    store: Store, clock: ManualClock, seed: Seed
) -> None:
    """No platform secret: the form says sign-in is unavailable (503); the header still works."""
    settings = Settings(database_url=str(store.engine.url), secret_key="")
    app = create_app(settings, clock=clock, store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://platform.test") as c:
        response = await sign_in(c, seed.account.account_key)
        assert response.status_code == 503
        assert "SENDPOST_SECRET_KEY" in response.text
        assert session.COOKIE_NAME not in response.headers.get("set-cookie", "")
        header = {"X-Account-ApiKey": seed.account.account_key}
        assert (await c.get("/dashboard/providers", headers=header)).status_code == 200
