"""The real-Postfix harness itself (devtools.postfix, devtools.sinks): what other tests rely on."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import sys
import tempfile
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import devtools.postfix
from devtools.mail import platform_message, submit
from devtools.postfix import (
    DIR_PREFIX,
    DISCARD,
    Ports,
    PostfixInstance,
    PostfixSettings,
    PostfixUnavailable,
    live_members,
    render_main_cf,
    render_master_cf,
    trace_messages,
)
from devtools.postfix_procs import reap_abandoned
from devtools.rig import LocalMta
from devtools.sinks import DEFAULT_RULES, SmtpSink, rule_for


def test_sink_rule_is_chosen_by_the_longest_matching_prefix() -> None:
    """Rules match the start of the local part, case-insensitively; no match means accept."""
    rules = {"defer": DEFAULT_RULES["defer"], "deferlong": DEFAULT_RULES["reject"]}
    assert DEFAULT_RULES["defer"] == rule_for(rules, "Defer-1@sink.test")
    assert DEFAULT_RULES["reject"] == rule_for(rules, "deferlong-1@sink.test")
    assert None is rule_for(rules, "accept-1@sink.test")


def test_sink_answers_like_a_receiving_mta(smtp_sink: SmtpSink) -> None:
    """RCPT replies follow the prefix table; accepted recipients' messages are recorded once."""
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as client:
        client.ehlo("test")
        client.mail("sender@example.com")
        replies = {
            rcpt: client.rcpt(rcpt)[0]
            for rcpt in ("accept@x.test", "reject@x.test", "defer@x.test", "full@x.test")
        }
        code, _ = client.data(b"Subject: hi\r\n\r\nbody\r\n")
    assert (replies) == {
        "accept@x.test": 250,
        "reject@x.test": 550,
        "defer@x.test": 450,
        "full@x.test": 552,
    }
    assert code == 250
    [message] = smtp_sink.messages()
    assert message.rcpt_tos == ("accept@x.test",)
    assert [int(r.reply[:3]) for r in smtp_sink.rejections()] == [550, 450, 552]


def test_configuration_routes_and_listeners() -> None:
    """main.cf relays everything to the sink, logs the UUID header with INFO, and master.cf
    listens on the chosen loopback ports only; DISCARD routes use discard(8)."""
    settings = PostfixSettings(relay="[127.0.0.1]:2525", routes={r"@drop\.": DISCARD})
    ports = Ports(smtpd=10025, reinject=10026, content_filter=None)
    main_cf = render_main_cf(Path("/x"), settings, ports)
    master_cf = render_master_cf(settings, ports)
    assert "relayhost = [127.0.0.1]:2525\n" in main_cf
    assert "inet_interfaces = 127.0.0.1\n" in main_cf
    assert "content_filter" not in main_cf
    inet = [line.split()[0] for line in master_cf.splitlines() if " inet " in line]
    assert inet == ["127.0.0.1:10025", "127.0.0.1:10026"]


@pytest.mark.postfix
def test_instances_run_side_by_side_and_stop_without_leftovers(
    postfix_instance: Callable[[PostfixSettings], PostfixInstance],
) -> None:
    """Two instances get their own ports and directories; stop() leaves no live process and no
    directory behind, and is safe to call twice."""
    with SmtpSink() as sink:
        first = postfix_instance(PostfixSettings(relay=sink.nexthop))
        second = postfix_instance(PostfixSettings(relay=sink.nexthop))
        assert first.smtp_port != second.smtp_port
        assert first.root != second.root
        uuid = str(uuidlib.uuid4())
        for mta in (first, second):
            rcpts = [f"accept-{mta.smtp_port}@sink.test"]
            qid = submit(
                mta.smtp_port, "a@example.com", rcpts, platform_message(uuid, "a@x.t", rcpts)
            )
            mta.wait_until_settled([qid], timeout=20)
            assert mta.queue_is_empty()
        assert len(sink.messages()) == 2
        pid = first.master_pid()
        assert pid is not None
        first.stop()
        first.stop()
        assert live_members(pid) == []
        assert not first.root.exists()


@pytest.mark.postfix
def test_flush_retries_deferred_mail(local_mta: Callable[..., LocalMta]) -> None:
    """With a long queue lifetime a deferred message waits in the queue; once the receiving
    server accepts, flush() delivers it."""
    rig = local_mta(maximal_queue_lifetime="1h", retry_delay="1h")
    uuid = str(uuidlib.uuid4())
    rcpt = f"defer-{uuid[:8]}@sink.test"
    qid = rig.send(uuid, [rcpt])
    rig.mta.wait_for_log(lambda text: f"{qid}: to=<{rcpt}>" in text, timeout=20)
    assert not rig.mta.queue_is_empty()
    rig.sink.rules.pop("defer")
    rig.mta.flush()
    rig.settle([qid], timeout=20)
    assert [(rcpt,)] == [m.rcpt_tos for m in rig.sink.messages()]


def test_missing_postfix_fails_with_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the postfix binary, starting an instance raises PostfixUnavailable whose one-line
    message names the binary and how to install it."""
    monkeypatch.setattr(devtools.postfix, "POSTFIX", Path("/nonexistent/sbin/postfix"))
    instance = PostfixInstance(PostfixSettings(relay="[127.0.0.1]:9"))
    with pytest.raises(PostfixUnavailable) as raised:
        instance.start()
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert "/nonexistent/sbin/postfix not found" in message
    assert "scripts/bootstrap.sh" in message


REPO_ROOT = Path(devtools.postfix.__file__).resolve().parents[1]


@pytest.fixture
def instances_dir() -> Iterator[Path]:
    """A parent directory for instances that the postfix user can traverse (tmp_path cannot)."""
    parent = Path(tempfile.mkdtemp(prefix="sendpost-reap-test-"))
    parent.chmod(0o755)
    yield parent
    reap_abandoned(parent, DIR_PREFIX)  # the abandoned instance, should the test have failed
    shutil.rmtree(parent, ignore_errors=True)


ABANDON = """
import os
from devtools.postfix import PostfixInstance, PostfixSettings
mta = PostfixInstance(PostfixSettings(relay="[127.0.0.1]:9"), parent_dir={parent!r}).start()
print(mta.root, mta.master_pid(), flush=True)
os._exit(0)  # no stop(), no atexit: the instance is left running
"""


@pytest.mark.postfix
def test_instance_abandoned_by_a_dead_process_is_reaped(
    instances_dir: Path, postfix_instance: Callable[[PostfixSettings], PostfixInstance]
) -> None:
    """An instance whose owning process died without stop() is killed and removed by the next
    start in the same parent directory; live instances and kept directories are left alone."""
    parent = instances_dir
    code = ABANDON.format(parent=str(parent))
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO_ROOT,
    )
    root, master = done.stdout.split()
    assert Path(root).is_dir()
    assert live_members(int(master))
    kept = parent / "sendpost-postfix-kept"
    kept.mkdir()
    with SmtpSink() as sink:
        live = PostfixInstance(PostfixSettings(relay=sink.nexthop), parent_dir=str(parent)).start()
        try:
            postfix_instance(PostfixSettings(relay=sink.nexthop))  # elsewhere: reaps nothing here
            newer = PostfixInstance(PostfixSettings(relay=sink.nexthop), parent_dir=str(parent))
            newer.start().stop()
            assert [] == live_members(int(master))
            assert not Path(root).exists()
            assert live.root.is_dir()
            assert kept.is_dir()
        finally:
            live.stop()


# Lines of a real run (content filter on port 41719), trimmed to what the trace looks at.
TRACE_LOG = (Path(__file__).parent / "data" / "trace.log").read_text()


def test_trace_follows_filter_copies_and_notifications() -> None:
    """The trace links a message to its re-injected copy (a `queued as` reply from the filter's
    port, not from any other relay) and to the notification about the copy, and lists what has
    not been removed yet."""
    trace = trace_messages(TRACE_LOG, ["4jXFbw5W9CzJ9Ps"], filter_port=41719)
    assert frozenset({"4jXFbw5W9CzJ9Ps", "4jXFbw5kztzJ9Px"}) == trace.queue_ids
    assert frozenset({"4jXFbw62MPzJ9Q6"}) == trace.notifications
    assert frozenset({"4jXFbw62MPzJ9Q6"}) == trace.unfinished
    assert 9 == len(trace.lines)
    without_filter = trace_messages(TRACE_LOG, ["4jXFbw5W9CzJ9Ps"], filter_port=None)
    assert frozenset({"4jXFbw5W9CzJ9Ps"}) == without_filter.queue_ids
