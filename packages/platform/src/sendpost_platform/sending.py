"""Accepting a send request: one message per recipient, routed, queued or dropped at once.

A request (:class:`SendRequest`, built and checked by ``api/send_body.py``) holds **copies**: one
per ``to`` recipient (its To header shows that recipient, its Cc header the recipient's ``cc``
and the request's top-level ``cc``), plus one for the top-level ``cc``/``bcc`` when there are any
(To shows the whole ``to`` list). Each **delivery** is one envelope recipient of one copy, with
the custom fields its copy is rendered with; an address gets at most one delivery per request
(the first place it appears).

:func:`submit` runs in one write transaction. It first refuses the whole request
(:class:`DomainNotProven`) when the account's sender domain has its return path verified but
not its own DKIM record: the return-path CNAME target is the same for every account, so only
the DKIM record, with a key generated for this account's domain alone, proves that the account
controls the domain. A domain another account proved stays unusable until this account
publishes and verifies its own record. Then, for every delivery it creates a message with its
own UUID (carrying the request's ``groups`` and ``webhookEndpoint``) and records
``CSProcessed``; then either queues it for relay (routed through the IP pool to a provider) or
drops it immediately with ``CSDropped`` (never retried), answering SendPost's ``errorCode``:

- 1: the recipient address is invalid;
- 2: the recipient is suppressed for the sub-account;
- 3: the sender domain has no verified return-path domain (reason exactly
  ``No verified return path domain configured for sender domain``).

A message that cannot be sent at all (too large, a template that does not parse) never gets
here: the API refuses it whole with 422.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from sendpost_wire import EventType
from sqlalchemy.engine import Connection

from sendpost_platform.domain import handlebars
from sendpost_platform.domain.addresses import Mailbox, is_address
from sendpost_platform.domain.routing import EmptyPoolError, Pool, choose_provider
from sendpost_platform.domain.suppression import normalize_address
from sendpost_platform.recorder import RECORDER
from sendpost_platform.smtp.mime import StoredAttachment
from sendpost_platform.smtp.prepare import sender_domain_of
from sendpost_platform.store import domains, events, messages, pools, providers, relay, suppressions

NO_RETURN_PATH = "No verified return path domain configured for sender domain"
SUPPRESSED = "Recipient is suppressed"
INVALID_RECIPIENT = "Invalid message: invalid recipient address"
SUBMITTED = "Email submitted successfully"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
"""Largest rendered message (subject, bodies, headers) per copy, attachments apart."""
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
"""Largest total of a request's attachments, decoded."""


class DomainNotProven(Exception):
    """The account has not proven that it controls its sender domain (its DKIM record)."""

    def __init__(self, domain: domains.SenderDomain) -> None:
        super().__init__(
            f"this account has not proven that it controls {domain.domain!r}: publish the DKIM"
            f" TXT record {domain.selector}._domainkey.{domain.domain} listed by"
            f" GET /api/v1/subaccount/domain/{domain.id}, then"
            f" POST /api/v1/subaccount/domain/{domain.id}/verify"
        )
        self.domain = domain


class ErrorCode(enum.IntEnum):
    """SendPost's ``errorCode`` values this platform answers."""

    queued = 0
    invalid_recipient = 1
    suppressed = 2
    domain_not_verified = 3


@dataclasses.dataclass(frozen=True)
class Copy:
    """What one copy's address headers show, and its recipient's custom fields."""

    to: Sequence[Mailbox]
    cc: Sequence[Mailbox] = ()
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "to": [m.to_json() for m in self.to if is_address(m.email)],
            "cc": [m.to_json() for m in self.cc if is_address(m.email)],
            "fields": dict(self.fields),
        }


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One envelope recipient: the copy it gets and its own custom fields (a cc or bcc entry's,
    over its copy's)."""

    address: str
    copy: int
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def fields_for(
    variables: Mapping[str, Any], copy_fields: Mapping[str, Any], own: Mapping[str, Any]
) -> Mapping[str, Any]:
    """The values a delivery's copy is rendered with: its own fields, then its copy's, then the
    request's ``templateVariables`` (each stored once, never merged into copies)."""
    return handlebars.Layers(own, copy_fields, variables)


@dataclasses.dataclass(frozen=True)
class SendRequest:
    from_email: str
    ippool: str
    copies: Sequence[Copy]
    deliveries: Sequence[Delivery]
    subject: str | None = None
    from_name: str | None = None
    reply_to: Mailbox | None = None
    text_body: str | None = None
    html_body: str | None = None
    pre_text: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    track_opens: bool = False
    track_clicks: bool = False
    groups: Sequence[str] = ()
    webhook_endpoint: str | None = None
    attachments: Sequence[StoredAttachment] = ()
    variables: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def to_each(cls, recipients: Sequence[Mailbox], **fields: Any) -> SendRequest:
        """A request with one copy per recipient and no custom fields (as the API builds for a
        ``to`` list without cc, bcc or customFields)."""
        copies = tuple(Copy((m,)) for m in recipients)
        deliveries = tuple(Delivery(m.email, i) for i, m in enumerate(recipients))
        return cls(copies=copies, deliveries=deliveries, **fields)

    def content(self) -> dict[str, Any]:
        """What the relay needs to prepare each message (``relay_worker`` reads it back): bcc
        appears only as deliveries, never in a copy's headers."""
        return {
            "version": 2,
            "from": self.from_email,
            "fromName": self.from_name,
            "replyTo": None if self.reply_to is None else self.reply_to.to_json(),
            "subject": self.subject,
            "textBody": self.text_body,
            "htmlBody": self.html_body,
            "preText": self.pre_text,
            "headers": dict(self.headers),
            "trackOpens": self.track_opens,
            "trackClicks": self.track_clicks,
            "attachments": [a.to_json() for a in self.attachments],
            "variables": dict(self.variables),
            "copies": [c.to_json() for c in self.copies],
            "deliveries": {
                normalize_address(d.address): {"copy": d.copy, "fields": dict(d.fields)}
                for d in self.deliveries
                if is_address(d.address)
            },
            "ippool": self.ippool,
        }


@dataclasses.dataclass(frozen=True)
class Submitted:
    to: str
    message_uuid: str
    submitted_at: dt.datetime
    error_code: ErrorCode
    message: str


def _live_pool(conn: Connection, pool: pools.StoredPool, account_id: int) -> Pool:
    """The pool without members whose provider was deleted."""
    live = {p.id for p in providers.list_providers(conn, account_id=account_id)}
    members = tuple(m for m in pool.members if int(m.provider_id) in live)
    return dataclasses.replace(pool.routing(), members=members)


def submit(
    conn: Connection,
    *,
    account_id: int,
    subaccount_id: int,
    request: SendRequest,
    pool: pools.StoredPool,
    now: dt.datetime,
) -> list[Submitted]:
    """Create, route and queue (or drop) one message per recipient; see the module docstring.
    Raises :class:`EmptyPoolError` when the pool has no live provider (nor, with
    ``shouldOverflow``, its overflow pool), :class:`DomainNotProven`
    when the account has not proven control of the sender domain."""
    sender_domain = sender_domain_of(request.from_email)
    domain = domains.find_domain(conn, account_id=account_id, domain=sender_domain)
    if domain is not None and domain.return_path_verified and not domain.dkim_verified:
        raise DomainNotProven(domain)
    routing = _live_pool(conn, pool, account_id)
    if not routing.members and pool.overflow.should and pool.overflow.pool_name:
        # SendPost's overflow: this pool is unavailable, route through the named one (one hop).
        target = pools.find_pool(conn, account_id=account_id, name=pool.overflow.pool_name)
        if target is not None:
            pool, routing = target, _live_pool(conn, target, account_id)
    if not routing.members:
        raise EmptyPoolError("the IP pool has no providers")
    recipients = [d.address for d in request.deliveries]
    blocked = suppressions.suppressed_among(conn, subaccount_id, recipients)
    request_id: int | None = None
    sequence = pools.next_sequence(conn, pool.id, len(recipients))
    groups = list(request.groups) or None
    results = []
    group: list[events.NewEvent] = []
    for index, recipient in enumerate(recipients):
        drop: tuple[ErrorCode, str] | None = None
        if not is_address(recipient):
            drop = (ErrorCode.invalid_recipient, INVALID_RECIPIENT)
        elif domain is None or not domain.return_path_verified:
            drop = (ErrorCode.domain_not_verified, NO_RETURN_PATH)
        elif normalize_address(recipient) in blocked:
            drop = (ErrorCode.suppressed, SUPPRESSED)
        provider_id: int | None = None
        if drop is None:
            provider_id = int(
                choose_provider(
                    routing,
                    sequence=sequence + index,
                    recipient=recipient,
                    sender_domain=sender_domain,
                )
            )
        message = messages.insert_message(
            conn,
            account_id=account_id,
            subaccount_id=subaccount_id,
            recipient=recipient,
            sender=request.from_email,
            now=now,
            provider_id=provider_id,
            state="queued" if drop is None else "dropped",
            groups=groups,
            webhook_endpoint=request.webhook_endpoint,
        )
        group.append(message_event(message, EventType.CSProcessed, now))
        if drop is None:
            assert domain is not None
            assert provider_id is not None
            if request_id is None:
                request_id = relay.insert_send_request(
                    conn,
                    account_id=account_id,
                    subaccount_id=subaccount_id,
                    content=request.content(),
                    now=now,
                )
            relay.enqueue(
                conn,
                message_uuid=message.uuid,
                request_id=request_id,
                provider_id=provider_id,
                domain_id=domain.id,
                now=now,
            )
            results.append(Submitted(recipient, message.uuid, now, ErrorCode.queued, SUBMITTED))
        else:
            code, reason = drop
            group.append(message_event(message, EventType.CSDropped, now, reason=reason))
            results.append(Submitted(recipient, message.uuid, now, code, reason))
    RECORDER.record(conn, group)
    return results


def message_event(
    message: messages.Message,
    event_type: EventType,
    now: dt.datetime,
    *,
    reason: str | None = None,
    smtp_code: int | None = None,
    description: str | None = None,
    source: str = "api",
    details: dict[str, Any] | None = None,
) -> events.NewEvent:
    """The event ``event_type`` of a platform message (for the recorder)."""
    return events.NewEvent(
        message_uuid=message.uuid,
        account_id=message.account_id,
        subaccount_id=message.subaccount_id,
        provider_id=message.provider_id,
        recipient=message.recipient,
        event_type=int(event_type),
        occurred_at=now,
        received_at=now,
        source=source,
        reason=reason,
        smtp_code=smtp_code,
        description=description if description is not None else reason,
        details=details,
    )
