"""What `make packages` publishes besides the packages: signed checksums, the signed .rpm and the
yum repository (the apt repository is used for real in test_debian11.py)."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.agent.packaging.conftest import SLOW

pytestmark = SLOW

REPO_NS = {"r": "http://linux.duke.edu/metadata/repo", "c": "http://linux.duke.edu/metadata/common"}


def _gpgv(dist: Path, signature: Path, signed: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gpgv", "--keyring", str(dist / "sendpost-agent.gpg"), str(signature), str(signed)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_checksums_are_signed_and_right(dist_dir: Path) -> None:
    """SHA256SUMS lists every download with its real SHA-256, and its signature verifies with the
    published key (and no longer does once the list is changed)."""
    sums = dist_dir / "SHA256SUMS"
    listed = dict(reversed(line.split()) for line in sums.read_text().splitlines())
    names = {p.name for p in dist_dir.iterdir() if p.name.endswith((".deb", ".rpm", ".sh"))}
    assert set(listed) == names | {"sendpost-agent"}
    for name, digest in listed.items():
        assert hashlib.sha256((dist_dir / name).read_bytes()).hexdigest() == digest, name
    assert _gpgv(dist_dir, dist_dir / "SHA256SUMS.asc", sums).returncode == 0
    forged = dist_dir / "forged"
    forged.write_text(sums.read_text().replace(next(iter(listed.values())), "0" * 64))
    assert _gpgv(dist_dir, dist_dir / "SHA256SUMS.asc", forged).returncode != 0


def test_rpm_is_signed(dist_dir: Path, tmp_path: Path) -> None:
    """rpm checks the .rpm's signature with the published key; without the key it cannot."""
    rpm = next((dist_dir / "yum").glob("*.rpm"))
    without = subprocess.run(["rpmkeys", "--dbpath", str(tmp_path / "empty"), "-K", str(rpm)],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert without.returncode != 0
    db = str(tmp_path / "db")
    subprocess.run(["rpmkeys", "--dbpath", db, "--import", str(dist_dir / "sendpost-agent.asc")],
                   check=True, timeout=60)  # fmt: skip
    checked = subprocess.run(["rpmkeys", "--dbpath", db, "-K", str(rpm)],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (checked.returncode, checked.stdout.strip()) == (0, f"{rpm}: digests signatures OK")


def test_yum_repository(dist_dir: Path) -> None:
    """repodata/repomd.xml is signed with the published key, and its primary metadata lists the
    package with the location and SHA-256 of the file in the repository."""
    yum = dist_dir / "yum"
    repomd = yum / "repodata" / "repomd.xml"
    assert _gpgv(dist_dir, yum / "repodata" / "repomd.xml.asc", repomd).returncode == 0
    # Our own build output, not outside input.
    primary_href = ET.parse(repomd).find(  # noqa: S314
        "r:data[@type='primary']/r:location", REPO_NS
    )
    assert primary_href is not None
    primary_gz = (yum / primary_href.attrib["href"]).read_bytes()
    primary = ET.fromstring(gzip.decompress(primary_gz))  # noqa: S314
    packages = primary.findall("c:package", REPO_NS)
    assert [p.findtext("c:name", namespaces=REPO_NS) for p in packages] == ["sendpost-agent"]
    href = packages[0].find("c:location", REPO_NS).attrib["href"]  # type: ignore[union-attr]
    digest = packages[0].findtext("c:checksum", namespaces=REPO_NS)
    assert hashlib.sha256((yum / href).read_bytes()).hexdigest() == digest
    assert (
        (yum / "RPM-GPG-KEY-sendpost-agent")
        .read_text()
        .startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    )
