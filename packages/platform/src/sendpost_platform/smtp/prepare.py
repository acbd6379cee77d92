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

import email.policy
import email.utils
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from urllib.parse import quote

from sendpost_platform.domain import tracking
from sendpost_platform.smtp import dkim

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


def build_mime(message: StoredMessage, options: PrepareOptions) -> EmailMessage:
    """The unsigned MIME message (exposed for tests and previews)."""
    mime = EmailMessage(policy=email.policy.SMTP)
    mime["From"] = email.utils.formataddr((message.from_name or "", message.from_email))
    mime["To"] = ", ".join(message.to or [message.recipient])
    if message.cc:
        mime["Cc"] = ", ".join(message.cc)
    mime["Subject"] = message.subject
    mime["Date"] = email.utils.format_datetime(message.submitted_at)
    mime["Message-ID"] = f"<{message.uuid}@{message.sender_domain}>"
    for name, value in message.headers.items():
        mime[name] = value
    mime["List-Unsubscribe"] = _list_unsubscribe(message, options)
    mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mime["X-Sendpost-Message-UUID"] = message.uuid
    mime["X-Sendpost-Account-ID"] = message.account_id
    mime["X-Sendpost-SubAccount-ID"] = message.subaccount_id
    mime["X-Sendpost-TPSP-ID"] = message.provider_id
    mime["X-Sendpost-TPSP-Type"] = message.tpsp_type
    html_body = _html(message, options)
    if message.text_body is not None:
        mime.set_content(message.text_body)
        if html_body is not None:
            mime.add_alternative(html_body, subtype="html")
    elif html_body is not None:
        mime.set_content(html_body, subtype="html")
    else:
        mime.set_content("")
    return mime


def prepare(
    message: StoredMessage, signer: DomainSigner, options: PrepareOptions
) -> PreparedMessage:
    """Build the signed bytes and the envelope for one stored message."""
    unsigned = build_mime(message, options).as_bytes()
    signed = dkim.sign(unsigned, domain=signer.domain, selector=signer.selector, key=signer.key)
    return PreparedMessage(
        envelope_from=envelope_sender(message.uuid, message.subaccount_id, message.sender_domain),
        recipients=(message.recipient,),
        data=signed,
    )
