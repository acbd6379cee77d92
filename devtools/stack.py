"""The whole system on one machine: platform, DNS, a customer's Postfix, its agent and the internet.

Shared by the demo (``devtools/demo.py``) and the end-to-end tests (``tests/e2e/``)::

    from devtools.stack import Stack

    with Stack(say=print) as stack:            # everything below is started and configured
        sent = stack.send(["accept-1@sink.test", "reject-1@sink.test"])
        outcome = stack.wait_for_outcomes(sent, timeout=60)
        outcome.final["reject-1@sink.test"]    # "CSHardBounced"
        stack.agent.kill(); stack.agent.start()  # SIGKILL, restart on the same state dir

What ``start()`` does, in order, each step through the real interfaces:

1. an ``SmtpSink`` (the recipients' mail servers: answers by local-part prefix, see
   ``devtools.sinks``) and a ``DnsServer`` (authoritative for the sender domain) on loopback;
2. ``sendpost-platform serve`` as a subprocess on an embedded SQLite database in the work
   directory, its HTTP API and bounce processor on free loopback ports, the resolver pointed at
   the DNS server, short worker and relay-retry timers;
3. ``sendpost-platform create-account --json``;
4. the domain through SendPost's SDK (``DomainApi.create_sub_account_domain``), then the DNS
   records it lists (``dkim`` TXT, ``returnPath`` CNAME) are published in the DNS server and
   ``POST /api/v1/subaccount/domain/{id}/verify`` must say verified;
5. a private Postfix (``devtools.postfix``) relaying to the sink, with Postfix's non-delivery
   notifications to ``sp-bounce.*`` routed to the platform's bounce processor (or discarded with
   ``notifications_to_platform=False``, so that every bounce comes from the agent), and one-attempt
   queue lifetimes so that deferred recipients expire (``status=expired`` → soft bounce) within a
   second or two;
6. ``POST /api/v1/tpsp/custom-smtp`` pointing at that Postfix (the live SMTP test runs against
   it) → the provider and its ingestion key; an IP pool routing to it through the SDK
   (``IPPoolsApi.create_ip_pool``, ``tpsps`` = the provider);
7. ``sendpost-agent run`` as a subprocess on Postfix's log with the ingestion key.

``stop()`` (also on ``with`` exit and at interpreter exit) stops the agent, the platform,
Postfix, the DNS server and the sink, and removes the work directory unless ``keep=True``.
Process output goes to ``platform.log`` and ``agent.log`` in the work directory; running the
executables (and the agent's restarts) is ``devtools.processes``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sendpost_python_sdk.api.domain_api import DomainApi
from sendpost_python_sdk.api.email_api import EmailApi
from sendpost_python_sdk.api.ip_pools_api import IPPoolsApi
from sendpost_python_sdk.api_client import ApiClient
from sendpost_python_sdk.configuration import Configuration
from sendpost_python_sdk.models.create_domain_request import CreateDomainRequest
from sendpost_python_sdk.models.email_message_object import EmailMessageObject
from sendpost_python_sdk.models.ip_pool_create_request import IPPoolCreateRequest

from devtools.dns import DnsServer
from devtools.postfix import DISCARD, PostfixInstance, PostfixSettings, free_port
from devtools.processes import (
    AgentProcess,
    StackError,
    clean_env,
    deadline_loop,
    executable,
    tail,
    terminate,
)
from devtools.service import Service
from devtools.sinks import SmtpSink

SENDER_DOMAIN = "demo-shop.example"
SENDER = f"news@{SENDER_DOMAIN}"
POOL = "demo-pool"
TERMINAL = ("CSDelivered", "CSHardBounced", "CSSoftBounced", "CSDropped")
INGEST_PATH = "/api/v1/tpsp/custom-smtp/events"


@dataclass(frozen=True)
class Sent:
    recipient: str
    message_id: str


@dataclass
class Outcome:
    """The platform's events for a batch: every event, and each recipient's final event type."""

    events: list[dict[str, Any]]
    final: dict[str, str] = field(default_factory=dict)
    final_event: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)


class Stack(Service):
    """Everything the demo and the end-to-end tests run; see the module docstring."""

    def __init__(
        self,
        say: Callable[[str], None] = lambda _line: None,
        workdir: Path | None = None,
        keep: bool = False,
        agent_batch_wait: float = 0.2,
        notifications_to_platform: bool = True,
    ) -> None:
        self.say = say
        self._own_dir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="sendpost-stack-")) if workdir is None else workdir
        )
        self.keep = keep
        self.agent_batch_wait = agent_batch_wait
        self.notifications_to_platform = notifications_to_platform
        self.sink = SmtpSink()
        self.dns = DnsServer()
        self.mta: PostfixInstance | None = None
        self.platform: subprocess.Popen[bytes] | None = None
        self._agent: AgentProcess | None = None
        self.base_url = ""
        self.bounce_port = 0
        self.account: dict[str, Any] = {}
        self.domain: dict[str, Any] = {}
        self.provider: dict[str, Any] = {}
        self.ingest_key = ""
        self._http: httpx.Client | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> Stack:
        atexit.register(self.stop)
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.sink.start()
            self.dns.start()
            self.say(f"receiving mail server (sink) on {self.sink.host}:{self.sink.port}")
            self.say(f"authoritative DNS for {SENDER_DOMAIN} on 127.0.0.1:{self.dns.port}")
            self._start_platform()
            self._create_account()
            self._create_domain()
            self._start_postfix()
            self._create_provider()
            self._create_pool()
            self._start_agent()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process and server, remove the work directory. Safe to call twice."""
        atexit.unregister(self.stop)
        if self._agent is not None:
            self._agent.stop()
        terminate(self.platform)
        self.platform = None
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.mta is not None:
            self.mta.stop()
            self.mta = None
        self.dns.stop()
        self.sink.stop()
        if self._own_dir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the platform ---------------------------------------------------------------------------

    def platform_env(self) -> dict[str, str]:
        return clean_env(
            {
                "SENDPOST_DATABASE_URL": f"sqlite:///{self.workdir / 'sendpost.db'}",
                "SENDPOST_PUBLIC_BASE_URL": self.base_url,
                "SENDPOST_BOUNCE_LISTEN": f"127.0.0.1:{self.bounce_port}",
                # Everything here listens on loopback: the development switch is on, explicitly.
                "SENDPOST_ALLOW_PRIVATE_NETWORKS": "true",
                "SENDPOST_DNS_NAMESERVER": "127.0.0.1",
                "SENDPOST_DNS_PORT": str(self.dns.port),
                "SENDPOST_DNS_TIMEOUT": "3",
                "SENDPOST_WORKER_IDLE_INTERVAL": "0.1",
                "SENDPOST_RELAY_RETRY_SCHEDULE": "2s,4s,8s",
                "SENDPOST_RELAY_SMTP_TIMEOUT": "20",
            }
        )

    def _start_platform(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            port, self.bounce_port = free_port(), free_port()
            self.base_url = f"http://127.0.0.1:{port}"
            with open(self.workdir / "platform.log", "ab") as out:
                self.platform = subprocess.Popen(
                    [executable("sendpost-platform"), "serve", "--listen", f"127.0.0.1:{port}"],
                    cwd=self.workdir,
                    env=self.platform_env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_for_platform():
                self._http = httpx.Client(base_url=self.base_url, timeout=30)
                self.say(f"platform (sendpost-platform serve, SQLite) on {self.base_url}")
                return
            if attempt == attempts - 1:
                raise StackError(
                    "sendpost-platform serve did not start; its output:\n"
                    + tail(self.workdir / "platform.log")
                )

    def _wait_for_platform(self, timeout: float = 45) -> bool:
        assert self.platform is not None
        for _ in deadline_loop("the platform's /health", timeout):
            if self.platform.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return True
        return False  # pragma: no cover - the loop raises

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            raise StackError("the platform is not running")
        return self._http

    def api(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        """One call to the platform's API with the account key; StackError on another status."""
        headers = kwargs.pop("headers", {"X-Account-ApiKey": self.account["account_key"]})
        response = self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code != expect:
            raise StackError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def _create_account(self) -> None:
        done = subprocess.run(
            [executable("sendpost-platform"), "create-account", "--name", "Demo", "--json"],
            cwd=self.workdir,
            env=self.platform_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"create-account failed: {done.stderr.strip()}")
        self.account = json.loads(done.stdout.strip().splitlines()[-1])
        self.say(f"account {self.account['account_id']} with sub-account "
                 f"{self.account['subaccount_id']} (sendpost-platform create-account)")  # fmt: skip

    def sdk(self) -> ApiClient:
        """SendPost's official SDK aimed at this platform, with both keys of the account."""
        config = Configuration(
            host=f"{self.base_url}/api/v1",
            api_key={
                "accountAuth": self.account["account_key"],
                "subAccountAuth": self.account["subaccount_key"],
            },
        )
        return ApiClient(config)

    def _create_domain(self) -> None:
        with self.sdk() as client:
            created = DomainApi(client).create_sub_account_domain(
                CreateDomainRequest(name=SENDER_DOMAIN)
            )
        for record in (created.dkim, created.return_path):
            if record is None or not (record.host and record.type and record.text_value):
                raise StackError(f"the domain lists an incomplete record: {created.to_json()}")
            self.dns.add(record.host, record.type, record.text_value)
            self.say(f"  published {record.type} {record.host}")
        path = f"/api/v1/subaccount/domain/{created.id}/verify"
        headers = {"X-SubAccount-ApiKey": self.account["subaccount_key"]}
        self.domain = self.api("POST", path, 200, headers=headers)
        if not self.domain["verified"]:
            raise StackError(f"domain verification failed: {json.dumps(self.domain)}")
        self.say(f"sender domain {SENDER_DOMAIN}: DKIM and return path verified through DNS")

    # -- the customer's MTA and its agent -------------------------------------------------------

    def _start_postfix(self) -> None:
        bounce_hop = (
            f"[127.0.0.1]:{self.bounce_port}" if self.notifications_to_platform else DISCARD
        )
        settings = PostfixSettings(
            relay=self.sink.nexthop,
            routes={r"@sp-bounce\.": bounce_hop},
            maximal_queue_lifetime="0s",
            bounce_queue_lifetime="0s",
            retry_delay="1s",
        )
        self.mta = PostfixInstance(settings).start()
        self.say(f"customer's Postfix on 127.0.0.1:{self.mta.smtp_port}, log {self.mta.log_path}")

    @property
    def postfix(self) -> PostfixInstance:
        if self.mta is None:
            raise StackError("Postfix is not running")
        return self.mta

    def _create_provider(self) -> None:
        body = {
            "name": "Local Postfix",
            "host": "127.0.0.1",
            "port": self.postfix.smtp_port,
            "security": "none",
            "testFrom": f"connectivity-test@{SENDER_DOMAIN}",
            "testTo": "accept-connectivity-test@sink.test",
            "maxRatePerHour": 100000,
        }
        created = self.api("POST", "/api/v1/tpsp/custom-smtp", 201, json=body)
        self.ingest_key = created["eventIngestionApiKey"]
        self.provider = created
        self.say(f"Custom SMTP provider {created['id']} created: live SMTP test against Postfix "
                 "passed (connect, EHLO, MAIL, RCPT, DATA, QUIT)")  # fmt: skip

    def _create_pool(self) -> None:
        with self.sdk() as client:
            IPPoolsApi(client).create_ip_pool(
                IPPoolCreateRequest(name=POOL, tpsps=[self.provider["id"]])
            )
        self.say(f"IP pool {POOL!r} routes to provider {self.provider['id']}")

    @property
    def agent(self) -> AgentProcess:
        """``sendpost-agent run``: ``start()``, ``kill()`` (SIGKILL), ``metric()``, ``port``."""
        if self._agent is None:
            raise StackError("the agent has not been set up")
        return self._agent

    def _start_agent(self) -> None:
        self._agent = AgentProcess(
            self.workdir,
            log_path=self.postfix.log_path,
            endpoint=f"{self.base_url}{INGEST_PATH}",
            api_key=self.ingest_key,
            batch_wait=self.agent_batch_wait,
        )
        self.agent.start()
        self.say(f"agent (sendpost-agent run) tailing {self.postfix.log_path}, "
                 f"health on 127.0.0.1:{self.agent.port}")  # fmt: skip

    def platform_counter(self, name: str) -> int:
        """A processing counter (e.g. ``ingest.deferred``) summed over providers, read from the
        platform's SQLite database (read-only)."""
        uri = f"file:{self.workdir / 'sendpost.db'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            row = db.execute("SELECT SUM(value) FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0] or 0)

    # -- sending and reading events -------------------------------------------------------------

    def send(self, recipients: Iterable[str], subject: str = "Hello {{name}}") -> list[Sent]:
        """One send request through SendPost's official Python SDK (pointed at this platform by
        its host alone); every recipient becomes its own message (its own UUID), its name
        rendered into the subject and body from its custom fields."""
        config = Configuration(
            host=f"{self.base_url}/api/v1",
            api_key={"subAccountAuth": self.account["subaccount_key"]},
        )
        message = EmailMessageObject.from_dict(
            {
                "from": {"email": SENDER, "name": "Demo Shop"},
                "to": [
                    {"email": r, "customFields": {"name": r.split("@", 1)[0]}} for r in recipients
                ],
                "subject": subject,
                "textBody": "Hello {{name}}! This message went through the whole SendPost"
                " Custom SMTP loop.",
                "ippool": POOL,
                "groups": ["demo"],
            }
        )
        assert message is not None
        with ApiClient(config) as client:
            answer = EmailApi(client).send_email(message)
        refused = [r for r in answer if r.error_code != 0]
        if refused:
            raise StackError(f"the send API dropped messages: {refused}")
        return [Sent(str(r.to), str(r.message_id)) for r in answer]

    def receiving_server_said(self, recipient: str) -> str:
        """What the sink answered for this recipient: ``250 …``, or its last rejection."""
        for rejection in reversed(self.sink.rejections()):
            if recipient in rejection.recipients:
                return f"{rejection.stage}: {rejection.reply}"
        if any(recipient in m.rcpt_tos for m in self.sink.messages()):
            return "DATA: 250 accepted"
        return "(nothing yet)"

    def events(self, **params: Any) -> list[dict[str, Any]]:
        """Every event of the account from ``GET /api/v1/events`` (all pages), newest first."""
        found: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 500, **params}
        while True:
            page = self.api("GET", "/api/v1/events", 200, params=query)
            found.extend(page["data"])
            if not page["nextCursor"]:
                return found
            query["cursor"] = page["nextCursor"]

    def outcome(self, sent: Iterable[Sent]) -> Outcome:
        mine = {s.message_id: s.recipient for s in sent}
        events = [e for e in self.events() if e["messageId"] in mine]
        result = Outcome(events=events)
        for event in reversed(events):  # oldest first: the last terminal event wins
            if event["typeName"] in TERMINAL:
                result.final[mine[event["messageId"]]] = event["typeName"]
                result.final_event[mine[event["messageId"]]] = event
        result.pending = [r for r in mine.values() if r not in result.final]
        return result

    def wait_for_outcomes(self, sent: list[Sent], timeout: float = 60) -> Outcome:
        """Poll the events API until every message has a final event (or StackError)."""
        for _ in deadline_loop("waiting for every message's final event", timeout, 0.25):
            result = self.outcome(sent)
            if not result.pending:
                return result
            self._check_alive()
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_alive(self) -> None:
        if self.platform is not None and self.platform.poll() is not None:
            log = tail(self.workdir / "platform.log")
            raise StackError(f"sendpost-platform serve exited:\n{log}")
        if self._agent is not None:
            self._agent.check_alive()
