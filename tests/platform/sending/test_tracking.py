"""Tracking tokens are signed and typed; HTML links and the open pixel are rewritten."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sendpost_platform.domain.tracking import (
    InvalidTokenError,
    TrackingToken,
    TrackKind,
    add_open_pixel,
    make_token,
    read_token,
    rewrite_links,
)

SECRET = b"platform-secret"
BASE = "https://t.example.net"


def test_token_round_trip() -> None:
    """A click token reads back with its message UUID and URL."""
    token = TrackingToken(TrackKind.click, "uuid-1", "https://shop.example/a?b=1&c=2")
    assert token == read_token(SECRET, make_token(SECRET, token), TrackKind.click)


def test_forged_or_foreign_tokens_are_refused() -> None:
    """A token signed with another secret, altered, or of another kind is refused."""
    good = make_token(SECRET, TrackingToken(TrackKind.click, "u", "https://a.example/"))
    other = make_token(b"other", TrackingToken(TrackKind.click, "u", "https://evil.example/"))
    payload, _, sig = good.partition(".")
    forged_payload = make_token(
        SECRET, TrackingToken(TrackKind.click, "u", "https://evil.example/")
    )
    spliced = forged_payload.partition(".")[0] + "." + sig
    for bad in (other, spliced, payload, "", "a.b"):
        with pytest.raises(InvalidTokenError):
            read_token(SECRET, bad, TrackKind.click)
    with pytest.raises(InvalidTokenError):
        read_token(SECRET, good, TrackKind.open)


@given(st.text())
def test_any_text_as_a_token_is_refused_not_an_error(text: str) -> None:
    """Arbitrary text (non-ASCII included, as a URL path may carry) is refused, never a crash."""
    good = make_token(SECRET, TrackingToken(TrackKind.open, "u", None))
    if text == good:
        return
    with pytest.raises(InvalidTokenError):
        read_token(SECRET, text, TrackKind.open)


def test_non_ascii_signature_is_refused() -> None:
    """A signature with non-ASCII characters is refused (found by schemathesis as a 500)."""
    good = make_token(SECRET, TrackingToken(TrackKind.open, "u", None))
    with pytest.raises(InvalidTokenError):
        read_token(SECRET, good.partition(".")[0] + ".é", TrackKind.open)


def test_rewrite_links_signs_every_http_link_only() -> None:
    """http(s) links become click URLs carrying the original; mailto and anchors stay."""
    html = (
        "<a href=\"https://shop.example/x?a=1&amp;b=2\">x</a> <a href='http://b.example'>b</a>"
        ' <a href="mailto:s@shop.example">m</a> <a href="#top">t</a>'
    )
    out = rewrite_links(html, BASE, SECRET, "uuid-9")
    urls = re.findall(r"href=[\"']([^\"']+)", out)
    assert urls[2:] == ["mailto:s@shop.example", "#top"]
    originals = []
    for url in urls[:2]:
        assert url.startswith(f"{BASE}/track/tpsp/click/")
        token = read_token(SECRET, url.rsplit("/", 1)[1], TrackKind.click)
        assert token.message_uuid == "uuid-9"
        originals.append(token.url)
    assert originals == ["https://shop.example/x?a=1&b=2", "http://b.example"]


def test_open_pixel_goes_before_body_end() -> None:
    """The pixel is inserted before </body> and points at a valid open token."""
    out = add_open_pixel("<html><body><p>Hi</p></body></html>", BASE, SECRET, "uuid-2")
    assert out.endswith("</body></html>")
    src = re.search(r'<img src="([^"]+)"', out)
    assert src is not None
    token = read_token(SECRET, src.group(1).rsplit("/", 1)[1], TrackKind.open)
    assert TrackingToken(TrackKind.open, "uuid-2") == token
