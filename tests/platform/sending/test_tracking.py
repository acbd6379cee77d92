"""Tracking tokens are signed and typed; HTML links and the open pixel are rewritten."""

from __future__ import annotations

import re

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sendpost_platform.domain import tracking
from sendpost_platform.domain.tracking import (
    InvalidTokenError,
    TrackingToken,
    TrackKind,
    add_open_pixel,
    make_token,
    read_token,
    rewrite_links,
)

from tests.support.scaling import SIZES, measure_growth

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


_OLD_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
"""The pattern href_spans replaced (quadratic on ``<a`` repeated without ``>``): the reference
for well-formed HTML."""

_ATTRIBUTES = st.sampled_from(
    [
        " href=",
        " HREF = ",
        ' href="https://shop.example/x"',
        " href='http://b.example/?q=1&amp;r=2'",
        ' title="t"',
        " data-x='z'",
        " id=a",
    ]
)
_TAGS = st.builds(
    lambda name, attributes: name + "".join(attributes) + ">",
    st.sampled_from(["<a", "<A", "<abbr", "<p", "</a"]),
    st.lists(_ATTRIBUTES, max_size=4),
)
_TEXT = st.sampled_from(["text ", "\n", "a href='x' ", ""])


@hypothesis.given(st.lists(st.one_of(_TAGS, _TEXT), max_size=20).map("".join))
def test_href_spans_find_what_the_old_pattern_found(body: str) -> None:
    """On well-formed tags (every tag closed, no ``>`` inside quoted values: where the old
    pattern read tags right), the linear scanner finds exactly the href values the old regular
    expression found."""
    old = [(m.start(3), m.end(3)) for m in _OLD_HREF.finditer(body)]
    assert old == list(tracking.href_spans(body))


def test_href_spans_skip_lookalikes_and_quoted_text() -> None:
    """Not links: ``data-href``, a custom ``<a-x>`` element, ``href=`` written inside another
    attribute's quoted value, and a tag the body ends inside; a ``>`` inside a quoted value does
    not end the tag (the old pattern got each of these wrong)."""
    body = (
        "<a data-href='https://no.example/1'>"
        "<a-x href='https://no.example/2'>"
        "<a title=\"say href='https://no.example/3'\" href='https://yes.example/1'>"
        "<a title='a>b' href=\"https://yes.example/2\">"
        "<a href='https://no.example/4'"
    )
    found = [body[a:b] for a, b in tracking.href_spans(body)]
    assert ["https://yes.example/1", "https://yes.example/2"] == found


@pytest.mark.slow
@pytest.mark.parametrize(
    "shape",
    ["<a " * 4, "<a href='", '<a x="href=\'" ' * 2, "<a title='>' href=\"", "<A\thref = '"],
)
def test_href_scanning_is_linear_on_hostile_html(shape: str) -> None:
    """Customer HTML of 1 KB → 4 MB made of unclosed tags or quotes: the time per byte stays
    within 3× (the old pattern took 1 s on 16 KB of ``<a `` repeated)."""
    unit = shape * 8

    def make(size: int) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    growth = measure_growth(
        make, lambda body: list(tracking.href_spans(body)), factor=3.0, sizes=SIZES[:7]
    )
    assert growth.broken_at is None, growth.describe()
