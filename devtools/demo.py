"""``make demo``: the whole Custom SMTP loop on this machine, then the events it produced.

Starts the platform (embedded SQLite), an account, a sender domain verified through a local DNS
server, a private Postfix registered as the account's Custom SMTP provider (the live SMTP test runs
against it), an IP pool (the domain and the pool through SendPost's SDK) and ``sendpost-agent
run`` on Postfix's log (see ``devtools.stack``). Then it sends a batch through the send API (with
SendPost's official Python SDK, its host pointed at the platform) to a local receiving server that
accepts some recipients,
rejects some permanently and defers others (the deferred ones expire in Postfix's queue after one
attempt: soft bounces), waits for every message's final event and prints:

- the events by type, read back from ``GET /api/v1/events``;
- each recipient: what the receiving server answered, the final event and who reported it;
- the same run through SendPost's SDK: today's statistics and the suppressions added
  automatically (hard bounces);
- the webhook deliveries a local receiver got (a webhook with every switch on is created with
  the SDK's ``WebhookApi`` first), each with its signature checked (docs/webhooks.md);
- the URLs to look at (dashboard, events API, the agent's health and metrics).

Then it keeps everything running until Ctrl-C (``--once``, or no terminal on stdin as in CI:
exit after printing, with status 1 when a final event does not match what the receiving server
did; ``--stay`` keeps running without a terminal). Everything is stopped and removed on the way
out.

Run: ``make demo`` or ``.venv/bin/python -m devtools.demo [--once] [--keep]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from types import FrameType

from sendpost_python_sdk.api.stats_a_api import StatsAApi
from sendpost_python_sdk.api.suppression_api import SuppressionApi

from devtools.postfix import PostfixError
from devtools.processes import StackError
from devtools.stack import Outcome, Sent, Stack
from devtools.webhook_receiver import WebhookReceiver

# local-part prefix -> (how many, the final event the receiving server's answer must lead to)
PLAN: tuple[tuple[str, int, str], ...] = (
    ("accept", 5, "CSDelivered"),  # 250
    ("reject", 2, "CSHardBounced"),  # 550 5.1.1 user unknown at RCPT
    ("full", 1, "CSSoftBounced"),  # 552 5.2.2 mailbox full at RCPT
    ("dataerr", 1, "CSSoftBounced"),  # 554 5.7.1 content rejected after DATA
    ("defer", 2, "CSSoftBounced"),  # 450 4.2.0 at RCPT until the queue lifetime ends
    ("greylist", 1, "CSSoftBounced"),  # 451 4.7.1 at RCPT until the queue lifetime ends
)
TYPE_ORDER = ("CSProcessed", "CSSent", "CSDelivered", "CSHardBounced", "CSSoftBounced", "CSDropped")
WAIT_SECONDS = 60


def recipients(tag: str = "") -> list[str]:
    """The demo's batch: ``{prefix}-{n}{tag}@sink.test`` for every line of ``PLAN``."""
    return [
        f"{prefix}-{n}{tag}@sink.test" for prefix, count, _ in PLAN for n in range(1, count + 1)
    ]


def expected_final(recipient: str) -> str:
    local = recipient.split("@", 1)[0]
    return next(final for prefix, _, final in PLAN if local.startswith(f"{prefix}-"))


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join("  " + line for line in lines)


def reported_by(event: dict[str, object]) -> str:
    details = event.get("details")
    merged = details.get("merged", []) if isinstance(details, dict) else []
    sources = [str(event.get("source"))] + [str(m.get("source")) for m in merged]
    return " + ".join(dict.fromkeys(sources))


def report(stack: Stack, sent: Sequence[Sent], outcome: Outcome, deferred: float) -> list[str]:
    """The printed tables; returns the recipients whose final event is not the expected one."""
    counts = Counter(str(e["typeName"]) for e in outcome.events)
    rows = [[name, str(counts.get(name, 0))] for name in TYPE_ORDER if counts.get(name)]
    rows.append(["CSDeferred", f"{deferred:.0f}  (reported by the agent; counted, never stored)"])
    print("\nEvents by type (GET /api/v1/events):\n")
    print(format_table(("event", "count"), rows))
    wrong = []
    lines = []
    for item in sent:
        final = outcome.final.get(item.recipient, "(none)")
        expected = expected_final(item.recipient)
        ok = final == expected
        if not ok:
            wrong.append(item.recipient)
        event = outcome.final_event.get(item.recipient, {})
        lines.append(
            [
                item.recipient,
                stack.receiving_server_said(item.recipient).replace(f"<{item.recipient}>: ", "")[
                    :58
                ],
                final,
                str(event.get("reason") or ""),
                reported_by(event) if event else "",
                "ok" if ok else f"expected {expected}",
            ]
        )
    print("\nEach recipient's final state:\n")
    header = ("recipient", "receiving server said", "final event", "reason", "reported by", "check")
    print(format_table(header, lines))
    return wrong


def print_sendpost_view(stack: Stack) -> None:
    """The same run as SendPost's SDK sees it: today's counts and the automatic suppressions."""
    today = dt.datetime.now(dt.UTC).date()
    with stack.sdk() as client:
        counts = StatsAApi(client).get_account_aggregate_stats(today, today)
        suppressed = SuppressionApi(client).get_suppression_list(today, today, limit=100)
    shown = ("processed", "sent", "dropped", "delivered", "soft_bounced", "hard_bounced")
    print("\nSendPost's SDK (StatsAApi.get_account_aggregate_stats, today):")
    print("  " + ", ".join(f"{name} {getattr(counts, name)}" for name in shown))
    reasons = Counter(s.reason_text for s in suppressed)
    print("SuppressionApi.get_suppression_list (added automatically today): "
          + (", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none"))  # fmt: skip


def add_webhook(stack: Stack, receiver: WebhookReceiver) -> None:
    """A webhook with every switch on, created with the SDK, its secret kept for the receiver."""
    import json

    from sendpost_python_sdk.api.webhook_api import WebhookApi
    from sendpost_python_sdk.api_client import ApiClient
    from sendpost_python_sdk.configuration import Configuration
    from sendpost_python_sdk.models.new_webhook import NewWebhook

    config = Configuration(host=f"{stack.base_url}/api/v1")
    config.api_key["accountAuth"] = stack.account["account_key"]
    switches = dict.fromkeys(("processed", "sent", "unique_open", "unique_click"), True)
    created = WebhookApi(ApiClient(config)).create_webhook_with_http_info(
        NewWebhook(url=receiver.url("/demo/ok"), **switches)
    )
    receiver.secrets["/demo/"] = json.loads(created.raw_data)["secret"]


def report_webhooks(receiver: WebhookReceiver, outcome: Outcome) -> None:
    """The deliveries the receiver got, once one per stored event arrived (at most 15 s)."""
    stored = len(outcome.events)
    with contextlib.suppress(AssertionError):  # printed as it stands: shows what arrived
        receiver.wait_until(lambda got: len({r.event_id for r in got}) >= stored, timeout=15)
    rows = [
        [
            r.payload["event"]["typeName"],
            r.payload["event"]["to"],
            r.event_id,
            "ok" if r.verified else "BAD",
        ]
        for r in receiver.received()
    ]
    print(f"\nWebhook deliveries the receiver got ({len(rows)} for {stored} stored events):\n")
    print(format_table(("typeName", "to", "eventId", "signature"), rows))


def print_urls(stack: Stack) -> None:
    key = stack.account["account_key"]
    base = stack.base_url
    print(f"""
Look around:
  dashboard        {base}/dashboard/login   (sign in with the account key below)
  account key      {key}
  events API       curl -s -H 'X-Account-ApiKey: {key}' '{base}/api/v1/events?limit=20'
  one type         curl -s -H 'X-Account-ApiKey: {key}' '{base}/api/v1/events?type=CSSoftBounced'
  SendPost's APIs  {base}/api/v1/account/stat/aggregate?from=YYYY-MM-DD&to=YYYY-MM-DD, .../ippool,
                   /api/v1/subaccount/suppression (docs/api.md; /openapi.json)
  agent            http://127.0.0.1:{stack.agent.port}/health  http://127.0.0.1:{stack.agent.port}/metrics
  Postfix log      {stack.postfix.log_path}
  logs             {stack.workdir}/platform.log  {stack.workdir}/agent.log""")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(once: bool, keep: bool) -> int:
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {line}", flush=True)

    say("starting the platform, DNS, Postfix, the receiving server and the agent ...")
    with Stack(say=say, keep=keep) as stack, WebhookReceiver() as hooks:
        add_webhook(stack, hooks)
        say(f"webhook (every event type) -> {hooks.url('/demo/ok')}")
        batch = recipients()
        sent = stack.send(batch)
        say(f"sent {len(sent)} messages with one SDK EmailApi.send_email call "
            f"({', '.join(f'{c} {p}-*' for p, c, _ in PLAN)}@sink.test)")  # fmt: skip
        say(f"waiting (at most {WAIT_SECONDS}s) for every message's final event ...")
        outcome = stack.wait_for_outcomes(sent, timeout=WAIT_SECONDS)
        deferred = stack.agent.metric("events_total", 'type="deferred"')
        say("every message has its final event")
        wrong = report(stack, sent, outcome, deferred)
        print_sendpost_view(stack)
        report_webhooks(hooks, outcome)
        print_urls(stack)
        if wrong:
            print(f"\nMISMATCH for {', '.join(wrong)}", file=sys.stderr)
        if once:
            return 1 if wrong else 0
        print("\nEverything keeps running; press Ctrl-C to stop and clean up.", flush=True)
        while True:
            signal.pause()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--once", "--exit", action="store_true", help="exit after printing")
    parser.add_argument(
        "--stay", action="store_true", help="keep running until Ctrl-C even without a terminal"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    # Without a terminal nobody can press Ctrl-C (CI, scripts): print, then exit.
    once = args.once or not (args.stay or sys.stdin.isatty())
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Ctrl-C even when started with SIGINT ignored (e.g. in the background by a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run(once, args.keep)
    except KeyboardInterrupt:
        print("\nstopped: the platform, agent, Postfix, DNS and receiving server are gone")
        return 0
    except (StackError, PostfixError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
