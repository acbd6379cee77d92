"""Hops by evidence and the platform's address, on logs written by the real Postfix.

* a content filter (Postfix → filter → re-injection, one log): a hop, one event per recipient;
* a smarthost on loopback (``relayhost = [127.0.0.1]:PORT``, another Postfix) whose log is
  elsewhere: its ``250 ... queued as NEWID`` is a delivery;
* two Postfix instances writing one log (``postfix-in`` → ``postfix-out``): a hop;
* ``virtual_alias_maps`` one-to-one rewrites: delivered, bounced and expired recipients are
  reported under the address the platform sent to (``orig_to=``), the rewritten one as
  ``final_recipient``.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.agent_cli import run_parse
from devtools.mail import bounce_address, platform_message, submit
from devtools.postfix import PostfixInstance, PostfixSettings
from devtools.rig import SENDER_DOMAIN, SUB_ACCOUNT_ID, LocalMta
from devtools.sinks import SmtpSink

pytestmark = pytest.mark.postfix


def stats(stderr: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stderr.splitlines())


def hop_counts(stderr: str) -> tuple[int, int]:
    found = stats(stderr)
    return int(found["hops_resolved"]), int(found["hops_unresolved"])


def mine(events: list[dict[str, Any]], uuid: str) -> list[tuple[str, str | None, str | None]]:
    return sorted(
        (e["event_type"], e.get("recipient"), e.get("final_recipient"))
        for e in events
        if e["message_id"] == uuid
    )


def send(port: int, uuid: str, recipients: list[str]) -> str:
    sender = f"news@{SENDER_DOMAIN}"
    message = platform_message(uuid, sender, recipients)
    return submit(port, bounce_address(uuid, SUB_ACCOUNT_ID, SENDER_DOMAIN), recipients, message)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as started:
        yield started


def test_content_filter_is_a_hop(local_mta: Callable[..., LocalMta]) -> None:
    """Postfix → content filter (127.0.0.1, `queued as CHILD`) → re-injection, in one log: no
    event for the hop, one `delivered` for the final delivery, the hop counted as resolved."""
    rig = local_mta(content_filter=True)
    uuid = str(uuidlib.uuid4())
    rcpt = f"accept-{uuid[:8]}@sink.test"
    trace = rig.settle([rig.send(uuid, [rcpt])])
    assert len(trace.queue_ids) == 2, "\n".join(trace.lines)
    result = rig.parse(stats=True)
    assert 0 == result.returncode, result.stderr
    assert [("delivered", rcpt, None)] == mine(result.events, uuid), "\n".join(trace.lines)
    assert (1, 0) == hop_counts(result.stderr)


def test_loopback_smarthost_whose_log_is_elsewhere_is_a_delivery(
    postfix_instance: Callable[[PostfixSettings], PostfixInstance], sink: SmtpSink
) -> None:
    """relayhost = [127.0.0.1]:PORT, a second Postfix with its own log, answers `250 2.0.0 Ok:
    queued as NEWID`: NEWID never shows in this log, so the line is a `delivered` event with the
    relay's reply (counted as an unresolved hop), not a silent wait."""
    smarthost = postfix_instance(PostfixSettings(relay=sink.nexthop))
    mta = postfix_instance(PostfixSettings(relay=f"[127.0.0.1]:{smarthost.smtp_port}"))
    uuid = str(uuidlib.uuid4())
    rcpt = f"accept-{uuid[:8]}@sink.test"
    trace = mta.wait_until_settled([send(mta.smtp_port, uuid, [rcpt])], timeout=30)
    sent = [line for line in trace.lines if "status=sent" in line]
    assert [True] == ["queued as" in line for line in sent], "\n".join(trace.lines)
    sink.wait_for_messages(1, timeout=30)  # the smarthost delivered it (in its own log)
    result = run_parse([mta.log_path], stats=True)
    assert 0 == result.returncode, result.stderr
    [event] = [e for e in result.events if e["message_id"] == uuid]
    assert ("delivered", rcpt, 250, "2.0.0") == (
        event["event_type"],
        event["recipient"],
        event["smtp_code"],
        event["enhanced_status"],
    ), "\n".join(trace.lines)
    assert re.fullmatch(r"2\.0\.0 Ok: queued as \w+", event["smtp_description"])
    assert (0, 1) == hop_counts(result.stderr)


def test_two_instances_writing_one_log_make_a_hop(
    postfix_instance: Callable[[PostfixSettings], PostfixInstance], sink: SmtpSink
) -> None:
    """postfix-in relays to postfix-out on loopback and both write one maillog_file: the
    `queued as NEWID` is a hop (NEWID's lines are in the log), postfix-out's delivery carries
    the message UUID; one event per recipient, one resolved hop line per recipient."""
    out = postfix_instance(
        PostfixSettings(relay=sink.nexthop, main_cf={"syslog_name": "postfix-out"})
    )
    shared = {
        "syslog_name": "postfix-in",
        "maillog_file": str(out.log_path),
        "maillog_file_prefixes": str(out.root),
    }
    inn = postfix_instance(PostfixSettings(relay=f"[127.0.0.1]:{out.smtp_port}", main_cf=shared))
    uuid = str(uuidlib.uuid4())
    accept, reject = f"accept-{uuid[:8]}@sink.test", f"reject-{uuid[:8]}@sink.test"
    parent = send(inn.smtp_port, uuid, [accept, reject])
    text = out.wait_for_log(lambda t: f"{parent}: removed" in t, timeout=30)
    [child] = set(re.findall(rf"{parent}: to=<[^>]*>, .*queued as (\w+)\)", text))
    trace = out.wait_until_settled([child], timeout=30)
    result = run_parse([out.log_path], stats=True)
    assert 0 == result.returncode, result.stderr
    expected = [("bounced", reject, None), ("delivered", accept, None)]
    assert expected == mine(result.events, uuid), "\n".join(trace.lines)
    assert {child} == {e["queue_id"] for e in result.events if e["message_id"] == uuid}
    assert (2, 0) == hop_counts(result.stderr)


def test_virtual_alias_rewrites_report_the_platforms_address(
    local_mta: Callable[..., LocalMta],
) -> None:
    """virtual_alias_maps rewrites info@/sales@/help@brand.test one-to-one to sink addresses:
    delivered, bounced and expired (soft_bounced after deferrals) events carry the address the
    platform sent to as `recipient` and the rewritten one as `final_recipient`; --stats counts
    the recipients taken from orig_to."""
    uuid = str(uuidlib.uuid4())
    tag = uuid[:8]
    aliases = {
        f"info-{tag}@brand.test": f"accept-{tag}@sink.test",
        f"sales-{tag}@brand.test": f"reject-{tag}@sink.test",
        f"help-{tag}@brand.test": f"defer-{tag}@sink.test",
    }
    table = "inline:{ " + ", ".join(f"{k}={v}" for k, v in aliases.items()) + " }"
    rig = local_mta(main_cf={"virtual_alias_maps": table})
    info, sales, helpdesk = aliases
    trace = rig.settle([rig.send(uuid, list(aliases))])
    assert any("orig_to=<" in line for line in trace.lines), "\n".join(trace.lines)
    result = rig.parse(stats=True)
    assert 0 == result.returncode, result.stderr
    terminal = [e for e in mine(result.events, uuid) if e[0] != "deferred"]
    assert [
        ("bounced", sales, aliases[sales]),
        ("delivered", info, aliases[info]),
        ("soft_bounced", helpdesk, aliases[helpdesk]),
    ] == terminal, "\n".join(trace.lines)
    assert all(e[1] in aliases for e in mine(result.events, uuid))
    assert int(stats(result.stderr)["recipients_from_orig_to"]) == len(mine(result.events, uuid))
