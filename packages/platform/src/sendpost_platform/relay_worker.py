"""The relay job: claims due messages, prepares and relays them, records the outcome.

One pass (:meth:`RelayJob.run_once`), per provider with due messages:

1. claim up to ``relay_batch_size`` messages within the provider's ``maxRatePerHour`` (a lease of
   ``relay_lease``; see ``store/relay.py``);
2. prepare each (``smtp/prepare.py``: MIME, tracking, DKIM) and relay it through the shared
   :class:`~sendpost_platform.smtp.relay.RelayClient` (connections reused), concurrently over
   ``relay_connections_per_provider`` lanes, one per connection, one message at a time each;
3. commit each outcome: 2xx → ``CSSent`` with code and reply; a failure → retry
   ``relay_retry_schedule[n-1]`` after attempt *n*, and once the schedule is exhausted
   ``CSDropped`` with the last code and reply. A message that cannot be prepared (its domain or
   provider is gone, its key cannot be opened) is dropped at once, and so is one whose recipient
   the sub-account suppressed after it was accepted (checked at the claim: reason
   ``Recipient is suppressed``). The outcomes of all lanes
   waiting are committed in one transaction (:class:`_GroupCommit`). A lane's next message goes
   through MAIL, RCPT and DATA meanwhile, but its data is written only once that commit is done.

Timing within the lease (``L``, measured from just before the claim): a send starts only before
``L/4`` and is cut off after ``L/2``; its message data is written only before ``3L/4`` (checked
after the server's ``354``, so a process paused past its lease withholds the data and closes the
connection); messages not started in time are handed back unsent. So a live worker, however slow
its provider or however long it was paused, never sends a message another worker may have
claimed meanwhile.

Delivery is at-least-once, and the window is what SMTP forces: a worker that dies after the
provider accepted the data but before the outcome was committed leaves the claim to expire, and
the message is relayed again after ``relay_lease``. A lane writes no data while its previous
outcome is uncommitted, so at most ``relay_connections_per_provider`` messages per worker are
ever in that state: a crash re-sends at most that many.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sendpost_wire import EventType

from sendpost_platform.clock import Clock
from sendpost_platform.config import Settings
from sendpost_platform.crypto import CryptoError, SecretBox
from sendpost_platform.domain.addresses import mailboxes, optional_mailbox
from sendpost_platform.domain.suppression import normalize_address
from sendpost_platform.domain.tracking import tracking_secret
from sendpost_platform.egress import EgressPolicy
from sendpost_platform.recorder import RECORDER
from sendpost_platform.sending import SUPPRESSED, fields_for
from sendpost_platform.smtp import dkim
from sendpost_platform.smtp.mime import StoredAttachment
from sendpost_platform.smtp.prepare import (
    DomainSigner,
    PreparedMessage,
    PrepareOptions,
    StoredMessage,
    prepare,
)
from sendpost_platform.smtp.relay import ProviderEndpoint, RelayClient, RelayResult
from sendpost_platform.store import Store, domains, events, providers, relay, suppressions
from sendpost_platform.store.reports import RELAY_FAILED

SUPPRESSED_STAGE = "suppressed"
"""The stage of a claimed message dropped because its recipient is now suppressed."""


def _suppressed(conn: Any, claimed: list[relay.ClaimedMessage]) -> set[str]:
    """UUIDs of the claimed messages whose recipient the sub-account has suppressed by now."""
    by_sub: dict[int, list[relay.ClaimedMessage]] = collections.defaultdict(list)
    for message in claimed:
        by_sub[message.subaccount_id].append(message)
    found: set[str] = set()
    for sub_id, batch in by_sub.items():
        blocked = suppressions.suppressed_among(conn, sub_id, [m.recipient for m in batch])
        found |= {m.message_uuid for m in batch if normalize_address(m.recipient) in blocked}
    return found


log = logging.getLogger("sendpost_platform.relay")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclasses.dataclass(frozen=True)
class _Outcome:
    claimed: relay.ClaimedMessage
    result: RelayResult
    retryable: bool = True


class _GroupCommit:
    """Commits outcomes as they come, all those waiting in one transaction.

    :meth:`submit` returns a future done once the outcome is durable. While one transaction runs
    (in a thread), the outcomes submitted meanwhile wait and go together in the next one, so
    with ``n`` connections a commit carries up to ``n`` outcomes and costs one fsync, not ``n``.
    The first failure is kept in :attr:`error`; the futures of its group fail with it.
    """

    def __init__(self, record: Callable[[list[_Outcome]], None]) -> None:
        self._record = record
        self._waiting: list[tuple[_Outcome, asyncio.Future[None]]] = []
        self._running: asyncio.Task[None] | None = None
        self.error: Exception | None = None

    def submit(self, outcome: _Outcome) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((outcome, done))
        if self._running is None:
            self._running = asyncio.create_task(self._drain())
        return done

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    await asyncio.to_thread(self._record, [outcome for outcome, _ in group])
                except Exception as exc:
                    self.error = self.error or exc
                    for _, done in group:
                        done.set_exception(exc)
                        done.exception()  # reported through `error`; not "never retrieved"
                except BaseException:
                    for _, done in group:
                        done.cancel()
                    raise
                else:
                    for _, done in group:
                        done.set_result(None)
        finally:
            self._running = None


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
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()
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
        # and its data is written only in the first three quarters, so every outcome is recorded
        # while this worker still holds the claim, however slow the provider or however long
        # the process was paused: messages still waiting for a connection then are handed back.
        claimed_at = self.clock.now()
        lease = dt.timedelta(seconds=self.settings.relay_lease)
        start_by = claimed_at + lease / 4
        data_by = claimed_at + lease * 3 / 4
        claimed, context = await asyncio.to_thread(self._claim, provider_id)
        if not claimed:
            return 0
        endpoint, contents, suppressed = context
        # One lane per connection, each relaying one message at a time. A lane writes a
        # message's data only once its previous message's outcome is committed (MAIL, RCPT and
        # DATA go ahead meanwhile), so at most one message per lane is ever accepted by the
        # provider and not yet recorded: that is all a crash can send twice. The outcomes of all
        # lanes are committed in groups (`_GroupCommit`), which keeps the throughput.
        waiting = collections.deque(claimed)
        committer = _GroupCommit(self._record)
        unsent: list[relay.ClaimedMessage] = []

        async def lane() -> None:
            previous: asyncio.Future[None] | None = None

            async def may_send_data() -> bool:
                if previous is not None and not previous.done():
                    await asyncio.wait([previous])
                # Nothing is awaited from here to the write of the data.
                return committer.error is None and self.clock.now() < data_by

            while waiting:
                message = waiting.popleft()
                if committer.error is not None or self.clock.now() >= start_by:
                    unsent.append(message)
                    continue
                ready = self._ready(message, endpoint, contents, suppressed)
                if isinstance(ready, _Outcome):
                    outcome = ready
                else:
                    assert endpoint is not None
                    outcome = await self._send(message, endpoint, ready, may_send_data)
                    if outcome.result.withheld:
                        unsent.append(message)
                        continue
                previous = committer.submit(outcome)
            if previous is not None:
                await asyncio.wait([previous])

        lanes = min(self.settings.relay_connections_per_provider, len(claimed))
        errors = [
            e
            for e in await asyncio.gather(*(lane() for _ in range(lanes)), return_exceptions=True)
            if e is not None
        ]
        try:
            if unsent:
                await asyncio.to_thread(self._release, unsent)
        finally:
            if committer.error is not None or errors:
                raise committer.error or errors[0]
        return len(claimed) - len(unsent)

    def _release(self, unsent: list[relay.ClaimedMessage]) -> None:
        with self.store.write() as conn:
            relay.release(conn, unsent, worker_id=self.worker_id)

    def _claim(
        self, provider_id: int
    ) -> tuple[
        list[relay.ClaimedMessage], tuple[ProviderEndpoint | None, dict[int, Any], set[str]]
    ]:
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
                return [], (None, {}, set())
            provider = providers.get_provider_by_id(conn, provider_id)
            contents = relay.request_contents(conn, {m.request_id for m in claimed})
            for domain_id in {m.domain_id for m in claimed} - set(self._signers):
                domain = domains.get_domain_by_id(conn, domain_id)
                if domain is not None:
                    self._signers[domain_id] = self._signer(domain)
            suppressed = _suppressed(conn, claimed)
        return claimed, (self._endpoint(provider), contents, suppressed)

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
        stored = stored_message(claimed, content)
        return prepare(stored, signer, self._options)

    def _ready(
        self,
        claimed: relay.ClaimedMessage,
        endpoint: ProviderEndpoint | None,
        contents: dict[int, Any],
        suppressed: set[str],
    ) -> PreparedMessage | _Outcome:
        """The message to send, or the outcome of a message that cannot be sent at all (its
        recipient was suppressed since it was accepted, say)."""
        if claimed.message_uuid in suppressed:
            return _Outcome(claimed, RelayResult(False, SUPPRESSED_STAGE, None, SUPPRESSED), False)
        if endpoint is None:
            return _Outcome(
                claimed, RelayResult(False, "prepare", None, "provider unavailable"), False
            )
        try:
            return self._prepare(claimed, contents.get(claimed.request_id))
        except (_Unpreparable, KeyError, ValueError) as exc:
            return _Outcome(claimed, RelayResult(False, "prepare", None, str(exc)), False)

    async def _send(
        self,
        claimed: relay.ClaimedMessage,
        endpoint: ProviderEndpoint,
        prepared: PreparedMessage,
        may_send_data: Callable[[], Awaitable[bool]],
    ) -> _Outcome:
        try:
            async with asyncio.timeout(self.settings.relay_lease / 2):
                result = await self.client.send(endpoint, prepared, may_send_data=may_send_data)
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
            RECORDER.record(
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
                f"{RELAY_FAILED} {claimed.attempt} attempts"
                if outcome.retryable
                else SUPPRESSED
                if result.stage == SUPPRESSED_STAGE
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


def stored_message(claimed: relay.ClaimedMessage, content: dict[str, Any]) -> StoredMessage:
    """The message to prepare for one claimed recipient from its request's stored content
    (``sending.SendRequest.content``): the recipient's copy (To and Cc) and custom fields.
    Content written before copies existed (no ``version``) shows the request's ``to`` and ``cc``
    as they were."""
    fields: Mapping[str, Any]
    if content.get("version") == 2:
        delivery = content["deliveries"][normalize_address(claimed.recipient)]
        copy = content["copies"][delivery["copy"]]
        to, cc = copy["to"], copy["cc"]
        fields = fields_for(content["variables"], copy["fields"], delivery["fields"])
    else:
        to, cc, fields = content.get("to"), content.get("cc"), {}
    return StoredMessage(
        uuid=claimed.message_uuid,
        account_id=str(claimed.account_id),
        subaccount_id=str(claimed.subaccount_id),
        provider_id=str(claimed.provider_id),
        recipient=claimed.recipient,
        from_email=content["from"],
        from_name=content.get("fromName"),
        to=mailboxes(to),
        cc=mailboxes(cc),
        reply_to=optional_mailbox(content.get("replyTo")),
        subject=content.get("subject"),
        submitted_at=claimed.submitted_at,
        text_body=content.get("textBody"),
        html_body=content.get("htmlBody"),
        headers=dict(content.get("headers") or {}),
        track_opens=bool(content.get("trackOpens")),
        track_clicks=bool(content.get("trackClicks")),
        fields=fields,
        pre_text=content.get("preText"),
        attachments=tuple(StoredAttachment.from_json(a) for a in content.get("attachments") or ()),
    )
