"""The published downloads used for real in a debootstrapped Debian 11 root: the signed apt
repository, install.sh without systemd (its printed command starts the agent), a second run
that changes nothing and an upgrade in place."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from sendpost_agent import __version__

from tests.agent.packaging.conftest import SLOW, in_root, needs_root
from tests.support.fake_ingest import FakeIngest

pytestmark = [*SLOW, needs_root]

SBIN_PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TZ": "UTC", "LC_ALL": "C"}


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _publish(dist_dir: Path, root: Path) -> Path:
    """The downloads under ROOT/srv/dist, readable by all (apt reads as its _apt user)."""
    srv = root / "srv" / "dist"
    shutil.copytree(dist_dir, srv)
    subprocess.run(["chmod", "-R", "a+rX", str(root / "srv")], check=True, timeout=60)
    return srv


def _installed_version(root: Path) -> str:
    return _ok(in_root(root, "/usr/bin/dpkg-query", "-W", "-f=${Version}", "sendpost-agent"))


def test_signed_apt_repository(
    dist_dir: Path, debian11_root: Path, overlay: Callable[[Path], Path]
) -> None:
    """apt on Debian 11 verifies the repository's InRelease with the published key, finds the
    package and installs it; the installed command runs."""
    root = overlay(debian11_root)
    _publish(dist_dir, root)
    (root / "etc" / "apt" / "sources.list.d" / "sendpost.list").write_text(
        "deb [signed-by=/srv/dist/sendpost-agent.gpg] file:/srv/dist/apt stable main\n"
    )
    only_ours = [
        "-o", "Dir::Etc::sourcelist=/etc/apt/sources.list.d/sendpost.list",
        "-o", "Dir::Etc::sourceparts=-",
    ]  # fmt: skip
    update = in_root(root, "/usr/bin/apt-get", *only_ours, "update", env=SBIN_PATH, timeout=120)
    assert update.returncode == 0, update.stdout + update.stderr
    assert "NO_PUBKEY" not in update.stderr
    assert "not signed" not in update.stderr
    _ok(in_root(root, "/usr/bin/apt-get", *only_ours, "install", "-y", "sendpost-agent",
                env=SBIN_PATH, timeout=300))  # fmt: skip
    assert _installed_version(root) == __version__
    assert _ok(in_root(root, "/usr/bin/sendpost-agent", "--version")) == (
        f"sendpost-agent {__version__}\n"
    )


def _upgraded_deb(deb: Path, tmp_path: Path, version: str) -> Path:
    """The same package with a higher version number (what the next release looks like)."""
    tree = tmp_path / "repack"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True, timeout=120)
    control = tree / "DEBIAN" / "control"
    control.write_text(
        control.read_text().replace(f"Version: {__version__}", f"Version: {version}")
    )
    out = tmp_path / f"sendpost-agent_{version}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(tree), str(out)],
                   check=True, timeout=300, capture_output=True)  # fmt: skip
    return out


def test_install_script_without_systemd(
    dist_dir: Path, debian11_root: Path, overlay: Callable[[Path], Path], tmp_path: Path
) -> None:
    """install.sh in Debian 11 without systemd: it checks the SHA-256, installs, writes the key
    from a file into a 0640 root:sendpost-agent config, and prints a command that starts the
    agent (its state directory exists). A second run changes nothing; a newer package is an
    upgrade in place that keeps the config."""
    root = overlay(debian11_root)
    srv = _publish(dist_dir, root).parent
    deb = next((srv / "dist").glob("sendpost-agent_*.deb"))
    (root / "var" / "log" / "mail.log").write_text("")
    (srv / "key").write_text("sp_key_123\n")
    with FakeIngest(keys={"sp_key_123"}) as ingest:
        args = ["/bin/bash", "/srv/dist/install.sh", "--api-key-file", "/srv/key",
                "--endpoint", ingest.url, "--package", f"/srv/dist/{deb.name}"]  # fmt: skip
        first = in_root(root, *args, env=SBIN_PATH, timeout=300)
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"SHA-256 of {deb.name} is correct" in first.stdout
        assert "done: sendpost-agent is installed and the check passed" in first.stdout
        config = root / "etc" / "sendpost-agent" / "config.yaml"
        group = _ok(
            in_root(root, "/usr/bin/stat", "-c", "%a %U:%G", "/etc/sendpost-agent/config.yaml")
        )
        assert group == "640 root:sendpost-agent\n"
        assert "sp_key_123" in config.read_text()
        command = next(
            line.strip() for line in first.stdout.splitlines() if line.startswith("  runuser")
        )
        started = in_root(root, "/usr/bin/timeout", "8", *command.split(), env=SBIN_PATH)
        assert started.returncode == 124, started.stderr  # still running when timeout stopped it
        assert "sendpost-agent running" in started.stderr

        again = in_root(root, *args, env=SBIN_PATH, timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "/etc/sendpost-agent/config.yaml is unchanged" in again.stdout

        newer = _upgraded_deb(deb, tmp_path, f"{__version__}+1")
        shutil.copy(newer, srv / newer.name)
        digest = subprocess.run(["sha256sum", newer.name], cwd=srv, capture_output=True,
                                text=True, check=True, timeout=60).stdout  # fmt: skip
        (srv / "SHA256SUMS").write_text(digest)
        upgrade = in_root(root, *args[:-1], f"/srv/{newer.name}", env=SBIN_PATH, timeout=300)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert _installed_version(root) == f"{__version__}+1"
    assert "sp_key_123" in config.read_text()
