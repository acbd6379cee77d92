"""Tracking endpoints under ``/track/tpsp/``: opens, clicks and unsubscribes (no API key; the
signed token is the credential, see ``domain/tracking.py``).

- ``GET open/{token}``: a 1×1 transparent GIF, and CSOpen for the message (the image is served
  even for a bad token, so a mail client never shows a broken image).
- ``GET click/{token}``: 302 to the URL inside the signed token, and CSClick. A token that does
  not verify is answered 404: the endpoint never redirects anywhere the platform did not sign.
- Opens and clicks are bounded per message, since anyone holding one message can replay its
  links forever: a load within :data:`REPEAT_WINDOW` of the last stored open (or click on the
  same URL) is the same reader (clients and image proxies reload), and after
  :data:`MAX_TRACKED` stored opens or clicks a message stores no more of that kind. Both are
  counted (``tracking_repeats_ignored``, ``tracking_over_cap``) and still answered normally.
- ``GET unsubscribe/{token}``: a page with a confirmation button (link scanners that prefetch
  URLs must not unsubscribe anyone); ``POST unsubscribe/{token}`` (the button, or a mail client's
  RFC 8058 one-click ``List-Unsubscribe=One-Click``): the recipient is suppressed for the
  sub-account and CSUnsubscribe recorded (once), both by the event recorder.
"""

from __future__ import annotations

import base64
import datetime as dt
import html

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sendpost_wire import EventType
from sqlalchemy.engine import Connection

from sendpost_platform.api.deps import AppContext, ContextDep
from sendpost_platform.domain.tracking import (
    TRACK_PATH,
    InvalidTokenError,
    TrackingToken,
    TrackKind,
    read_token,
    tracking_secret,
)
from sendpost_platform.errors import NotFound
from sendpost_platform.recorder import RECORDER
from sendpost_platform.sending import message_event
from sendpost_platform.store import counters, messages
from sendpost_platform.store import events as event_store

router = APIRouter(tags=["tracking"], include_in_schema=True)

REPEAT_WINDOW = dt.timedelta(seconds=60)
MAX_TRACKED = 100
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {"Cache-Control": "no-store, max-age=0"}


def _token(ctx: AppContext, text: str, kind: TrackKind) -> TrackingToken:
    try:
        return read_token(tracking_secret(ctx.settings.secret_key), text, kind)
    except InvalidTokenError:
        raise NotFound("unknown or invalid tracking link") from None


def _record(
    ctx: AppContext, token: TrackingToken, event_type: EventType, *, url: str | None = None
) -> messages.Message | None:
    now = ctx.clock.now()
    with ctx.store.write() as conn:
        message = messages.get_message(conn, token.message_uuid)
        if message is None:
            return None
        if event_type is not EventType.CSUnsubscribe and _seen_enough(
            conn, message, event_type, now, url
        ):
            return message
        # An unsubscribe suppresses the recipient; the recorder stores it once (see recorder.py).
        RECORDER.record(
            conn,
            [
                message_event(
                    message,
                    event_type,
                    now,
                    source="tracking",
                    details={"url": url} if url else None,
                )
            ],
        )
    return message


def _seen_enough(
    conn: Connection,
    message: messages.Message,
    event_type: EventType,
    now: dt.datetime,
    url: str | None,
) -> bool:
    """Whether this open or click adds nothing: a repeat within the window, or over the cap."""
    seen = event_store.tracking_seen(
        conn, message.uuid, int(event_type), since=now - REPEAT_WINDOW, limit=MAX_TRACKED
    )
    provider = message.provider_id or 0
    if seen.total >= MAX_TRACKED:
        counters.add(conn, provider, "tracking_over_cap")
        return True
    if any(url is None or (details or {}).get("url") == url for details in seen.recent):
        counters.add(conn, provider, "tracking_repeats_ignored")
        return True
    return False


@router.get(TRACK_PATH + "/open/{token}")
def track_open(ctx: ContextDep, token: str) -> Response:
    try:
        parsed = read_token(tracking_secret(ctx.settings.secret_key), token, TrackKind.open)
    except InvalidTokenError:
        parsed = None
    if parsed is not None:
        _record(ctx, parsed, EventType.CSOpen)
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


@router.get(TRACK_PATH + "/click/{token}")
def track_click(ctx: ContextDep, token: str) -> Response:
    parsed = _token(ctx, token, TrackKind.click)
    assert parsed.url is not None
    _record(ctx, parsed, EventType.CSClick, url=parsed.url)
    return RedirectResponse(parsed.url, status_code=302, headers=_NO_STORE)


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:3em auto"><h1>{title}</h1>{body}</body>
</html>"""


@router.get(TRACK_PATH + "/unsubscribe/{token}")
def unsubscribe_page(ctx: ContextDep, token: str) -> HTMLResponse:
    _token(ctx, token, TrackKind.unsubscribe)
    form = (
        f'<form method="post" action="{html.escape(token)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        "<p>Stop receiving these emails?</p><button type=submit>Unsubscribe</button></form>"
    )
    return HTMLResponse(_PAGE.format(title="Unsubscribe", body=form), headers=_NO_STORE)


@router.post(TRACK_PATH + "/unsubscribe/{token}")
def unsubscribe(ctx: ContextDep, token: str) -> HTMLResponse:
    parsed = _token(ctx, token, TrackKind.unsubscribe)
    message = _record(ctx, parsed, EventType.CSUnsubscribe)
    if message is None:
        raise NotFound("unknown or invalid tracking link")
    body = "<p>You will not receive these emails any more.</p>"
    return HTMLResponse(_PAGE.format(title="Unsubscribed", body=body), headers=_NO_STORE)
