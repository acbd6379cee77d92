"""A journald-only host, for real: the real systemd-journald and a real Postfix logging through
syslog(3) (no maillog_file, no rsyslog, no /var/log/mail.log), in a private mount namespace
(journald_host.py); the agent with the default log-path finds Postfix in the journal and ships
every message's event, across a SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postfix, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
MESSAGES = 12


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """What journald_host.py reports after running the whole scene once."""
    work = tmp_path_factory.mktemp("journald-host")
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private",
         sys.executable, "-m", "tests.agent.postfix.journald_host", str(work), str(MESSAGES)],
        cwd=ROOT, capture_output=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_postfix_logs_to_the_journal_as_the_source_expects(host: dict[str, object]) -> None:
    """Postfix 3.7 (Debian 12) through journald: identifiers ``postfix/<program>``, facility
    mail (2), transport syslog: what the source's ``SYSLOG_FACILITY=2`` match takes."""
    journal = host["journal"]
    assert isinstance(journal, dict)
    identifiers = journal["identifiers"]
    for program in ("master", "smtpd", "cleanup", "qmgr", "smtp"):
        assert identifiers[f"postfix/{program}"] == ["2"], program
    assert all(f == ["2"] for f in identifiers.values())
    assert journal["transports"] == ["syslog"]


def test_check_says_it_reads_the_journal_and_why(host: dict[str, object]) -> None:
    """`check` with the default log-path on this host: the journal, because mail.log does not
    exist and the journal holds Postfix's entries; exit 0."""
    assert host["check_status"] == 0, host["check"]
    assert (
        "ok   the log: the systemd journal (/var/log/mail.log does not exist and the journal "
        "holds Postfix's log entries)"
    ) in str(host["check"]).splitlines()


def test_every_message_is_reported_across_a_sigkill(host: dict[str, object]) -> None:
    """Every submitted message has its delivered event, from an agent killed half-way and
    started again; an event received twice is the same event."""
    events = host["events"]
    assert isinstance(events, list)
    delivered = {e["message_id"] for e in events if e["event_type"] == "delivered"}
    assert delivered == set(host["uuids"])  # type: ignore[arg-type]
    copies: dict[str, set[str]] = {}
    for event in events:
        copies.setdefault(event["event_id"], set()).add(json.dumps(event, sort_keys=True))
    assert all(len(c) == 1 for c in copies.values())
    assert host["agent_status"] == 0
    assert "log journald (/var/log/mail.log does not exist" in str(host["agent_log"])


def test_check_as_a_user_outside_systemd_journal(host: dict[str, object]) -> None:
    """`check` run by a user outside systemd-journal (and adm) on the same host: it fails with
    one line that says the journal cannot be read by this user and which group to add."""
    assert host["unprivileged_status"] == 1, host["unprivileged_check"]
    assert (
        "FAIL the log: config: log-path='/var/log/mail.log': does not exist and the journal "
        "cannot be read by this user (add it to the systemd-journal group); set log-path to "
        "Postfix's log file, or to journald"
    ) in str(host["unprivileged_check"]).splitlines()
