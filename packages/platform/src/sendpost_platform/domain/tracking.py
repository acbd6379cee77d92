"""Signed tracking tokens and HTML rewriting for opens, clicks and unsubscribes (pure).

A token is ``{payload}.{signature}``: the payload is compact JSON, base64url without padding,
holding the kind (``open``, ``click``, ``unsubscribe``), the message UUID and, for clicks, the
original URL; the signature is HMAC-SHA256 over the payload with the platform secret. A click
endpoint therefore redirects only to a URL the platform itself signed: never an open redirect.

URLs look like ``{public base URL}/track/tpsp/{kind}/{token}``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import enum
import functools
import hashlib
import hmac
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

TRACK_PATH = "/track/tpsp"


class TrackKind(enum.StrEnum):
    open = "open"
    click = "click"
    unsubscribe = "unsubscribe"


class InvalidTokenError(ValueError):
    """The token is malformed, forged, or of another kind than the endpoint expects."""


@dataclass(frozen=True)
class TrackingToken:
    kind: TrackKind
    message_uuid: str
    url: str | None = None


def tracking_secret(platform_secret: str) -> bytes:
    """The HMAC key for tracking tokens, derived from the platform secret under its own label."""
    return hmac.new(
        platform_secret.encode(), b"sendpost/tracking-token/v1", hashlib.sha256
    ).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> str:
    return _b64(hmac.digest(secret, payload.encode(), "sha256"))


def make_token(secret: bytes, token: TrackingToken) -> str:
    body: dict[str, str] = {"k": token.kind.value, "m": token.message_uuid}
    if token.url is not None:
        body["u"] = token.url
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, payload)}"


def read_token(secret: bytes, text: str, kind: TrackKind) -> TrackingToken:
    """Check the signature and the kind, and return the token; raises :class:`InvalidTokenError`."""
    payload, _, signature = text.partition(".")
    if not payload or not signature or not text.isascii():
        raise InvalidTokenError("malformed token")
    if not hmac.compare_digest(_mac(secret, payload), signature):
        raise InvalidTokenError("bad signature")
    try:
        body = json.loads(_unb64(payload))
    except (binascii.Error, ValueError) as exc:
        raise InvalidTokenError("malformed payload") from exc
    if not isinstance(body, dict) or body.get("k") != kind.value:
        raise InvalidTokenError("wrong token kind")
    uuid = body.get("m")
    url = body.get("u")
    if not isinstance(uuid, str) or (url is not None and not isinstance(url, str)):
        raise InvalidTokenError("malformed payload")
    if kind is TrackKind.click and url is None:
        raise InvalidTokenError("click token without a URL")
    return TrackingToken(kind, uuid, url)


def track_url(base_url: str, secret: bytes, token: TrackingToken) -> str:
    return f"{base_url.rstrip('/')}{TRACK_PATH}/{token.kind.value}/{make_token(secret, token)}"


_ANCHOR_START = re.compile(r"<a(?![\w-])", re.IGNORECASE)
_TAG_STOP = re.compile(r"""[>"']""")
_HREF_ATTR = re.compile(r"""(?<![\w-])href[ \t\r\n\f]*=[ \t\r\n\f]*(["'])""", re.IGNORECASE)


def href_spans(html_body: str) -> Iterator[tuple[int, int]]:
    """Where the quoted ``href`` value of each ``<a>`` tag is: (start, end) of the text between
    its quotes, in order. Linear in the body's length whatever it holds (customers send it): each
    tag is found once, its end found by skipping quoted values with ``str.find``, and scanning
    resumes after it; a tag or quote that never closes ends the scan (no later tag can exist)."""
    position = 0
    while True:
        start = _ANCHOR_START.search(html_body, position)
        if start is None:
            return
        cursor = start.end()
        starts: list[int] = []  # each quoted value of the tag: where its text starts and ends
        ends: list[int] = []
        while True:
            stop = _TAG_STOP.search(html_body, cursor)
            if stop is None:
                return
            if stop.group() == ">":
                break
            close = html_body.find(stop.group(), stop.end())
            if close < 0:
                return
            starts.append(stop.end())
            ends.append(close)
            cursor = close + 1
        tag_end = stop.start()
        for attribute in _HREF_ATTR.finditer(html_body, start.end(), tag_end):
            # The quoted value this quote opens, unless "href=" sits inside another value.
            at = bisect.bisect_left(starts, attribute.end())
            if at < len(starts) and starts[at] == attribute.end():
                yield starts[at], ends[at]
                break
        position = tag_end + 1


_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@functools.lru_cache(maxsize=64)
def _link_plan(html_body: str, tracked_prefix: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``html_body`` cut around the ``href`` values to rewrite: ``texts`` has one more element
    than ``urls`` and the body is ``texts[0] + href[0] + texts[1] + ...``. Computed once per
    distinct body (a send request's recipients share theirs)."""
    texts: list[str] = []
    urls: list[str] = []
    position = 0
    for value_start, value_end in href_spans(html_body):
        original = html.unescape(html_body[value_start:value_end]).strip()
        if not original.lower().startswith(("http://", "https://")):
            continue
        if original.startswith(tracked_prefix):
            continue
        texts.append(html_body[position:value_start])
        urls.append(original)
        position = value_end
    texts.append(html_body[position:])
    return tuple(texts), tuple(urls)


def rewrite_links(html_body: str, base_url: str, secret: bytes, message_uuid: str) -> str:
    """Point every ``http(s)`` link of ``<a href>`` at a signed click URL for this message."""
    texts, urls = _link_plan(html_body, f"{base_url.rstrip('/')}{TRACK_PATH}/")
    out = [texts[0]]
    for original, text in zip(urls, texts[1:], strict=True):
        token = TrackingToken(TrackKind.click, message_uuid, original)
        out.append(html.escape(track_url(base_url, secret, token)))
        out.append(text)
    return "".join(out)


def add_open_pixel(html_body: str, base_url: str, secret: bytes, message_uuid: str) -> str:
    """Insert a 1×1 image loading the open URL, before ``</body>`` when there is one."""
    url = track_url(base_url, secret, TrackingToken(TrackKind.open, message_uuid))
    pixel = (
        f'<img src="{html.escape(url)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" />'
    )
    matches = list(_BODY_END.finditer(html_body))
    if not matches:
        return html_body + pixel
    at = matches[-1].start()
    return html_body[:at] + pixel + html_body[at:]
