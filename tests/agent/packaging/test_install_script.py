"""install.sh: argument checks, a dry run that changes nothing, and real installs into --root."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from sendpost_agent.config import load

from tests.agent.packaging.conftest import PACKAGING
from tests.support.fake_ingest import FakeIngest

INSTALL = PACKAGING / "install.sh"


def _install(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the script as `curl ... | bash -s -- ARGS` does: the script text on stdin."""
    return subprocess.run(
        ["bash", "-s", "--", *args],
        input=INSTALL.read_text(),
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_AGENT_")},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--api-key is required"),
        (["--api-key"], "--api-key needs a value"),
        (["--api-key", "--mta", "postfix"], "--api-key needs a value (got the option --mta)"),
        (["--api-key", "k", "--mta", "exim"], "--mta: unsupported MTA 'exim'"),
        (["--api-key", "k", "--endpoint", "ftp://x/y"], "--endpoint must be an http://"),
        (["--api-key", "k", "--endpoint", "https://"], "--endpoint must be an http://"),
        (["--api-key", "two words"], "--api-key must be one word"),
        (["--api-key", "k", "--log-path", "mail.log"], "--log-path must be an absolute path"),
        (["--api-key", "k", "--package", "/nonexistent.deb"], "--package: no such file"),
        (["--api-key", "k", "--root", "/nonexistent"], "--root: no such directory"),
        (["--api-key", "k", "--colour"], "unknown option --colour"),
    ],
)
def test_bad_arguments(args: list[str], message: str) -> None:
    """Each bad argument gives exit status 2 and one line on stderr naming the flag."""
    result = _install(*args)
    lines = result.stderr.splitlines()
    assert (result.returncode, len(lines), result.stdout) == (2, 1, "")
    assert lines[0].startswith(f"install.sh: {message}"), lines[0]


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    """--dry-run says what it would do (the package manager, the config) and writes no file."""
    result = _install(
        "--api-key", "sp_key_123", "--mta", "postfix", "--endpoint", "https://example.test/in",
        "--root", str(tmp_path), "--dry-run",
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    config = tmp_path / "etc" / "sendpost-agent" / "config.yaml"
    assert f"would write {config} (mode 0640" in result.stdout
    assert "endpoint: https://example.test/in" in result.stdout
    assert "sp_key_123" not in result.stdout  # the key is not echoed in full
    assert (result.stdout.splitlines()[-1], list(tmp_path.iterdir())) == (
        "dry run: nothing was changed",
        [],
    )


def _check_install(package: Path, tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("")
    root = tmp_path / "root"
    root.mkdir()
    with FakeIngest(keys={"sp_key_123"}) as ingest:
        result = _install(
            "--api-key", "sp_key_123", "--mta", "postfix", "--endpoint", ingest.url,
            "--log-path", str(log), "--package", str(package), "--root", str(root),
        )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    assert (
        result.stdout.splitlines()[-1] == "done: sendpost-agent is installed and the check passed"
    )
    assert f"ok   the endpoint {ingest.url} accepts the API key" in result.stdout
    config = root / "etc" / "sendpost-agent" / "config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    doc = yaml.safe_load(config.read_text())
    assert doc == {
        "api-key": "sp_key_123",
        "mta": "postfix",
        "endpoint": ingest.url,
        "log-path": str(log),
        "listen": "127.0.0.1:9113",
    }
    settings = load({}, {}, config)
    assert (settings.api_key, settings.endpoint, settings.log_path) == (
        "sp_key_123",
        ingest.url,
        log,
    )
    assert (root / "usr" / "bin" / "sendpost-agent").stat().st_mode & 0o111 != 0


@pytest.mark.slow
def test_install_deb_into_root(deb_package: Path, tmp_path: Path) -> None:
    """With the real .deb: unpacked into --root, config written with the key (0640), and the
    packaged executable's `check` passes against a live endpoint."""
    _check_install(deb_package, tmp_path)


@pytest.mark.slow
def test_install_rpm_into_root(rpm_package: Path, tmp_path: Path) -> None:
    """The same with the real .rpm."""
    _check_install(rpm_package, tmp_path)


@pytest.mark.slow
def test_reinstall_keeps_local_settings(deb_package: Path, tmp_path: Path) -> None:
    """A second run with a new key replaces the four managed keys and keeps the operator's
    other settings and comments."""
    root = tmp_path / "root"
    root.mkdir()
    config = root / "etc" / "sendpost-agent" / "config.yaml"
    common = ["--package", str(deb_package), "--root", str(root), "--no-start"]
    _install("--api-key", "old", "--log-path", "/var/log/mail.log", *common)
    with config.open("a") as handle:
        handle.write("# our relay\ninternal-relays: [10.0.0.5]\n")
    result = _install("--api-key", "new", "--log-path", "/var/log/maillog", *common)
    assert "wrote" in result.stdout
    text = config.read_text()
    assert "# our relay" in text
    doc = yaml.safe_load(text)
    assert (doc["api-key"], doc["log-path"], doc["internal-relays"]) == (
        "new",
        "/var/log/maillog",
        ["10.0.0.5"],
    )
    assert text.count("api-key:") == 1
