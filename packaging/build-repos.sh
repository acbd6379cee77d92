#!/usr/bin/env bash
# Publish the built packages the way the download site serves them, all signed:
#
#   packaging/build-repos.sh DIST [KEY_DIR]
#
# DIST holds sendpost-agent (the single file), the .deb, the .rpm and install.sh. Adds
#   DIST/SHA256SUMS, DIST/SHA256SUMS.asc   checksums of every download, and their signature;
#   DIST/sendpost-agent.asc, .gpg          the public key to check them with (ASCII armour, and a
#                                          binary keyring for apt's signed-by);
#   DIST/apt/                              an apt repository (apt-ftparchive): dists/stable with
#                                          InRelease and Release.gpg, pool/main;
#   DIST/yum/                              a yum/dnf repository (createrepo_c), repomd.xml.asc;
#                                          the .rpm itself is signed too (rpmsign).
# KEY_DIR (default build/repo-key) is a GnuPG home: its first secret key signs; when it has none,
# a test key without passphrase is generated there (a release build passes the real key's home).
# RSA, not Ed25519: rpm before 4.16 (RHEL 8, Amazon Linux 2) cannot check EdDSA signatures.
set -euo pipefail

[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: $0 DIST [KEY_DIR]" >&2; exit 2; }
die() { printf 'build-repos: %s\n' "$*" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
dist=$(cd "$1" && pwd)
mkdir -p "${2:-$here/../build/repo-key}"
export GNUPGHOME=$(cd "${2:-$here/../build/repo-key}" && pwd)
chmod 0700 "$GNUPGHOME"
for tool in gpg apt-ftparchive createrepo_c rpmsign; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install gpg apt-utils createrepo-c rpm)"
done

if ! gpg --batch --list-secret-keys 2>/dev/null | grep -q '^sec'; then
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
        --quick-generate-key "SendPost agent test repository <packages@sendpost.invalid>" \
        rsa3072 sign never
fi
fingerprint=$(gpg --batch --with-colons --list-secret-keys | awk -F: '$1 == "fpr" {print $10; exit}')
sign() { gpg --batch --yes --quiet --trust-model always --pinentry-mode loopback --passphrase '' -u "$fingerprint" "$@"; }
gpg --batch --yes --armor --export "$fingerprint" >"$dist/sendpost-agent.asc"
# The same key as a binary keyring, for apt's signed-by (/usr/share/keyrings/).
gpg --batch --yes --export "$fingerprint" >"$dist/sendpost-agent.gpg"

deb=$(cd "$dist" && ls sendpost-agent_*.deb)
rpm=$(cd "$dist" && ls sendpost-agent-*.rpm)

# The .rpm carries its own signature (yum/dnf gpgcheck=1); apt checks the repository's instead.
HOME="$GNUPGHOME" rpmsign --addsign --define "_gpg_name $fingerprint" \
    --define "_gpg_path $GNUPGHOME" --define "__gpg $(command -v gpg)" "$dist/$rpm" >/dev/null

# apt: pool/main/s/sendpost-agent/*.deb, Packages for each architecture, a signed Release.
rm -rf "$dist/apt"
arch=$(dpkg-deb -f "$dist/$deb" Architecture)
mkdir -p "$dist/apt/pool/main/s/sendpost-agent" "$dist/apt/dists/stable/main/binary-$arch"
cp "$dist/$deb" "$dist/apt/pool/main/s/sendpost-agent/"
(
    cd "$dist/apt"
    apt-ftparchive packages pool >"dists/stable/main/binary-$arch/Packages"
    gzip -9nk "dists/stable/main/binary-$arch/Packages"
    apt-ftparchive -o APT::FTPArchive::Release::Origin=SendPost \
        -o APT::FTPArchive::Release::Label=sendpost-agent \
        -o APT::FTPArchive::Release::Suite=stable -o APT::FTPArchive::Release::Codename=stable \
        -o APT::FTPArchive::Release::Components=main \
        -o "APT::FTPArchive::Release::Architectures=$arch" \
        release dists/stable >dists/stable/Release
    sign --clearsign -o dists/stable/InRelease dists/stable/Release
    sign --armor --detach-sign -o dists/stable/Release.gpg dists/stable/Release
)

# yum/dnf: the rpm and repodata/, repomd.xml signed (repo_gpgcheck=1).
rm -rf "$dist/yum"
mkdir -p "$dist/yum"
cp "$dist/$rpm" "$dist/yum/"
createrepo_c --quiet "$dist/yum"
sign --armor --detach-sign -o "$dist/yum/repodata/repomd.xml.asc" "$dist/yum/repodata/repomd.xml"
cp "$dist/sendpost-agent.asc" "$dist/yum/RPM-GPG-KEY-sendpost-agent"

# Checksums of every download, signed: install.sh checks them before it installs anything.
(cd "$dist" && sha256sum sendpost-agent "$deb" "$rpm" install.sh >SHA256SUMS)
sign --armor --detach-sign -o "$dist/SHA256SUMS.asc" "$dist/SHA256SUMS"
gpgconf --kill gpg-agent 2>/dev/null || true
echo "$dist"
