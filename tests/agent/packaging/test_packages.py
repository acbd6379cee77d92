"""The .deb and .rpm: version, metadata, files with their modes and owners, maintainer scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sendpost_agent import __version__

pytestmark = pytest.mark.slow


def _out(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout


def test_deb_control_fields(deb_package: Path) -> None:
    """Name, the agent's version, the build architecture and a C library floor in Depends."""
    fields = _out("dpkg-deb", "-f", str(deb_package), "Package", "Version", "Architecture")
    arch = _out("dpkg", "--print-architecture").strip()
    assert fields.splitlines() == [
        "Package: sendpost-agent",
        f"Version: {__version__}",
        f"Architecture: {arch}",
    ]
    assert _out("dpkg-deb", "-f", str(deb_package), "Depends").startswith("libc6 (>= 2.")
    assert deb_package.name == f"sendpost-agent_{__version__}_{arch}.deb"


def test_deb_contents(deb_package: Path) -> None:
    """The executable, the unit and the config (0640) are in the archive, all owned by root."""
    files = {}
    for line in _out("dpkg-deb", "-c", str(deb_package)).splitlines():
        mode, owner, _size, _date, _time, path = line.split(maxsplit=5)
        if not mode.startswith("d"):
            files[path] = (mode, owner)
    assert files == {
        "./usr/bin/sendpost-agent": ("-rwxr-xr-x", "root/root"),
        "./lib/systemd/system/sendpost-agent.service": ("-rw-r--r--", "root/root"),
        "./etc/sendpost-agent/config.yaml": ("-rw-r-----", "root/root"),
        "./usr/share/doc/sendpost-agent/copyright": ("-rw-r--r--", "root/root"),
    }


def test_deb_maintainer_scripts(deb_package: Path, tmp_path: Path) -> None:
    """The config is a conffile; postinst creates the system user in group adm and gives the
    config to its group with mode 0640; the scripts are valid sh."""
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb_package), str(control)], check=True, timeout=60)
    assert (control / "conffiles").read_text() == "/etc/sendpost-agent/config.yaml\n"
    postinst = (control / "postinst").read_text()
    for expected in (
        "useradd --system --gid sendpost-agent",
        "usermod --append --groups adm sendpost-agent",
        "chown root:sendpost-agent /etc/sendpost-agent/config.yaml",
        "chmod 0640 /etc/sendpost-agent/config.yaml",
    ):
        assert expected in postinst
    for script in ("postinst", "prerm", "postrm"):
        path = control / script
        syntax = subprocess.run(["sh", "-n", str(path)], capture_output=True, timeout=10)
        assert (script, path.stat().st_mode & 0o777, syntax.returncode) == (script, 0o755, 0)


def test_rpm_header(rpm_package: Path) -> None:
    """Name, the agent's version, the C library floor and shadow-utils for the user."""
    header = _out("rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE}\n", str(rpm_package))
    assert header == f"sendpost-agent {__version__} 1\n"
    requires = _out("rpm", "-qp", "--requires", str(rpm_package)).splitlines()
    assert "shadow-utils" in requires
    assert [r for r in requires if r.startswith("glibc >= 2.")] != []
    assert "Summary     : SendPost agent" in _out("rpm", "-qip", str(rpm_package))


def test_rpm_files(rpm_package: Path) -> None:
    """The executable, the unit, and the config as a noreplace config file, 0640
    root:sendpost-agent."""
    query = "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME}\n]"
    files = _out("rpm", "-qp", "--qf", query, str(rpm_package)).splitlines()
    assert sorted(files) == [
        "/etc/sendpost-agent drwxr-xr-x root root",
        "/etc/sendpost-agent/config.yaml -rw-r----- root sendpost-agent",
        "/usr/bin/sendpost-agent -rwxr-xr-x root root",
        "/usr/lib/systemd/system/sendpost-agent.service -rw-r--r-- root root",
        "/usr/share/doc/sendpost-agent/copyright -rw-r--r-- root root",
    ]
    assert _out("rpm", "-qp", "--configfiles", str(rpm_package)) == (
        "/etc/sendpost-agent/config.yaml\n"
    )
    scripts = _out("rpm", "-qp", "--scripts", str(rpm_package))
    assert "usermod --append --groups adm sendpost-agent" in scripts


def test_packaged_executable_is_the_build(
    agent_binary: Path, deb_package: Path, tmp_path: Path
) -> None:
    """The .deb carries the executable byte for byte (nothing stripped it: the one-file
    archive is appended to the ELF file and would break)."""
    subprocess.run(["dpkg-deb", "-x", str(deb_package), str(tmp_path)], check=True, timeout=60)
    packaged = tmp_path / "usr" / "bin" / "sendpost-agent"
    assert packaged.read_bytes() == agent_binary.read_bytes()
