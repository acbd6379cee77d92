"""Message preparation: headers, parts, envelope, tracking and the DKIM signature applied last."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage

import dkim as dkimpy
import pytest
from sendpost_platform.domain.addresses import Mailbox
from sendpost_platform.domain.tracking import TrackKind, read_token
from sendpost_platform.smtp import dkim
from sendpost_platform.smtp.prepare import (
    DomainSigner,
    PrepareOptions,
    StoredMessage,
    is_reserved_header,
    prepare,
)

from tests.platform.sending.dns_support import txt_lookup

SECRET = b"s3cret"
OPTIONS = PrepareOptions(public_base_url="https://sp.example.net", tracking_secret=SECRET)


@pytest.fixture(scope="module")
def signer() -> DomainSigner:
    return DomainSigner("shop.example", "sp1", dkim.generate_key())


def stored(**overrides: object) -> StoredMessage:
    base: dict[str, object] = {
        "uuid": "8a4c2a3e-5a38-4d6f-9a8e-0c1b2d3e4f50",
        "account_id": "7",
        "subaccount_id": "11",
        "provider_id": "3",
        "recipient": "bob@example.org",
        "from_email": "news@shop.example",
        "from_name": "Shop",
        "subject": "Spring sale",
        "submitted_at": dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC),
        "to": (Mailbox("bob@example.org"),),
        "text_body": "See https://shop.example/sale",
        "html_body": '<html><body><a href="https://shop.example/sale">Sale</a></body></html>',
        "headers": {"X-Campaign": "spring"},
    }
    base.update(overrides)
    return StoredMessage(**base)  # type: ignore[arg-type]


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_headers_and_envelope(signer: DomainSigner) -> None:
    """Message-ID, X-Sendpost-* headers, List-Unsubscribe and the bounce envelope sender."""
    out = prepare(stored(), signer, OPTIONS)
    msg = parsed(out.data)
    uuid = "8a4c2a3e-5a38-4d6f-9a8e-0c1b2d3e4f50"
    assert f"bounces+{uuid}+11@sp-bounce.shop.example" == out.envelope_from
    assert out.recipients == ("bob@example.org",)
    assert f"<{uuid}@shop.example>" == msg["Message-ID"]
    assert uuid == msg["X-Sendpost-Message-UUID"]
    assert msg["X-Sendpost-Account-ID"] == "7"
    assert msg["X-Sendpost-SubAccount-ID"] == "11"
    assert msg["X-Sendpost-TPSP-ID"] == "3"
    assert msg["X-Sendpost-TPSP-Type"] == "custom-smtp"
    assert msg["X-Campaign"] == "spring"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = msg["List-Unsubscribe"].strip().strip("<>")
    assert unsubscribe.startswith("https://sp.example.net/track/tpsp/unsubscribe/")
    token = read_token(SECRET, unsubscribe.rsplit("/", 1)[1], TrackKind.unsubscribe)
    assert uuid == token.message_uuid
    assert msg["From"] == "Shop <news@shop.example>"
    assert msg["Date"] == "Sun, 01 Mar 2026 09:30:00 +0000"


def test_signature_is_last_and_verifies(signer: DomainSigner) -> None:
    """The first header is the DKIM signature and it verifies over the final bytes."""
    out = prepare(stored(track_opens=True, track_clicks=True), signer, OPTIONS)
    assert out.data.startswith(b"DKIM-Signature: ")
    lookup = txt_lookup({"sp1._domainkey.shop.example": dkim.txt_record(signer.key)})
    assert dkimpy.verify(out.data, dnsfunc=lookup) is True
    signature = parsed(out.data)["DKIM-Signature"]
    assert "list-unsubscribe:list-unsubscribe-post" in "".join(signature.split())


def test_text_and_html_alternative(signer: DomainSigner) -> None:
    """Both bodies become a multipart/alternative with text first, HTML second."""
    msg = parsed(prepare(stored(), signer, OPTIONS).data)
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]


def test_html_only_and_text_only(signer: DomainSigner) -> None:
    """A single body gives a single-part message of its type."""
    html_only = parsed(prepare(stored(text_body=None), signer, OPTIONS).data)
    text_only = parsed(prepare(stored(html_body=None), signer, OPTIONS).data)
    assert html_only.get_content_type() == "text/html"
    assert text_only.get_content_type() == "text/plain"


def test_tracking_only_when_asked(signer: DomainSigner) -> None:
    """Links and the pixel are rewritten only with trackClicks/trackOpens."""
    plain = parsed(prepare(stored(), signer, OPTIONS).data)
    tracked = parsed(prepare(stored(track_opens=True, track_clicks=True), signer, OPTIONS).data)
    plain_html = plain.get_body(("html",)).get_content()  # type: ignore[union-attr]
    tracked_html = tracked.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert '<a href="https://shop.example/sale">' in plain_html
    assert "/track/tpsp/" not in plain_html
    assert 'href="https://sp.example.net/track/tpsp/click/' in tracked_html
    assert '<img src="https://sp.example.net/track/tpsp/open/' in tracked_html


def test_non_ascii_subject_and_body(signer: DomainSigner) -> None:
    """Non-ASCII text is MIME-encoded and survives a round trip."""
    msg = parsed(
        prepare(stored(subject="Grüße ✓", text_body="Zürich", html_body=None), signer, OPTIONS).data
    )
    assert msg["Subject"] == "Grüße ✓"
    assert msg.get_content().rstrip() == "Zürich"


def test_reserved_headers() -> None:
    """Platform-owned headers may not be set by the request."""
    assert [
        is_reserved_header(h)
        for h in ("Message-ID", "x-sendpost-tpsp-id", " DKIM-Signature", "X-Tag")
    ] == [True, True, True, False]


def test_boundary_and_long_lines(signer: DomainSigner) -> None:
    """A body containing the boundary derived from the UUID gets a longer one; a line too long
    for SMTP is sent quoted-printable and decodes back unchanged."""
    uuid = "8a4c2a3e-5a38-4d6f-9a8e-0c1b2d3e4f50"
    text = f"before\n--=_sp_a_{uuid}\nafter"
    html = "<p>" + "x" * 2000 + "</p>"
    msg = parsed(prepare(stored(text_body=text, html_body=html), signer, OPTIONS).data)
    assert f"=_sp_a_{uuid}_" == msg.get_boundary()
    plain, rich = list(msg.iter_parts())
    assert text.replace("\n", "\r\n") == plain.get_content()
    assert "quoted-printable" == rich["Content-Transfer-Encoding"]
    assert html == rich.get_content()


def test_no_subject_means_no_subject_header(signer: DomainSigner) -> None:
    """``subject`` is optional (as in SendPost's SDK): without one the message has no Subject
    header, and its signature still verifies."""
    out = prepare(stored(subject=None), signer, OPTIONS)
    message = parsed(out.data)
    assert message["Subject"] is None
    lookup = txt_lookup({"sp1._domainkey.shop.example": dkim.txt_record(signer.key)})
    assert dkimpy.verify(out.data, dnsfunc=lookup) is True


def test_fields_preheader_and_unsubscribe_link(signer: DomainSigner) -> None:
    """Custom fields render in subject, text and HTML (escaped there); the preheader is hidden
    right after <body>, or first in an HTML body without one; ``{{unsubscribe}}`` is the same
    signed link as List-Unsubscribe."""
    message = parsed(
        prepare(
            stored(
                subject="Hi {{name}}",
                text_body="Hi {{name}} {{unsubscribe}}",
                html_body="<html><BODY class=x><p>{{name}}</p></BODY></html>",
                pre_text="Peek {{name}}",
                fields={"name": "A&B"},
            ),
            signer,
            OPTIONS,
        ).data
    )
    assert message["Subject"] == "Hi A&B"
    plain, rich = list(message.iter_parts())
    link = str(message["List-Unsubscribe"]).strip("<>")
    assert plain.get_content().strip() == f"Hi A&B {link}"
    html = rich.get_content()
    assert html.startswith('<html><BODY class=x><div style="display:none;')
    assert "Peek A&amp;B</div><p>A&amp;B</p>" in html
    bare = parsed(prepare(stored(html_body="<p>x</p>", pre_text="P"), signer, OPTIONS).data)
    assert list(bare.iter_parts())[1].get_content().startswith('<div style="display:none;')
