"""Message preparation: a pure function from a stored message to the bytes and envelope to relay.

``prepare(message, signer, options)`` builds, in order:

1. a MIME message with a text part, an HTML part, or ``multipart/alternative`` with both;
2. ``From``/``To``/``Cc``/``Subject``/``Date``, ``Message-ID: <{uuid}@{sender domain}>``, the
   caller's custom headers, and ``X-Sendpost-Message-UUID``, ``-Account-ID``, ``-SubAccount-ID``,
   ``-TPSP-ID``, ``-TPSP-Type``;
3. ``List-Unsubscribe: <{base}/track/tpsp/unsubscribe/{token}>`` (plus a ``mailto:`` when one is
   configured) with ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058);
4. when asked: rewritten links (signed click URLs) and the open pixel in the HTML part;
5. the DKIM signature with the sender domain's key, applied last over the final bytes.

The envelope sender is ``bounces+{uuid}+{subAccountId}@sp-bounce.{sender domain}``, so the bounce
processor can tie any DSN back to its message. Nothing here reads a clock, the database or the
network: the submission time is part of the stored message.
"""

from __future__ import annotations

import email.charset
import email.policy
import email.utils
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from urllib.parse import quote

from sendpost_platform.domain import tracking
from sendpost_platform.smtp import dkim

_WIRE = email.policy.compat32.clone(linesep="\r\n")
_UTF8_QP = email.charset.Charset("utf-8")
_UTF8_QP.body_encoding = email.charset.QP
_UTF8_QP.header_encoding = email.charset.QP

TPSP_TYPE_CUSTOM_SMTP = "custom-smtp"
BOUNCE_SUBDOMAIN = "sp-bounce"

RESERVED_HEADERS: frozenset[str] = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
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
    subject: str
    submitted_at: datetime
    from_name: str | None = None
    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    text_body: str | None = None
    html_body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    track_opens: bool = False
    track_clicks: bool = False
    tpsp_type: str = TPSP_TYPE_CUSTOM_SMTP

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


def _html(message: StoredMessage, options: PrepareOptions) -> str | None:
    body = message.html_body
    if body is None:
        return None
    if message.track_clicks:
        body = tracking.rewrite_links(
            body, options.public_base_url, options.tracking_secret, message.uuid
        )
    if message.track_opens:
        body = tracking.add_open_pixel(
            body, options.public_base_url, options.tracking_secret, message.uuid
        )
    return body


def _list_unsubscribe(message: StoredMessage, options: PrepareOptions) -> str:
    token = tracking.TrackingToken(tracking.TrackKind.unsubscribe, message.uuid)
    parts = [f"<{tracking.track_url(options.public_base_url, options.tracking_secret, token)}>"]
    if options.unsubscribe_mailto:
        subject = quote(f"unsubscribe {message.uuid}")
        parts.append(f"<mailto:{options.unsubscribe_mailto}?subject={subject}>")
    return ", ".join(parts)


def visible_to(message: StoredMessage) -> list[str]:
    """Each ``to`` recipient gets an individual message addressed to itself alone; a ``cc`` or
    ``bcc`` recipient's copy shows the ``to`` list, as a carbon copy would."""
    key = message.recipient.strip().lower()
    if not message.to or any(a.strip().lower() == key for a in message.to):
        return [message.recipient]
    return list(message.to)


def _header(name: str, value: str) -> str:
    """One header line (CRLF-terminated): ASCII values as they are, anything else (or a line too
    long for SMTP) RFC 2047-encoded and folded by :class:`email.header.Header`."""
    if value.isascii() and len(name) + len(value) < 900:
        return f"{name}: {value}\r\n"
    folded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {folded}\r\n"


def _text_part(body: str, subtype: str) -> MIMENonMultipart:
    if body.isascii() and all(len(line) < 990 for line in body.splitlines()):
        return MIMEText(body, subtype, "us-ascii")
    part = MIMENonMultipart("text", subtype)
    part.set_payload(body, _UTF8_QP)
    return part


def _body(message: StoredMessage, options: PrepareOptions) -> Message:
    html_body = _html(message, options)
    if message.text_body is not None and html_body is not None:
        mime = MIMEMultipart("alternative")
        mime.attach(_text_part(message.text_body, "plain"))
        mime.attach(_text_part(html_body, "html"))
        return mime
    if html_body is not None:
        return _text_part(html_body, "html")
    return _text_part(message.text_body or "", "plain")


def headers_of(message: StoredMessage, options: PrepareOptions) -> list[tuple[str, str]]:
    """The message's own headers, in order (the MIME headers come with the body)."""
    name = message.from_name or ""
    headers = [
        ("From", email.utils.formataddr((name, message.from_email), charset="utf-8")),
        ("To", ", ".join(visible_to(message))),
    ]
    if message.cc:
        headers.append(("Cc", ", ".join(message.cc)))
    headers += [
        ("Subject", message.subject),
        ("Date", email.utils.format_datetime(message.submitted_at)),
        ("Message-ID", f"<{message.uuid}@{message.sender_domain}>"),
        *message.headers.items(),
        ("List-Unsubscribe", _list_unsubscribe(message, options)),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("X-Sendpost-Message-UUID", message.uuid),
        ("X-Sendpost-Account-ID", message.account_id),
        ("X-Sendpost-SubAccount-ID", message.subaccount_id),
        ("X-Sendpost-TPSP-ID", message.provider_id),
        ("X-Sendpost-TPSP-Type", message.tpsp_type),
    ]
    return headers


def render(message: StoredMessage, options: PrepareOptions) -> bytes:
    """The unsigned message bytes (CRLF line endings).

    The body (parts, boundaries, transfer encodings) is rendered by the ``email`` package's
    ``compat32`` generator; the message's own headers are written directly, because they are
    plain ASCII here and running each through the generic folding code costs more than all the
    rest of preparation. Non-ASCII values are still RFC 2047-encoded (:func:`_header`)."""
    head = "".join(_header(name, value) for name, value in headers_of(message, options))
    return head.encode("ascii") + _body(message, options).as_bytes(policy=_WIRE)


def prepare(
    message: StoredMessage, signer: DomainSigner, options: PrepareOptions
) -> PreparedMessage:
    """Build the signed bytes and the envelope for one stored message."""
    unsigned = render(message, options)
    signed = dkim.sign(unsigned, domain=signer.domain, selector=signer.selector, key=signer.key)
    return PreparedMessage(
        envelope_from=envelope_sender(message.uuid, message.subaccount_id, message.sender_domain),
        recipients=(message.recipient,),
        data=signed,
    )
