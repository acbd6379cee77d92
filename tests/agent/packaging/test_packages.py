"""The .deb and .rpm: version, metadata, files with their modes and owners, maintainer scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sendpost_agent import __version__

from tests.agent.packaging.conftest import SLOW

pytestmark = SLOW


def _out(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout


def test_deb_control_fields(deb_package: Path) -> None:
    """Name, the agent's version, the build architecture; Depends has no C library (the tree
    carries its own: packaging/glibc_floor.py finds no floor) but passwd for the user."""
    fields = _out("dpkg-deb", "-f", str(deb_package), "Package", "Version", "Architecture")
    arch = _out("dpkg", "--print-architecture").strip()
    assert fields.splitlines() == [
        "Package: sendpost-agent",
        f"Version: {__version__}",
        f"Architecture: {arch}",
    ]
    assert _out("dpkg-deb", "-f", str(deb_package), "Depends") == "passwd\n"
    assert deb_package.name == f"sendpost-agent_{__version__}_{arch}.deb"


def test_deb_contents(deb_package: Path) -> None:
    """The unpacked build under /usr/lib/sendpost-agent (with its loader and libc), the command
    as a link to it, the unit and the config (0640), all owned by root."""
    files = {}
    for line in _out("dpkg-deb", "-c", str(deb_package)).splitlines():
        mode, owner, _size, _date, _time, path = line.split(maxsplit=5)
        if path.startswith("./usr/lib/sendpost-agent/_internal/"):
            continue
        if not mode.startswith("d"):
            files[path] = (mode, owner)
    assert files == {
        "./usr/bin/sendpost-agent -> ../lib/sendpost-agent/sendpost-agent": (
            "lrwxrwxrwx",
            "root/root",
        ),
        "./usr/lib/sendpost-agent/sendpost-agent": ("-rwxr-xr-x", "root/root"),
        "./usr/lib/sendpost-agent/glibc/ld-linux-x86-64.so.2": ("-rwxr-xr-x", "root/root"),
        "./usr/lib/sendpost-agent/glibc/libc.so.6": ("-rwxr-xr-x", "root/root"),
        "./usr/lib/sendpost-agent/glibc/libdl.so.2": ("-rw-r--r--", "root/root"),
        "./usr/lib/sendpost-agent/glibc/libm.so.6": ("-rw-r--r--", "root/root"),
        "./usr/lib/sendpost-agent/glibc/libpthread.so.0": ("-rw-r--r--", "root/root"),
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
    """Name, the agent's version, shadow-utils for the user and no C library requirement."""
    header = _out("rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE}\n", str(rpm_package))
    assert header == f"sendpost-agent {__version__} 1\n"
    requires = _out("rpm", "-qp", "--requires", str(rpm_package)).splitlines()
    assert "shadow-utils" in requires
    assert [r for r in requires if r.startswith("glibc")] == []
    assert "Summary     : SendPost agent" in _out("rpm", "-qip", str(rpm_package))


def test_rpm_files(rpm_package: Path) -> None:
    """The executable, the unit, and the config as a noreplace config file, 0640
    root:sendpost-agent."""
    query = "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME}\n]"
    files = [
        line
        for line in _out("rpm", "-qp", "--qf", query, str(rpm_package)).splitlines()
        if not line.startswith("/usr/lib/sendpost-agent/")
    ]
    assert sorted(files) == [
        "/etc/sendpost-agent drwxr-xr-x root root",
        "/etc/sendpost-agent/config.yaml -rw-r----- root sendpost-agent",
        "/usr/bin/sendpost-agent lrwxrwxrwx root root",
        "/usr/lib/sendpost-agent drwxr-xr-x root root",
        "/usr/lib/systemd/system/sendpost-agent.service -rw-r--r-- root root",
        "/usr/share/doc/sendpost-agent/copyright -rw-r--r-- root root",
        "/var/lib/sendpost-agent drwxr-x--- sendpost-agent sendpost-agent",
    ]
    assert _out("rpm", "-qp", "--configfiles", str(rpm_package)) == (
        "/etc/sendpost-agent/config.yaml\n"
    )
    scripts = _out("rpm", "-qp", "--scripts", str(rpm_package))
    assert "usermod --append --groups adm sendpost-agent" in scripts


def test_packaged_executable_is_the_build(
    agent_tree: Path, deb_package: Path, tmp_path: Path
) -> None:
    """The .deb carries the unpacked build byte for byte (nothing stripped or changed it)."""
    subprocess.run(["dpkg-deb", "-x", str(deb_package), str(tmp_path)], check=True, timeout=60)
    packaged = tmp_path / "usr" / "lib" / "sendpost-agent"
    built = sorted(p.relative_to(agent_tree) for p in agent_tree.rglob("*") if p.is_file())
    assert sorted(p.relative_to(packaged) for p in packaged.rglob("*") if p.is_file()) == built
    for name in built:
        assert (packaged / name).read_bytes() == (agent_tree / name).read_bytes(), name
