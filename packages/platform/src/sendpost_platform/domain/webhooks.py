"""Webhook rules, SendPost's way (pure: no clock, no I/O). See ``docs/webhooks.md``.

- :data:`SWITCHES`: the per-event-type switches of SendPost's webhook object, with the defaults
  of the SDK's ``NewWebhook``.
- :data:`SENDPOST_TYPES`: Custom SMTP event type (58–68) → SendPost's webhook event
  (``Event.type`` code and ``typeName``) and the switch that selects it.
- :func:`sign` / :func:`verify`: HMAC-SHA256 over ``"{timestamp}.{body}"``.
- :func:`after_failure` / :func:`after_success`: a webhook's health (active, degraded,
  disabled) from its streak of failed attempts.
- :func:`is_transient` / :func:`retry_after`: which answers are retried, and for how long the
  endpoint asked us to wait.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import hmac
import secrets

from sendpost_wire import EventType

SWITCHES: dict[str, bool] = {
    "processed": False,
    "sent": False,
    "delivered": True,
    "dropped": True,
    "smtpDropped": False,
    "softBounced": True,
    "hardBounced": True,
    "opened": True,
    "clicked": True,
    "unsubscribed": True,
    "spam": True,
    "uniqueOpen": False,
    "uniqueClick": False,
}
"""Switch name → default on create (``NewWebhook``'s defaults)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SendPostType:
    code: int
    """``Event.type`` in SendPost's payload."""
    name: str
    """``Event.typeName`` in SendPost's payload, also the switch that selects it."""


SENDPOST_TYPES: dict[int, SendPostType] = {
    EventType.CSProcessed: SendPostType(0, "processed"),
    EventType.CSDropped: SendPostType(1, "dropped"),
    EventType.CSDelivered: SendPostType(2, "delivered"),
    EventType.CSSoftBounced: SendPostType(3, "softBounced"),
    EventType.CSHardBounced: SendPostType(4, "hardBounced"),
    EventType.CSOpen: SendPostType(5, "opened"),
    EventType.CSClick: SendPostType(6, "clicked"),
    EventType.CSUnsubscribe: SendPostType(7, "unsubscribed"),
    EventType.CSSpamReport: SendPostType(8, "spam"),
    EventType.CSSent: SendPostType(9, "sent"),
}
"""Custom SMTP type → SendPost webhook type. CSDeferred (61) is never stored, so never sent;
``smtpDropped`` (10) has no Custom SMTP counterpart (a relay failure is CSDropped)."""

UNIQUE_SWITCH = {EventType.CSOpen: "uniqueOpen", EventType.CSClick: "uniqueClick"}
"""Types whose first occurrence per message also matches a ``unique*`` switch."""


def wanted(switches: dict[str, bool], event_type: int, *, first_of_kind: bool) -> bool:
    """Whether a webhook with ``switches`` gets an event of ``event_type`` (``first_of_kind``:
    the message's first open or first click)."""
    kind = SENDPOST_TYPES.get(event_type)
    if kind is None:
        return False
    if switches.get(kind.name, False):
        return True
    unique = UNIQUE_SWITCH.get(EventType(event_type)) if event_type in UNIQUE_SWITCH else None
    return unique is not None and first_of_kind and switches.get(unique, False)


# --- signatures -------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-SendPost-Signature"
TIMESTAMP_HEADER = "X-SendPost-Timestamp"
EVENT_ID_HEADER = "X-SendPost-Event-Id"
WEBHOOK_ID_HEADER = "X-SendPost-Webhook-Id"
SIGNATURE_VERSION = "v1"
REPLAY_WINDOW = 300
"""Seconds a receiver should accept between ``X-SendPost-Timestamp`` and its own clock."""
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_PURPOSE = b"sendpost-platform webhook secret v1"
"""The ``crypto.SecretBox`` purpose that seals webhook secrets at rest."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-SendPost-Signature`` value: ``v1=`` + hex HMAC-SHA256 of ``"{timestamp}.{body}"``
    keyed with the webhook's secret (the whole string, prefix included, as UTF-8)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float, window: int
) -> bool:
    """A receiver's check (what docs/webhooks.md tells customers to do): the timestamp is an
    integer within ``window`` seconds of ``now`` and one of the header's comma-separated
    signatures matches."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > window:
        return False
    expected = sign(secret, int(timestamp), body)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature.split(","))


# --- health -------------------------------------------------------------------------------------

ACTIVE = "active"
DEGRADED = "degraded"
DISABLED = "disabled"


@dataclasses.dataclass(frozen=True, slots=True)
class Health:
    status: str
    failure_streak: int
    disabled_reason: str | None = None


def after_failure(streak: int, *, degrade_after: int, disable_after: int, problem: str) -> Health:
    """The health after one more failed attempt (``streak`` failures in a row before it)."""
    streak += 1
    if streak >= disable_after:
        return Health(
            DISABLED,
            streak,
            f"{streak} consecutive failed deliveries; the last: {problem}"[:500],
        )
    return Health(DEGRADED if streak >= degrade_after else ACTIVE, streak)


def after_success() -> Health:
    return Health(ACTIVE, 0)


# --- answers ------------------------------------------------------------------------------------


def is_transient(status: int | None) -> bool:
    """Worth an immediate retry inside one attempt (network failure, 408, 429, 5xx). Every
    failure, transient or not, is retried later on the declared schedule."""
    return status is None or status in (408, 429) or status >= 500


def retry_after(value: str | None, *, now: dt.datetime, cap: float) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP date), at most
    ``cap``; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return min(max(0.0, (when - now).total_seconds()), cap)


# --- payload ------------------------------------------------------------------------------------


def _ns(when: dt.datetime | None) -> int | None:
    return None if when is None else int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def event_key(event_id: int, event_type: int) -> str:
    """The payload's ``eventId``: the stored event and its type (an upgraded event, e.g. soft →
    hard bounce, is a new eventId; every retry and duplicate of one delivery carries the same)."""
    return f"cs-{event_id}-{event_type}"


@dataclasses.dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the platform knows of the message behind an event (from ``messages`` and the send
    request's stored content)."""

    uuid: str
    account_id: int
    subaccount_id: int | None
    sender: str
    recipient: str
    submitted_at: dt.datetime | None
    content: dict[str, object] | None
    webhook_endpoint: str | None = None


def payload(
    *,
    event_id: int,
    event_type: int,
    occurred_at: dt.datetime,
    recipient: str | None,
    smtp_code: int | None,
    description: str | None,
    details: dict[str, object] | None,
    message: MessageFacts,
) -> dict[str, object]:
    """SendPost's webhook payload (the SDK's ``WebhookObject``: ``event`` and ``emailMessage``)."""
    kind = SENDPOST_TYPES[event_type]
    content = message.content or {}
    groups = content.get("groups") if isinstance(content.get("groups"), list) else []
    metadata: dict[str, object] = {}
    if smtp_code is not None:
        metadata["smtpCode"] = smtp_code
    if description:
        metadata["smtpDescription"] = description
    if details and isinstance(details.get("url"), str):
        metadata["clickedUrl"] = details["url"]
    to = recipient or message.recipient
    sender: dict[str, object] = {"email": message.sender}
    if isinstance(content.get("fromName"), str) and content["fromName"]:
        sender["name"] = content["fromName"]
    email_message: dict[str, object] = {
        "messageID": message.uuid,
        "accountID": message.account_id,
        "subAccountID": message.subaccount_id,
        "submittedAt": _ns(message.submitted_at),
        "from": sender,
        "to": {"email": to},
        "groups": groups,
        "headers": content.get("headers") or {},
        "trackOpens": bool(content.get("trackOpens", False)),
        "trackClicks": bool(content.get("trackClicks", False)),
    }
    if isinstance(content.get("replyTo"), dict):
        email_message["replyTo"] = content["replyTo"]
    elif isinstance(content.get("replyTo"), str):
        email_message["replyTo"] = {"email": content["replyTo"]}
    if message.webhook_endpoint:
        email_message["webhookEndpoint"] = message.webhook_endpoint
    return {
        "event": {
            "eventId": event_key(event_id, event_type),
            "messageId": message.uuid,
            "type": kind.code,
            "typeName": kind.name,
            "from": message.sender,
            "to": to,
            "subject": content.get("subject") if isinstance(content.get("subject"), str) else "",
            "groups": groups,
            "submittedAt": _ns(message.submitted_at),
            "timestamp": _ns(occurred_at),
            "eventMetadata": metadata,
        },
        "emailMessage": email_message,
    }
