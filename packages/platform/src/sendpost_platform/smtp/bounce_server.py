"""The bounce processor: an SMTP server receiving delivery status notifications (DSNs) sent to
the platform's return paths, ``bounces+{uuid}+{subAccountId}@sp-bounce.{domain}``.

Conversation (replies are part of the contract; tests pin them down):

- ``RCPT TO``: only an address that names an existing message of that sub-account, on the
  message's own return-path domain (``domain/bounces.py``). Anything else: ``550 5.1.1
  <address>: <why>`` (not a bounce address / unknown message / other sub-account / other
  domain). More than :data:`MAX_RECIPIENTS` per transaction: ``452 4.5.3``. A database
  failure: ``451 4.3.0`` (the sender retries later).
- ``DATA``: over the size limit → ``552`` (aiosmtpd, also at ``MAIL FROM ... SIZE=``). Otherwise
  the message is parsed with :func:`~sendpost_platform.smtp.dsn.parse_report` and, in one
  transaction, for each accepted envelope recipient (each names a message):

  * recipient blocks with ``Action: delayed`` (and ``delivered``, ``relayed``, ``expanded``)
    are counted (``bounce.delayed`` ...) and ignored;
  * each ``failed`` block about the message's recipient is classified with
    :func:`~sendpost_platform.domain.classify.classify` and stored as CSHardBounced or
    CSSoftBounced, source ``dsn``, through the event recorder (``recorder.py``)
    — the very one agent processing uses, so an agent report and a DSN for the same
    (message, recipient) deduplicate together (first kept, the other merged, hard upgrades
    soft, soft never overwrites hard). The event keeps the reason, status, reply code, SMTP
    command and the raw diagnostic; the DSN fields are in ``details``. A hard bounce that
    becomes the event of record suppresses the recipient in the same transaction;
  * a message that is no recognisable bounce (or that the parser fails on) is kept whole in
    ``unparsed_bounces`` and counted (``bounce.unparsed``): it is answered 250 but never lost;
    unless its provider's quota of unparsed bytes per 24 h is used up: ``452 4.3.1``, counted
    (``bounce.unparsed_over_quota``), not stored.

  The answer is ``250`` only after that transaction committed; if it fails, ``451 4.3.0``.
- Any unexpected error: ``451 4.3.0 Internal error`` (logged; nothing of it told to the peer).
- Connections and sessions are bounded (``smtp/bounce_guard.py``): ``421`` beyond the caps,
  after the idle timeout and the session limit, and past :data:`COMMAND_CALL_LIMITS`.

The message UUID comes from the envelope address, never from the report (whose returned headers
may be missing or forged); the report only says which recipient failed and why. Counters are
per provider (``store/counters.py``); :class:`BounceStats` keeps in-process totals, which are
logged when the server stops.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import datetime as dt
import functools
import logging
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from aiosmtpd.smtp import SMTP, Envelope, Session
from sendpost_wire import EventType
from sqlalchemy.engine import Connection

from sendpost_platform.clock import Clock
from sendpost_platform.config import Settings
from sendpost_platform.domain.bounces import Attributed, attribute, parse_bounce_address, rejection
from sendpost_platform.domain.classify import Classifier, classify
from sendpost_platform.errors import ConfigError, StoreError
from sendpost_platform.recorder import RECORDER, HardBounceHook, Recorder
from sendpost_platform.smtp.bounce_guard import (
    ConnectionGate,
    Doorman,
    GuardedSMTP,
    Limits,
    Pacer,
    RefusalLog,
)
from sendpost_platform.smtp.dsn import DsnRecipient, DsnReport, parse_report
from sendpost_platform.store import Store, counters, messages
from sendpost_platform.store import bounces as bounce_store
from sendpost_platform.store import events as event_store

log = logging.getLogger("sendpost_platform.bounces")
_T = TypeVar("_T")

SOURCE_DSN = "dsn"
MAX_RECIPIENTS = 100
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
UNPARSED_QUOTA_WINDOW = dt.timedelta(hours=24)
COMMAND_CALL_LIMITS = {"MAIL": 1000, "RCPT": 5000, "DATA": 1000, "RSET": 1000, "*": 50}
"""Commands one session may send (aiosmtpd answers ``421 4.7.0`` and closes beyond)."""
STORE_THREADS = 2
"""Threads the bounce server's store calls run on (its own, not the event loop's default)."""
_TEMPORARY = "451 4.3.0 Temporary storage failure, please try again later"
_INTERNAL = "451 4.3.0 Internal error, please try again later"
_OVER_QUOTA = "452 4.3.1 Storage quota for unrecognised bounces exceeded, please try again later"


@dataclasses.dataclass
class BounceStats:
    """In-process totals since the server started (the database counters are authoritative)."""

    rejected_recipients: int = 0
    messages: int = 0
    events: int = 0
    ignored: int = 0
    unparsed: int = 0
    over_quota: int = 0
    failures: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Processed:
    """What one received message produced."""

    recorded: dict[str, int]
    """Outcome of each stored report: ``inserted``, ``merged``, ``duplicate``, ``upgraded``."""
    ignored: int
    """Recipient blocks that were not terminal or not about the message."""
    unparsed_id: int | None
    """Row of ``unparsed_bounces`` when the message was kept unparsed."""
    over_quota: bool = False
    """The message was no bounce and its provider's unparsed quota is used up: not kept."""


def dsn_event(
    item: Attributed[DsnRecipient],
    message: messages.Message,
    report: DsnReport,
    *,
    envelope_recipient: str,
    received_at: dt.datetime,
    classifier: Classifier = classify,
) -> event_store.NewEvent:
    """The CSHardBounced/CSSoftBounced event for one failed recipient block."""
    block = item.recipient
    verdict = classifier(
        smtp_code=block.smtp_code,
        enhanced_status=block.status,
        smtp_command=block.smtp_command,
        text=block.diagnostic,
    )
    details: dict[str, Any] = {
        "rule": verdict.rule,
        "dsnFormat": report.format,
        "action": block.action,
        "envelopeRecipient": envelope_recipient,
        "recipientMatched": item.matched,
    }
    for key, value in (
        ("finalRecipient", block.final_recipient),
        ("originalRecipient", block.original_recipient),
        ("diagnosticType", block.diagnostic_type),
        ("remoteMta", block.remote_mta),
        ("reportingMta", report.reporting_mta),
    ):
        if value:
            details[key] = value
    event_type = EventType.CSHardBounced if verdict.hard else EventType.CSSoftBounced
    return event_store.NewEvent(
        message_uuid=message.uuid,
        account_id=message.account_id,
        subaccount_id=message.subaccount_id,
        provider_id=message.provider_id,
        event_type=int(event_type),
        recipient=message.recipient,
        occurred_at=received_at,
        received_at=received_at,
        source=SOURCE_DSN,
        smtp_code=block.smtp_code,
        enhanced_status=block.status,
        smtp_command=block.smtp_command,
        reason=verdict.reason,
        description=block.diagnostic,
        details=details,
    )


class BounceProcessor:
    """The store side of the server: recipient checks and message processing (blocking calls,
    run in threads by the SMTP handler)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        classifier: Classifier = classify,
        on_hard_bounces: HardBounceHook | None = None,
        unparsed_quota: int | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.classifier = classifier
        self.recorder = (
            RECORDER if on_hard_bounces is None else Recorder(on_hard_bounces=on_hard_bounces)
        )
        self.unparsed_quota = unparsed_quota
        """Bytes of unparsed messages kept per provider per :data:`UNPARSED_QUOTA_WINDOW`."""

    def check_recipient(self, address: str) -> str | None:
        """None when mail to ``address`` is accepted, else why not (for the 550 reply)."""
        parsed = parse_bounce_address(address)
        if parsed is None:
            return "not a bounce address of this server"
        with self.store.read() as conn:
            message = messages.get_message(conn, parsed.message_uuid)
        return rejection(
            parsed,
            found=message is not None,
            subaccount_id=message.subaccount_id if message else None,
            sender=message.sender if message else None,
        )

    def process(self, *, envelope_from: str, envelope_to: list[str], raw: bytes) -> Processed:
        """Store what one received message says (one transaction)."""
        try:
            report = parse_report(raw)
        except Exception:  # the parser should never raise; if it does, keep the message
            log.exception("parsing a %d-byte bounce failed; keeping it unparsed", len(raw))
            report = DsnReport("unknown", ())
        now = self.clock.now()
        uuids = [p.message_uuid for p in map(parse_bounce_address, envelope_to) if p]
        with self.store.write() as conn:
            found = messages.get_messages(conn, uuids)
            targets = [found[u] for u in dict.fromkeys(uuids) if u in found]
            if not report.recipients:
                first = targets[0] if targets else None
                provider = (first.provider_id if first else None) or 0
                if self._over_quota(conn, first.provider_id if first else None, len(raw), now):
                    counters.add(conn, provider, "bounce.unparsed_over_quota")
                    return Processed({}, 0, None, over_quota=True)
                row = bounce_store.keep_unparsed(
                    conn,
                    raw=raw,
                    envelope_from=envelope_from,
                    envelope_to=envelope_to,
                    message_uuid=first.uuid if first else None,
                    provider_id=first.provider_id if first else None,
                    now=now,
                )
                counters.add(conn, provider, "bounce.unparsed")
                return Processed({}, 0, row)
            recorded: collections.Counter[str] = collections.Counter()
            ignored = 0
            for message in targets:
                outcomes, skipped = self._process_message(conn, message, report, envelope_to, now)
                recorded.update(outcomes)
                ignored += skipped
        return Processed(dict(recorded), ignored, None)

    def _over_quota(
        self, conn: Connection, provider_id: int | None, size: int, now: dt.datetime
    ) -> bool:
        if self.unparsed_quota is None:
            return False
        used = bounce_store.unparsed_bytes_since(
            conn, provider_id=provider_id, since=now - UNPARSED_QUOTA_WINDOW
        )
        return used + size > self.unparsed_quota

    def _process_message(
        self,
        conn: Connection,
        message: messages.Message,
        report: DsnReport,
        envelope_to: list[str],
        now: dt.datetime,
    ) -> tuple[collections.Counter[str], int]:
        counts: collections.Counter[str] = collections.Counter()
        outcomes: collections.Counter[str] = collections.Counter()
        for block in report.recipients:
            if not block.terminal:
                counts[f"bounce.{block.action or 'no_action'}"] += 1
        chosen = attribute(report.recipients, message.recipient)
        terminal = sum(1 for b in report.recipients if b.terminal)
        counts["bounce.other_recipient"] += terminal - len(chosen)
        ignored = sum(counts.values())
        envelope = _envelope_address(envelope_to, message.uuid)
        group = [
            dsn_event(
                item,
                message,
                report,
                envelope_recipient=envelope,
                received_at=now,
                classifier=self.classifier,
            )
            for item in chosen
        ]
        provider = message.provider_id or 0
        recorded = self.recorder.record(
            conn,
            group,
            count_as="bounce",
            counts={(provider, name): n for name, n in counts.items() if n > 0},
        )
        outcomes.update(r.outcome.value for r in recorded)
        return outcomes, ignored


def _envelope_address(envelope_to: list[str], message_uuid: str) -> str:
    for address in envelope_to:
        parsed = parse_bounce_address(address)
        if parsed is not None and parsed.message_uuid == message_uuid:
            return address
    return envelope_to[0]


class _Handler:
    """aiosmtpd hooks: the SMTP replies of the module docstring."""

    def __init__(
        self, processor: BounceProcessor, stats: BounceStats, *, threads: int, pacer: Pacer
    ) -> None:
        self.processor = processor
        self.stats = stats
        self.threads = threads
        self.pacer = pacer
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def open(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self.threads, thread_name_prefix="bounce"
        )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _blocking(self, call: Callable[[], _T]) -> _T:
        """Run a store call, at the pacer's rate, on the server's own threads (not the event
        loop's default executor, which the API uses)."""
        await self.pacer.turn()
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            problem = await self._blocking(
                functools.partial(self.processor.check_recipient, address)
            )
        except (StoreError, sa.exc.SQLAlchemyError):
            log.exception("recipient check failed for %s", address)
            return _TEMPORARY
        if problem is not None:
            self.stats.rejected_recipients += 1
            log.info("rejected RCPT <%s>: %s", address, problem)
            # Bytes that are not UTF-8 arrive as surrogates, which the reply cannot carry.
            shown = address.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            return f"550 5.1.1 <{shown}>: Recipient address rejected: {problem}"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
        try:
            result = await self._blocking(
                functools.partial(
                    self.processor.process,
                    envelope_from=(envelope.mail_from or "").strip("<>"),
                    envelope_to=list(envelope.rcpt_tos),
                    raw=raw,
                )
            )
        except (StoreError, sa.exc.SQLAlchemyError):
            self.stats.failures += 1
            log.exception("storing a bounce for %s failed", envelope.rcpt_tos)
            return _TEMPORARY
        except Exception:
            self.stats.failures += 1
            log.exception("processing a bounce for %s failed", envelope.rcpt_tos)
            return _INTERNAL
        if result.over_quota:
            self.stats.over_quota += 1
            log.warning(
                "unparsed quota used up: refused %d bytes for %s", len(raw), envelope.rcpt_tos
            )
            return _OVER_QUOTA
        self.stats.messages += 1
        self.stats.ignored += result.ignored
        if result.unparsed_id is not None:
            self.stats.unparsed += 1
            log.warning(
                "kept unparsed bounce #%s (%d bytes) for %s",
                result.unparsed_id,
                len(raw),
                envelope.rcpt_tos,
            )
            return f"250 2.0.0 Ok: kept as unparsed #{result.unparsed_id}"
        stored = sum(result.recorded.values())
        self.stats.events += stored
        log.info(
            "bounce for %s: %s, %d ignored", envelope.rcpt_tos, result.recorded, result.ignored
        )
        return f"250 2.0.0 Ok: {stored} recorded, {result.ignored} ignored"

    async def handle_exception(self, error: Exception) -> str:
        """Any other hook that fails: a temporary reply naming nothing of the error (aiosmtpd's
        default would answer a permanent ``500`` quoting the exception)."""
        self.stats.failures += 1
        log.error("unexpected error in a bounce session", exc_info=error)
        return _INTERNAL


class BounceServer:
    """The listening SMTP server. ``await start(host, port)`` (port 0: any free port), then
    ``await stop()``; :attr:`port` is the bound port. Connections are admitted within
    ``limits`` (``smtp/bounce_guard.py``)."""

    def __init__(
        self,
        processor: BounceProcessor,
        *,
        hostname: str,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        limits: Limits | None = None,
    ) -> None:
        self.stats = BounceStats()
        self.limits = limits or Limits()
        self._handler = _Handler(
            processor, self.stats, threads=STORE_THREADS, pacer=Pacer(self.limits.store_rate)
        )
        self._hostname = hostname
        self._max_bytes = max_message_bytes
        self.gate = ConnectionGate(self.limits.max_connections, self.limits.max_per_address)
        self.refusals = RefusalLog()
        self._server: asyncio.base_events.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self.host = ""
        self.port = 0

    def _session(self, on_close: Callable[[], None]) -> SMTP:
        smtp = GuardedSMTP(
            self._handler,
            limits=self.limits,
            on_close=on_close,
            data_size_limit=self._max_bytes,
            enable_SMTPUTF8=True,
            hostname=self._hostname,
            ident="SendPost bounce processor",
            command_call_limit=COMMAND_CALL_LIMITS,
        )
        self._sessions.add(smtp)
        return smtp

    def _protocol(self) -> Doorman:
        return Doorman(self.gate, self.refusals, self._session, self._hostname)

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``; a port that cannot be bound raises :class:`ConfigError`
        naming ``SENDPOST_BOUNCE_LISTEN``."""
        loop = asyncio.get_running_loop()
        self._handler.open()
        try:
            self._server = await loop.create_server(self._protocol, host, port)
        except OSError as exc:
            self._handler.close()
            raise ConfigError(
                "SENDPOST_BOUNCE_LISTEN", f"{host}:{port}", f"cannot listen: {exc.strerror or exc}"
            ) from exc
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        log.info("bounce processor listening on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        await self._server.wait_closed()
        self._server = None
        self._handler.close()
        self.refusals.flush()
        log.info("bounce processor stopped: %s", dataclasses.asdict(self.stats))


def build_bounce_server(settings: Settings, store: Store, clock: Clock) -> BounceServer:
    """The bounce server as configured (the CLI's ``bounce`` and ``serve`` use this).

    aiosmtpd logs every SMTP command at INFO on ``mail.log``; the processor's own log lines
    (``sendpost_platform.bounces``) say what matters, so that logger is kept to warnings. The
    CLI also puts a :class:`~sendpost_platform.smtp.bounce_guard.LogBudget` on both loggers
    (:func:`~sendpost_platform.smtp.bounce_guard.budget_bounce_logs`)."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return BounceServer(
        BounceProcessor(store, clock, unparsed_quota=settings.bounce_unparsed_quota),
        hostname=settings.bounce_cname_target,
        max_message_bytes=settings.bounce_max_bytes,
        limits=Limits(
            max_connections=settings.bounce_max_connections,
            max_per_address=settings.bounce_max_connections_per_address,
            idle_timeout=settings.bounce_idle_timeout,
            session_limit=settings.bounce_session_limit,
            store_rate=settings.bounce_store_rate,
        ),
    )
