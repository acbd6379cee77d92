"""A private Postfix wired to SMTP sinks: the customer's MTA and the internet behind it, in one box.

Used by the real-Postfix tests and the demo::

    from devtools.rig import LocalMta

    with LocalMta(content_filter=True, long_queue_ids=True) as rig:
        queue_id = rig.send(uuid, ["accept-1@sink.test", "reject-1@sink.test"])
        rig.settle([queue_id])                 # delivered / bounced / expired, notifications too
        rig.parse().events                     # `sendpost-agent parse` over the instance's log

``rig.sink`` receives every recipient's mail and answers by local-part prefix (see
``devtools.sinks``); ``rig.bounce_sink`` receives what Postfix sends to ``sp-bounce.*`` addresses
(the platform's return path: non-delivery notifications). ``defer…`` recipients expire after the
first attempt by default (``maximal_queue_lifetime=0s``) so every recipient ends quickly.
``routes={regexp: next hop}`` sends matching recipients elsewhere (e.g. a refusing port);
``send(..., rcpt_options=["NOTIFY=SUCCESS"])`` requests DSNs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from devtools.agent_cli import ParseResult, run_parse
from devtools.mail import bounce_address, platform_message, submit
from devtools.postfix import MessageTrace, PostfixInstance, PostfixSettings
from devtools.service import Service
from devtools.sinks import SmtpSink

SENDER_DOMAIN = "example.com"
SUB_ACCOUNT_ID = 7
BOUNCE_ROUTE = r"@sp-bounce\."


class LocalMta(Service):
    """A started ``PostfixInstance`` with a recipient sink and a bounce sink."""

    def __init__(
        self,
        *,
        long_queue_ids: bool = False,
        content_filter: bool = False,
        content_filter_late_reply: bool = False,
        content_filter_xforward: bool = True,
        maximal_queue_lifetime: str = "0s",
        retry_delay: str = "1s",
        main_cf: Mapping[str, str] | None = None,
        routes: Mapping[str, str] | None = None,
        keep_dir: bool = False,
    ) -> None:
        self.sink = SmtpSink()
        self.bounce_sink = SmtpSink()
        self._options = {
            "long_queue_ids": long_queue_ids,
            "content_filter": content_filter,
            "content_filter_late_reply": content_filter_late_reply,
            "content_filter_xforward": content_filter_xforward,
            "maximal_queue_lifetime": maximal_queue_lifetime,
            "retry_delay": retry_delay,
        }
        self._main_cf = dict(main_cf or {})
        self._keep_dir = keep_dir
        self._routes = dict(routes or {})
        self._mta: PostfixInstance | None = None

    @property
    def mta(self) -> PostfixInstance:
        if self._mta is None:
            raise RuntimeError("LocalMta is not started")
        return self._mta

    @property
    def log_path(self) -> Path:
        return self.mta.log_path

    def start(self) -> LocalMta:
        try:
            self.sink.start()
            self.bounce_sink.start()
            settings = PostfixSettings(
                relay=self.sink.nexthop,
                routes={BOUNCE_ROUTE: self.bounce_sink.nexthop, **self._routes},
                long_queue_ids=bool(self._options["long_queue_ids"]),
                content_filter=bool(self._options["content_filter"]),
                content_filter_late_reply=bool(self._options["content_filter_late_reply"]),
                content_filter_xforward=bool(self._options["content_filter_xforward"]),
                maximal_queue_lifetime=str(self._options["maximal_queue_lifetime"]),
                bounce_queue_lifetime=str(self._options["maximal_queue_lifetime"]),
                retry_delay=str(self._options["retry_delay"]),
                main_cf=self._main_cf,
            )
            self._mta = PostfixInstance(settings, keep_dir=self._keep_dir).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._mta is not None:
            self._mta.stop()
        self.bounce_sink.stop()
        self.sink.stop()

    def send(
        self,
        uuid: str,
        recipients: Sequence[str],
        *,
        uuid_header: bool = True,
        uuid_message_id: bool = True,
        platform_sender: bool = True,
        sender: str = f"news@{SENDER_DOMAIN}",
        rcpt_options: Sequence[str] = (),
    ) -> str:
        """Submit one message as the platform would prepare it; returns Postfix's queue ID.

        The UUID travels in the ``X-Sendpost-Message-UUID`` header, as the Message-ID's local part
        and/or in the envelope sender ``bounces+{uuid}+7@sp-bounce.example.com``, as chosen.
        """
        envelope_from = (
            bounce_address(uuid, SUB_ACCOUNT_ID, SENDER_DOMAIN) if platform_sender else sender
        )
        message = platform_message(
            uuid,
            sender,
            recipients,
            uuid_header=uuid_header,
            uuid_message_id=uuid_message_id,
        )
        return submit(
            self.mta.smtp_port, envelope_from, recipients, message, rcpt_options=rcpt_options
        )

    def settle(self, queue_ids: Iterable[str], timeout: float = 30) -> MessageTrace:
        """Wait until these messages, their re-injected copies and notifications are done."""
        return self.mta.wait_until_settled(queue_ids, timeout)

    def parse(self, stats: bool = False) -> ParseResult:
        return run_parse([self.log_path], stats=stats)
