"""install.sh: argument checks, a dry run that changes nothing, and real installs into --root."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from sendpost_agent.config import load

from tests.agent.packaging.conftest import PACKAGING
from tests.support.fake_ingest import FakeIngest

INSTALL = PACKAGING / "install.sh"


def _install(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the script as `curl ... | bash -s -- ARGS` does: the script text on stdin; KEY in
    SENDPOST_AGENT_API_KEY."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_AGENT_")}
    if key is not None:
        env["SENDPOST_AGENT_API_KEY"] = key
    return subprocess.run(
        ["bash", "-s", "--", *args],
        input=INSTALL.read_text(),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the API key is required (--api-key-file FILE"),
        (["--api-key-file", "/nonexistent"], "--api-key-file: cannot read '/nonexistent'"),
        (["--api-key", "k", "--checksums", "/nonexistent"], "--checksums: no such file"),
        (["--api-key", "k", "--public-key", "/nonexistent"], "--public-key: no such file"),
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
    lines = [line for line in result.stderr.splitlines() if "warning: --api-key" not in line]
    assert (result.returncode, len(lines), result.stdout) == (2, 1, "")
    assert lines[0].startswith(f"install.sh: {message}"), lines[0]


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    """--dry-run says what it would do (the package manager, the config) and writes no file."""
    result = _install(
        "--mta", "postfix", "--endpoint", "https://example.test/in",
        "--root", str(tmp_path), "--dry-run", key="sp_key_123",
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
            "--mta", "postfix", "--endpoint", ingest.url,
            "--log-path", str(log), "--package", str(package), "--root", str(root),
            key="sp_key_123",
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
@pytest.mark.timeout(1200)
def test_install_deb_into_root(deb_package: Path, tmp_path: Path) -> None:
    """With the real .deb: unpacked into --root, config written with the key (0640), and the
    packaged executable's `check` passes against a live endpoint."""
    _check_install(deb_package, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_install_rpm_into_root(rpm_package: Path, tmp_path: Path) -> None:
    """The same with the real .rpm."""
    _check_install(rpm_package, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_reinstall_keeps_local_settings(deb_package: Path, tmp_path: Path) -> None:
    """A second run with a new key replaces the four managed keys and keeps the operator's
    other settings and comments."""
    root = tmp_path / "root"
    root.mkdir()
    config = root / "etc" / "sendpost-agent" / "config.yaml"
    common = ["--package", str(deb_package), "--root", str(root), "--no-start"]
    _install("--log-path", "/var/log/mail.log", *common, key="old")
    with config.open("a") as handle:
        handle.write("# our relay\ninternal-relays: [10.0.0.5]\n")
    result = _install("--log-path", "/var/log/maillog", *common, key="new")
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


@pytest.mark.parametrize("source", ["file", "stdin", "env", "flag"])
def test_api_key_sources(source: str, tmp_path: Path) -> None:
    """The key is read from a file, standard input (--api-key-file -) or the environment, and
    never shown; --api-key still works but warns that ps and sudo's log show it."""
    key_file = tmp_path / "key"
    key_file.write_text("sp_from_somewhere\n")
    root = tmp_path / "root"
    root.mkdir()
    args = {
        "file": ["--api-key-file", str(key_file)],
        "stdin": ["--api-key-file", "-"],
        "env": [],
        "flag": ["--api-key", "sp_from_somewhere"],
    }[source]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_AGENT_")}
    if source == "env":
        env["SENDPOST_AGENT_API_KEY"] = "sp_from_somewhere"
    result = subprocess.run(
        ["bash", str(INSTALL), *args, "--root", str(root), "--dry-run"],
        input="sp_from_somewhere\n" if source == "stdin" else "",
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "api-key: sp_f…" in result.stdout
    assert "sp_from_somewhere" not in result.stdout + result.stderr
    warned = "warning: --api-key shows the key to every user (ps)" in result.stderr
    assert warned == (source == "flag")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_tampered_package_is_not_installed(deb_package: Path, tmp_path: Path) -> None:
    """A package whose SHA-256 is not the one in SHA256SUMS is refused before anything is
    written."""
    tampered = tmp_path / "pkg" / deb_package.name
    tampered.parent.mkdir()
    tampered.write_bytes(deb_package.read_bytes() + b"\0")
    shutil.copy(deb_package.parent / "SHA256SUMS", tampered.parent / "SHA256SUMS")
    root = tmp_path / "root"
    root.mkdir()
    result = _install("--package", str(tampered), "--root", str(root), key="k")
    assert result.returncode == 1
    assert f"install.sh: SHA-256 mismatch for {deb_package.name}" in result.stderr
    assert "not installing" in result.stderr
    assert list(root.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_signature_is_checked_with_the_public_key(dist_dir: Path, tmp_path: Path) -> None:
    """With --public-key, SHA256SUMS.asc must verify with that key: the key build-repos.sh
    signed with passes, another key is refused before anything is installed."""
    deb = next(dist_dir.glob("sendpost-agent_*.deb"))
    good_root, bad_root = tmp_path / "good", tmp_path / "bad"
    good_root.mkdir()
    bad_root.mkdir()
    common = ["--package", str(deb), "--no-start", "--log-path", "/var/log/mail.log"]
    good = _install(*common, "--root", str(good_root), "--public-key",
                    str(dist_dir / "sendpost-agent.asc"), key="k")  # fmt: skip
    assert "the signature of SHA256SUMS is good" in good.stdout, good.stderr
    assert f"SHA-256 of {deb.name} is correct" in good.stdout
    other_home = tmp_path / "other-gnupg"
    other_home.mkdir(mode=0o700)
    subprocess.run(
        ["gpg", "--batch", "--quiet", "--homedir", str(other_home), "--pinentry-mode", "loopback",
         "--passphrase", "", "--quick-generate-key", "other <o@example.invalid>", "ed25519"],
        check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    other_key = tmp_path / "other.asc"
    other_key.write_bytes(
        subprocess.run(
            ["gpg", "--homedir", str(other_home), "--armor", "--export"],
            check=True,
            timeout=60,
            capture_output=True,
        ).stdout
    )
    subprocess.run(["gpgconf", "--homedir", str(other_home), "--kill", "gpg-agent"], timeout=30)
    bad = _install(*common, "--root", str(bad_root), "--public-key", str(other_key), key="k")
    assert bad.returncode == 1
    assert "does not verify with" in bad.stderr
    assert list(bad_root.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_download_is_verified_then_installed(dist_dir: Path, tmp_path: Path) -> None:
    """Without --package the script fetches SHA256SUMS (and its signature) from the download
    site over HTTP, then the package listed for this machine, checks both and installs it."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """No request log on stderr."""

    handler = functools.partial(Quiet, directory=str(dist_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    root = tmp_path / "root"
    root.mkdir()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_AGENT_")}
    env |= {"SENDPOST_AGENT_PACKAGE_BASE": base, "SENDPOST_AGENT_API_KEY": "k"}
    try:
        result = subprocess.run(
            ["bash", str(INSTALL), "--root", str(root), "--no-start", "--public-key",
             str(dist_dir / "sendpost-agent.asc"), "--log-path", "/var/log/mail.log"],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    deb = next(dist_dir.glob("sendpost-agent_*.deb")).name
    assert f"downloading {base}/{deb}" in result.stderr
    assert "the signature of SHA256SUMS is good" in result.stdout, result.stderr
    assert f"SHA-256 of {deb} is correct" in result.stdout
    assert (root / "usr" / "lib" / "sendpost-agent" / "sendpost-agent").is_file()
