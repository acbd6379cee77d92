"""Message preparation: a pure function from a stored message to the bytes and envelope to relay.

``prepare(message, signer, options)`` builds, in order:

1. the subject, HTML and text rendered with the recipient's custom fields (``{{name}}``,
   ``domain/handlebars.py``; HTML-escaped in HTML; ``{{unsubscribe}}`` is the unsubscribe link),
   the ``preText`` preheader as a hidden block at the top of the HTML body;
2. a MIME message with a text part, an HTML part, or ``multipart/alternative`` with both, inside
   ``multipart/mixed`` with one base64 part per attachment (its content type from its filename)
   when there are attachments;
3. ``From``/``To``/``Cc``/``Reply-To`` (written by ``email.headerregistry``, see
   ``domain/addresses.py``), ``Subject``, ``Date``, ``Message-ID: <{uuid}@{sender domain}>``, the
   caller's custom headers, and ``X-Sendpost-Message-UUID``, ``-Account-ID``, ``-SubAccount-ID``,
   ``-TPSP-ID``, ``-TPSP-Type``;
4. ``List-Unsubscribe: <{base}/track/tpsp/unsubscribe/{token}>`` (plus a ``mailto:`` when one is
   configured) with ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058);
5. when asked: rewritten links (signed click URLs) and the open pixel in the HTML part;
6. the DKIM signature with the sender domain's key, applied last over the final bytes.

The envelope sender is ``bounces+{uuid}+{subAccountId}@sp-bounce.{sender domain}``, so the bounce
processor can tie any DSN back to its message. Nothing here reads a clock, the database or the
network: the submission time is part of the stored message.

No value is trusted to be safe: a header name, a header value or an envelope address carrying
CR, LF, NUL or another control character (the API refuses them first) raises
:class:`UnsafeHeader`, a ``ValueError`` the relay treats as a message that cannot be prepared,
never as text to write.
"""

from __future__ import annotations

import email.utils
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sendpost_platform.domain import handlebars, tracking
from sendpost_platform.domain.addresses import (
    MAX_HEADER_NAME,
    Mailbox,
    UnsafeHeader,
    address_header,
    check_safe,
    is_address,
    text_header,
)
from sendpost_platform.smtp import dkim
from sendpost_platform.smtp.mime import (
    StoredAttachment,
    attachment_part,
    ending,
    multipart,
    text_part,
)

TPSP_TYPE_CUSTOM_SMTP = "custom-smtp"
BOUNCE_SUBDOMAIN = "sp-bounce"

RESERVED_HEADERS: frozenset[str] = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "return-path",
        "dkim-signature",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)
"""Headers the platform sets itself; a request may not supply them (nor any ``X-Sendpost-*``)."""


def is_reserved_header(name: str) -> bool:
    lowered = name.strip().lower()
    return lowered in RESERVED_HEADERS or lowered.startswith("x-sendpost-")


@dataclass(frozen=True)
class StoredMessage:
    """Everything preparation needs about one message for one recipient."""

    uuid: str
    account_id: str
    subaccount_id: str
    provider_id: str
    recipient: str
    from_email: str
    subject: str | None
    submitted_at: datetime
    from_name: str | None = None
    to: Sequence[Mailbox] = ()
    cc: Sequence[Mailbox] = ()
    reply_to: Mailbox | None = None
    text_body: str | None = None
    html_body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    track_opens: bool = False
    track_clicks: bool = False
    tpsp_type: str = TPSP_TYPE_CUSTOM_SMTP
    fields: Mapping[str, Any] = field(default_factory=dict)
    """This recipient's custom fields, for ``{{name}}`` placeholders."""
    pre_text: str | None = None
    attachments: Sequence[StoredAttachment] = ()

    @property
    def sender_domain(self) -> str:
        return sender_domain_of(self.from_email)


@dataclass(frozen=True)
class DomainSigner:
    """The sender domain's DKIM selector and key."""

    domain: str
    selector: str
    key: dkim.DkimKey


@dataclass(frozen=True)
class PrepareOptions:
    public_base_url: str
    tracking_secret: bytes
    unsubscribe_mailto: str | None = None


@dataclass(frozen=True)
class PreparedMessage:
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes


def sender_domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower()


def envelope_sender(uuid: str, subaccount_id: str, sender_domain: str) -> str:
    return f"bounces+{uuid}+{subaccount_id}@{BOUNCE_SUBDOMAIN}.{sender_domain}"


UNSUBSCRIBE_FIELD = "unsubscribe"
"""The reserved custom field: the recipient's unsubscribe link."""

PREHEADER_STYLE = (
    "display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;"
    "opacity:0;overflow:hidden;mso-hide:all;color:transparent"
)


@functools.lru_cache(maxsize=8)
def _template(text: str) -> handlebars.Template:
    """Parsed once per text (every recipient of a request shares its subject and bodies; a few
    entries only, as a body may be 10 MiB; the API parsed it first,
    so a :class:`~sendpost_platform.domain.handlebars.TemplateError` here is a ValueError the
    relay treats as a message that cannot be prepared)."""
    return handlebars.parse(text)


def unsubscribe_url(message: StoredMessage, options: PrepareOptions) -> str:
    """The recipient's signed one-click unsubscribe link."""
    token = tracking.TrackingToken(tracking.TrackKind.unsubscribe, message.uuid)
    return tracking.track_url(options.public_base_url, options.tracking_secret, token)


def fields_of(message: StoredMessage, unsubscribe: str) -> Mapping[str, Any]:
    """The values placeholders read: the unsubscribe link, then the message's fields."""
    return handlebars.Layers({UNSUBSCRIBE_FIELD: unsubscribe}, message.fields)


def _rendered(text: str | None, fields: Mapping[str, Any], *, escape: bool) -> str | None:
    if text is None:
        return None
    return handlebars.render(_template(text), fields, escape=escape)


def with_preheader(body: str, pre_text: str) -> str:
    """``body`` with a hidden block holding ``pre_text`` (already escaped) right after its
    ``<body ...>`` tag, or at the very start when it has none."""
    lowered = body.lower()
    start = lowered.find("<body")
    end = lowered.find(">", start) if start >= 0 else -1
    at = end + 1 if end >= 0 else 0
    block = f'<div style="{PREHEADER_STYLE}">{pre_text}</div>'
    return body[:at] + block + body[at:]


def _html(message: StoredMessage, options: PrepareOptions, fields: Mapping[str, Any]) -> str | None:
    body = _rendered(message.html_body, fields, escape=True)
    if body is None:
        return None
    pre_text = _rendered(message.pre_text, fields, escape=True)
    if pre_text:
        body = with_preheader(body, pre_text)
    if message.track_clicks:
        body = tracking.rewrite_links(
            body, options.public_base_url, options.tracking_secret, message.uuid
        )
    if message.track_opens:
        body = tracking.add_open_pixel(
            body, options.public_base_url, options.tracking_secret, message.uuid
        )
    return body


def _list_unsubscribe(message: StoredMessage, options: PrepareOptions, url: str) -> str:
    parts = [f"<{url}>"]
    if options.unsubscribe_mailto:
        subject = quote(f"unsubscribe {message.uuid}")
        parts.append(f"<mailto:{options.unsubscribe_mailto}?subject={subject}>")
    return ", ".join(parts)


def visible_to(message: StoredMessage) -> list[Mailbox]:
    """Each ``to`` recipient gets an individual message addressed to itself alone (with its
    display name); a ``cc`` or ``bcc`` recipient's copy shows the ``to`` list, as a carbon copy
    would."""
    key = message.recipient.strip().lower()
    own = [m for m in message.to if m.email.strip().lower() == key]
    if own:
        return own[:1]
    return list(message.to) or [Mailbox(message.recipient)]


_HEADER_NAME = re.compile(rf"^[!-9;-~]{{1,{MAX_HEADER_NAME}}}$")


def _header(name: str, value: str) -> str:
    """One header line (CRLF-terminated): ASCII values as they are, anything else (or a line too
    long for SMTP) RFC 2047-encoded and folded by ``email.headerregistry``. A name that is not a
    header name, or a value with CR, LF, NUL or another control character, raises
    :class:`UnsafeHeader`."""
    if not _HEADER_NAME.match(name):
        raise UnsafeHeader(f"{name!r} is not a header name")
    check_safe(f"header {name}", value)
    if value.isascii() and len(name) + len(value) < 900:
        return f"{name}: {value}\r\n"
    return text_header(name, value)


def _content(message: StoredMessage, options: PrepareOptions, fields: Mapping[str, Any]) -> str:
    """The message's text entity: one ``text/*`` part or ``multipart/alternative``."""
    html_body = _html(message, options, fields)
    text_body = _rendered(message.text_body, fields, escape=False)
    if text_body is not None and html_body is not None:
        parts = [text_part(text_body, "plain"), text_part(html_body, "html")]
        return multipart("alternative", message.uuid, parts)
    if html_body is not None:
        return ending(text_part(html_body, "html"))
    return ending(text_part(text_body or "", "plain"))


def _body(message: StoredMessage, options: PrepareOptions, fields: Mapping[str, Any]) -> str:
    """The MIME headers and body of the message (everything after its own headers)."""
    content = _content(message, options, fields)
    if not message.attachments:
        return "MIME-Version: 1.0\r\n" + content
    parts = [content.removesuffix("\r\n")]
    parts += [attachment_part(a) for a in message.attachments]
    return "MIME-Version: 1.0\r\n" + multipart("mixed", message.uuid, parts)


def _address_headers(message: StoredMessage) -> str:
    """``From``, ``To``, then ``Cc`` and ``Reply-To`` when there are any, folded."""
    head = address_header("From", [Mailbox(message.from_email, message.from_name)])
    head += address_header("To", visible_to(message))
    if message.cc:
        head += address_header("Cc", message.cc)
    if message.reply_to is not None:
        head += address_header("Reply-To", [message.reply_to])
    return head


def headers_of(
    message: StoredMessage, options: PrepareOptions, unsubscribe: str
) -> list[tuple[str, str]]:
    """The message's own unstructured headers, in order, after the address headers (the MIME
    headers come with the body)."""
    subject = _rendered(message.subject, fields_of(message, unsubscribe), escape=False)
    return [
        *([] if subject is None else [("Subject", subject)]),
        ("Date", email.utils.format_datetime(message.submitted_at)),
        ("Message-ID", f"<{message.uuid}@{message.sender_domain}>"),
        *message.headers.items(),
        ("List-Unsubscribe", _list_unsubscribe(message, options, unsubscribe)),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("X-Sendpost-Message-UUID", message.uuid),
        ("X-Sendpost-Account-ID", message.account_id),
        ("X-Sendpost-SubAccount-ID", message.subaccount_id),
        ("X-Sendpost-TPSP-ID", message.provider_id),
        ("X-Sendpost-TPSP-Type", message.tpsp_type),
    ]


def render(message: StoredMessage, options: PrepareOptions) -> bytes:
    """The unsigned message bytes (CRLF line endings).

    Written directly rather than through the ``email`` package's generator, which costs more
    than all the rest of preparation: the message's own headers are plain ASCII here (anything
    else is RFC 2047-encoded by :func:`_header`), and the body is one or two ``text/*`` parts,
    7bit or quoted-printable, under a ``multipart/alternative`` when there are two, and under
    ``multipart/mixed`` with the attachments (``smtp/mime.py``). The tests parse the result back
    with the ``email`` package and verify its DKIM signature."""
    unsubscribe = unsubscribe_url(message, options)
    head = _address_headers(message)
    headers = headers_of(message, options, unsubscribe)
    head += "".join(_header(name, value) for name, value in headers)
    body = _body(message, options, fields_of(message, unsubscribe))
    return (head + body).encode("ascii")


def prepare(
    message: StoredMessage, signer: DomainSigner, options: PrepareOptions
) -> PreparedMessage:
    """Build the signed bytes and the envelope for one stored message."""
    envelope_from = envelope_sender(message.uuid, message.subaccount_id, message.sender_domain)
    for address in (envelope_from, message.recipient):
        check_safe("envelope address", address)
        if not is_address(address):
            raise UnsafeHeader(f"envelope address {address!r} is not a valid address")
    unsigned = render(message, options)
    signed = dkim.sign(
        unsigned,
        domain=signer.domain,
        selector=signer.selector,
        key=signer.key,
        timestamp=int(message.submitted_at.timestamp()),
    )
    return PreparedMessage(
        envelope_from=envelope_from,
        recipients=(message.recipient,),
        data=signed,
    )
