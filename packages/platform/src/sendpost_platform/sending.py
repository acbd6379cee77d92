"""Accepting a send request: one message per recipient, routed, queued or dropped at once.

:func:`submit` runs in one write transaction. It first refuses the whole request
(:class:`DomainNotProven`) when the account's sender domain has its return path verified but
not its own DKIM record: the return-path CNAME target is the same for every account, so only
the DKIM record, with a key generated for this account's domain alone, proves that the account
controls the domain. A domain another account proved stays unusable until this account
publishes and verifies its own record. Then, for every distinct recipient (``to``, then ``cc``,
then ``bcc``) it creates a message with its own UUID and records ``CSProcessed``; then either
queues it for relay (routed through the IP pool to a provider) or drops it immediately with
``CSDropped`` (never retried) when:

- the sender domain has no verified return-path domain (reason exactly
  ``No verified return path domain configured for sender domain``);
- the recipient is suppressed for the sub-account;
- the message is invalid (the recipient address, or the whole message is too large).

Each result carries ``errorCode`` 0 when queued, else one of :class:`ErrorCode`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Sequence
from typing import Any

from sendpost_wire import EventType
from sqlalchemy.engine import Connection

from sendpost_platform.domain.addresses import Mailbox, is_address
from sendpost_platform.domain.routing import EmptyPoolError, Pool, choose_provider
from sendpost_platform.domain.suppression import normalize_address
from sendpost_platform.recorder import RECORDER
from sendpost_platform.smtp.prepare import sender_domain_of
from sendpost_platform.store import domains, events, messages, pools, providers, relay, suppressions

NO_RETURN_PATH = "No verified return path domain configured for sender domain"
SUPPRESSED = "Recipient is suppressed"
INVALID_RECIPIENT = "Invalid message: invalid recipient address"
TOO_LARGE = "Invalid message: larger than the size limit"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class DomainNotProven(Exception):
    """The account has not proven that it controls its sender domain (its DKIM record)."""

    def __init__(self, domain: domains.SenderDomain) -> None:
        super().__init__(
            f"this account has not proven that it controls {domain.domain!r}: publish the DKIM"
            f" TXT record {domain.selector}._domainkey.{domain.domain} listed by"
            f" GET /api/v1/domains/{domain.id}, then POST /api/v1/domains/{domain.id}/verify"
        )
        self.domain = domain


class ErrorCode(enum.IntEnum):
    queued = 0
    no_verified_return_path = 1
    suppressed = 2
    invalid_message = 3


@dataclasses.dataclass(frozen=True)
class SendRequest:
    from_email: str
    subject: str
    ippool: str
    to: Sequence[Mailbox]
    from_name: str | None = None
    cc: Sequence[Mailbox] = ()
    bcc: Sequence[Mailbox] = ()
    reply_to: Mailbox | None = None
    text_body: str | None = None
    html_body: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    track_opens: bool = False
    track_clicks: bool = False

    def content(self) -> dict[str, Any]:
        """What the relay needs to prepare each message: bcc is never rendered, nor are the
        invalid addresses that are dropped at once."""
        return {
            "from": self.from_email,
            "fromName": self.from_name,
            "to": [m.to_json() for m in self.to if is_address(m.email)],
            "cc": [m.to_json() for m in self.cc if is_address(m.email)],
            "replyTo": None if self.reply_to is None else self.reply_to.to_json(),
            "subject": self.subject,
            "textBody": self.text_body,
            "htmlBody": self.html_body,
            "headers": dict(self.headers),
            "trackOpens": self.track_opens,
            "trackClicks": self.track_clicks,
        }

    def size(self) -> int:
        parts = [self.subject, self.text_body or "", self.html_body or ""]
        parts += [f"{k}: {v}" for k, v in self.headers.items()]
        return sum(len(p.encode()) for p in parts)

    def recipients(self) -> list[str]:
        seen: set[str] = set()
        ordered = []
        for mailbox in (*self.to, *self.cc, *self.bcc):
            key = normalize_address(mailbox.email)
            if key not in seen:
                seen.add(key)
                ordered.append(mailbox.email.strip())
        return ordered


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
    Raises :class:`EmptyPoolError` when the pool has no live provider, :class:`DomainNotProven`
    when the account has not proven control of the sender domain."""
    sender_domain = sender_domain_of(request.from_email)
    domain = domains.find_domain(conn, account_id=account_id, domain=sender_domain)
    if domain is not None and domain.return_path_verified and not domain.dkim_verified:
        raise DomainNotProven(domain)
    routing = _live_pool(conn, pool, account_id)
    if not routing.members:
        raise EmptyPoolError("the IP pool has no providers")
    recipients = request.recipients()
    blocked = suppressions.suppressed_among(conn, subaccount_id, recipients)
    too_large = request.size() > MAX_MESSAGE_BYTES
    request_id: int | None = None
    sequence = pools.next_sequence(conn, pool.id, len(recipients))
    results = []
    group: list[events.NewEvent] = []
    for index, recipient in enumerate(recipients):
        drop: tuple[ErrorCode, str] | None = None
        if not is_address(recipient):
            drop = (ErrorCode.invalid_message, INVALID_RECIPIENT)
        elif too_large:
            drop = (ErrorCode.invalid_message, TOO_LARGE)
        elif domain is None or not domain.return_path_verified:
            drop = (ErrorCode.no_verified_return_path, NO_RETURN_PATH)
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
            results.append(Submitted(recipient, message.uuid, now, ErrorCode.queued, "queued"))
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
