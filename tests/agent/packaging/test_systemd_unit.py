"""The systemd unit: unprivileged user in adm, restart on failure, stop bound, hardening."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sendpost_agent.config import Settings

from tests.agent.packaging.conftest import PACKAGING, ROOT

UNIT = PACKAGING / "systemd" / "sendpost-agent.service"


def _directives(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values in order (systemd allows a key more than once)."""
    section, out = "", {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key), []).append(value)
    return out


def test_service_identity_and_command() -> None:
    """Runs as sendpost-agent with adm for the log file and systemd-journal for the journal,
    with the packaged config file."""
    unit = _directives(UNIT.read_text())
    service = {key: values for (section, key), values in unit.items() if section == "Service"}
    assert {k: service[k] for k in ("User", "Group", "SupplementaryGroups", "ExecStart")} == {
        "User": ["sendpost-agent"],
        "Group": ["sendpost-agent"],
        "SupplementaryGroups": ["adm", "systemd-journal"],
        "ExecStart": ["/usr/bin/sendpost-agent run --config /etc/sendpost-agent/config.yaml"],
    }
    assert unit[("Install", "WantedBy")] == ["multi-user.target"]


def test_restart_stop_and_state() -> None:
    """Restarts on failure; SIGTERM with room for the agent's shutdown bound; state dir."""
    unit = _directives(UNIT.read_text())
    assert [unit[("Service", k)] for k in ("Restart", "KillSignal", "StateDirectory")] == [
        ["on-failure"],
        ["SIGTERM"],
        ["sendpost-agent"],
    ]
    match = re.fullmatch(r"(\d+)s", unit[("Service", "TimeoutStopSec")][0])
    assert match is not None
    assert int(match.group(1)) > Settings().shutdown_timeout + 5


def test_hardening() -> None:
    """No privileges at all, a read-only system, no home, a private /tmp, a read-only log."""
    unit = _directives(UNIT.read_text())
    hardening = {
        "NoNewPrivileges": ["yes"],
        "CapabilityBoundingSet": [""],
        "AmbientCapabilities": [""],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "ReadOnlyPaths": ["/var/log"],
        "RestrictSUIDSGID": ["yes"],
    }
    assert {key: unit[("Service", key)] for key in hardening} == hardening


def _unit_with_exec(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at an executable that exists here (the venv's command):
    systemd-analyze checks that the program exists."""
    agent = ROOT / ".venv" / "bin" / "sendpost-agent"
    text = UNIT.read_text().replace("ExecStart=/usr/bin/sendpost-agent", f"ExecStart={agent}")
    path = tmp_path / "sendpost-agent.service"
    path.write_text(text)
    return path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd itself finds nothing wrong with the unit."""
    result = subprocess.run(
        ["systemd-analyze", "verify", str(_unit_with_exec(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_security_exposure_is_low(tmp_path: Path) -> None:
    """systemd-analyze security rates the sandbox at most 2.0 ("OK"; 10 is unprotected)."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(_unit_with_exec(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0
