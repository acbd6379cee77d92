"""The relay job: claims due messages, prepares and relays them, records the outcome.

One pass (:meth:`RelayJob.run_once`), per provider with due messages:

1. claim up to ``relay_batch_size`` messages within the provider's ``maxRatePerHour`` (a lease of
   ``relay_lease``; see ``store/relay.py``);
2. prepare each (``smtp/prepare.py``: MIME, tracking, DKIM) and relay it through the shared
   :class:`~sendpost_platform.smtp.relay.RelayClient` (connections reused), concurrently, each
   send bounded by half the lease and started only in the lease's first quarter (messages still
   waiting for a connection then are released unsent), so a live worker, however slow its
   provider, always reports before its claim expires;
3. record the outcomes, RECORD_EVERY at a time as they come in, each group in one
   transaction: 2xx → ``CSSent`` with code and reply; a failure →
   retry ``relay_retry_schedule[n-1]`` after attempt *n*, and once the schedule is exhausted
   ``CSDropped`` with the last code and reply. A message that cannot be prepared (its domain or
   provider is gone, its key cannot be opened) is dropped at once.

Delivery is at-least-once: a worker that dies after the provider accepted DATA but before step 3
committed leaves the claim to expire, and the message is relayed again after ``relay_lease``.
That window (at most RECORD_EVERY further replies plus one commit) is the only way a message can
be sent twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import secrets
import socket
from typing import Any

from sendpost_wire import EventType

from sendpost_platform.clock import Clock
from sendpost_platform.config import Settings
from sendpost_platform.crypto import CryptoError, SecretBox
from sendpost_platform.domain.addresses import mailboxes, optional_mailbox
from sendpost_platform.domain.tracking import tracking_secret
from sendpost_platform.egress import EgressPolicy
from sendpost_platform.smtp import dkim
from sendpost_platform.smtp.prepare import (
    DomainSigner,
    PreparedMessage,
    PrepareOptions,
    StoredMessage,
    prepare,
)
from sendpost_platform.smtp.relay import ProviderEndpoint, RelayClient, RelayResult
from sendpost_platform.store import Store, domains, events, providers, relay

log = logging.getLogger("sendpost_platform.relay")

RECORD_EVERY = 50
"""Outcomes committed together while a claimed batch is still being relayed."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclasses.dataclass(frozen=True)
class _Outcome:
    claimed: relay.ClaimedMessage
    result: RelayResult
    retryable: bool = True


class _Unpreparable(Exception):
    """The message cannot be built (missing domain or provider, unreadable key)."""


class RelayJob:
    name = "relay"

    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        *,
        client: RelayClient | None = None,
        worker_id: str | None = None,
        record_every: int = RECORD_EVERY,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()
        self.record_every = record_every
        self.client = client or RelayClient(
            max_connections=settings.relay_connections_per_provider,
            egress=EgressPolicy.from_settings(settings),
        )
        self._passwords = SecretBox(settings.secret_key)
        self._keys = SecretBox(settings.secret_key, purpose=domains.KEY_PURPOSE)
        self._options = PrepareOptions(
            public_base_url=settings.public_base_url,
            tracking_secret=tracking_secret(settings.secret_key),
            unsubscribe_mailto=settings.unsubscribe_mailto,
        )
        self._signers: dict[int, DomainSigner] = {}

    async def close(self) -> None:
        await self.client.close()

    async def run_once(self) -> int:
        provider_ids = await asyncio.to_thread(self._due_providers)
        done = 0
        for provider_id in provider_ids:
            done += await self._relay_provider(provider_id)
        return done

    def _due_providers(self) -> list[int]:
        with self.store.read() as conn:
            return relay.due_provider_ids(conn, self.clock.now())

    async def _relay_provider(self, provider_id: int) -> int:
        # A send may start only in the first quarter of the lease and lasts at most half of it,
        # so every outcome is recorded while this worker still holds the claim, however slow the
        # provider: messages still waiting for a connection then are handed back unsent.
        start_by = self.clock.now() + dt.timedelta(seconds=self.settings.relay_lease / 4)
        claimed, context = await asyncio.to_thread(self._claim, provider_id)
        if not claimed:
            return 0
        endpoint, contents = context
        # As many messages in flight as there are connections: each is prepared just before
        # its turn, so preparing one overlaps with the provider's replies for the others.
        in_flight = asyncio.Semaphore(self.settings.relay_connections_per_provider)

        # Outcomes are committed every `record_every` messages while the rest are still being
        # relayed, which keeps the at-least-once window (accepted but not yet recorded) short.
        unrecorded: list[_Outcome] = []
        unsent: list[relay.ClaimedMessage] = []

        async def send(message: relay.ClaimedMessage) -> None:
            async with in_flight:
                if self.clock.now() >= start_by:
                    unsent.append(message)
                    return
                unrecorded.append(await self._send(message, endpoint, contents))
            if len(unrecorded) >= self.record_every:
                ready = unrecorded[:]
                unrecorded.clear()
                await asyncio.to_thread(self._record, ready)

        await asyncio.gather(*(send(m) for m in claimed))
        if unrecorded:
            await asyncio.to_thread(self._record, unrecorded)
        if unsent:
            await asyncio.to_thread(self._release, unsent)
        return len(claimed) - len(unsent)

    def _release(self, unsent: list[relay.ClaimedMessage]) -> None:
        with self.store.write() as conn:
            relay.release(conn, unsent, worker_id=self.worker_id)

    def _claim(
        self, provider_id: int
    ) -> tuple[list[relay.ClaimedMessage], tuple[ProviderEndpoint | None, dict[int, Any]]]:
        lease = dt.timedelta(seconds=self.settings.relay_lease)
        with self.store.write() as conn:
            claimed = relay.claim(
                conn,
                provider_id=provider_id,
                worker_id=self.worker_id,
                now=self.clock.now(),
                lease=lease,
                limit=self.settings.relay_batch_size,
            )
            if not claimed:
                return [], (None, {})
            provider = providers.get_provider_by_id(conn, provider_id)
            contents = relay.request_contents(conn, {m.request_id for m in claimed})
            for domain_id in {m.domain_id for m in claimed} - set(self._signers):
                domain = domains.get_domain_by_id(conn, domain_id)
                if domain is not None:
                    self._signers[domain_id] = self._signer(domain)
        return claimed, (self._endpoint(provider), contents)

    def _signer(self, domain: domains.SenderDomain) -> DomainSigner:
        try:
            private = self._keys.open(domain.dkim_private_key).encode("ascii")
        except CryptoError:
            private = b""
        key = dkim.DkimKey(
            dkim.DkimAlgorithm(domain.dkim_algorithm), private, domain.dkim_public_key
        )
        return DomainSigner(domain.domain, domain.selector, key)

    def _endpoint(self, provider: providers.Provider | None) -> ProviderEndpoint | None:
        if provider is None or provider.deleted_at is not None:
            return None
        password = None
        if provider.password_encrypted is not None:
            try:
                password = self._passwords.open(provider.password_encrypted)
            except CryptoError:
                return None
        return ProviderEndpoint(
            provider_id=str(provider.id),
            host=provider.host,
            port=provider.port,
            security=provider.security,
            username=provider.username,
            password=password,
            verify_certificate=provider.verify_certificate,
            timeout_seconds=self.settings.relay_smtp_timeout,
        )

    def _prepare(
        self, claimed: relay.ClaimedMessage, content: dict[str, Any] | None
    ) -> PreparedMessage:
        signer = self._signers.get(claimed.domain_id)
        if content is None or signer is None or not signer.key.private_key:
            raise _Unpreparable("the sender domain or its DKIM key is gone")
        stored = StoredMessage(
            uuid=claimed.message_uuid,
            account_id=str(claimed.account_id),
            subaccount_id=str(claimed.subaccount_id),
            provider_id=str(claimed.provider_id),
            recipient=claimed.recipient,
            from_email=content["from"],
            from_name=content.get("fromName"),
            to=mailboxes(content.get("to")),
            cc=mailboxes(content.get("cc")),
            reply_to=optional_mailbox(content.get("replyTo")),
            subject=content["subject"],
            submitted_at=claimed.submitted_at,
            text_body=content.get("textBody"),
            html_body=content.get("htmlBody"),
            headers=dict(content.get("headers") or {}),
            track_opens=bool(content.get("trackOpens")),
            track_clicks=bool(content.get("trackClicks")),
        )
        return prepare(stored, signer, self._options)

    async def _send(
        self,
        claimed: relay.ClaimedMessage,
        endpoint: ProviderEndpoint | None,
        contents: dict[int, Any],
    ) -> _Outcome:
        if endpoint is None:
            return _Outcome(
                claimed, RelayResult(False, "prepare", None, "provider unavailable"), False
            )
        try:
            prepared = self._prepare(claimed, contents.get(claimed.request_id))
        except (_Unpreparable, KeyError, ValueError) as exc:
            return _Outcome(claimed, RelayResult(False, "prepare", None, str(exc)), False)
        try:
            async with asyncio.timeout(self.settings.relay_lease / 2):
                result = await self.client.send(endpoint, prepared)
        except TimeoutError:
            result = RelayResult(False, "timeout", None, "relay did not finish in time")
        return _Outcome(claimed, result)

    def _record(self, outcomes: list[_Outcome]) -> None:
        schedule = self.settings.relay_retry_schedule
        with self.store.write() as conn:
            now = self.clock.now()
            planned: dict[str, tuple[_Outcome, relay.Outcome]] = {}
            for outcome in outcomes:
                claimed, result = outcome.claimed, outcome.result
                final = result.ok or not outcome.retryable or claimed.attempt > len(schedule)
                retry_at = (
                    None if final else now + dt.timedelta(seconds=schedule[claimed.attempt - 1])
                )
                planned[claimed.message_uuid] = (
                    outcome,
                    relay.Outcome(claimed, result.ok, result.code, result.reply, retry_at),
                )
            kept = relay.finish_many(
                conn, [p[1] for p in planned.values()], worker_id=self.worker_id, now=now
            )
            lost = len(planned) - len(kept)
            if lost:
                log.warning("%d claim(s) expired before their outcome was recorded", lost)
            relay.insert_events(
                conn,
                [
                    self._event(planned[k.claimed.message_uuid][0], now)
                    for k in kept
                    if k.next_attempt_at is None
                ],
            )

    def _event(self, outcome: _Outcome, now: dt.datetime) -> events.NewEvent:
        claimed, result = outcome.claimed, outcome.result
        if result.ok:
            event_type, reason, description = EventType.CSSent, None, result.reply
        else:
            event_type, description = EventType.CSDropped, result.summary()
            reason = (
                f"Relay failed after {claimed.attempt} attempts"
                if outcome.retryable
                else "Invalid message: cannot be prepared for relay"
            )
        return events.NewEvent(
            message_uuid=claimed.message_uuid,
            account_id=claimed.account_id,
            subaccount_id=claimed.subaccount_id,
            provider_id=claimed.provider_id,
            recipient=claimed.recipient,
            event_type=int(event_type),
            occurred_at=now,
            received_at=now,
            source="relay",
            smtp_code=result.code,
            smtp_command=result.stage if result.stage in ("MAIL", "RCPT", "DATA") else None,
            reason=reason,
            description=description,
            details={"attempts": claimed.attempt, "stage": result.stage},
        )
