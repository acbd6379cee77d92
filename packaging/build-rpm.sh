#!/usr/bin/env bash
# Build the sendpost-agent .rpm around the unpacked build made by build-binary.sh (needs
# rpmbuild: Debian's `rpm` package provides it).
#
#   packaging/build-rpm.sh TREE OUT_DIR
#
# TREE is build-binary.sh's OUT_DIR/sendpost-agent.dir, installed as /usr/lib/sendpost-agent;
# `Requires: glibc` only if the tree uses the host's C library (packaging/glibc_floor.py).
#
# Writes OUT_DIR/sendpost-agent-VERSION-1.ARCH.rpm and prints its path.
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 TREE OUT_DIR" >&2; exit 2; }
command -v rpmbuild >/dev/null || { echo "build-rpm: rpmbuild not found (apt-get install rpm)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
tree=$1
[[ -x $tree/sendpost-agent ]] || { echo "build-rpm: $tree/sendpost-agent not found" >&2; exit 1; }
mkdir -p "$2"
out=$(cd "$2" && pwd)
version=$("$here/version.sh")
arch=$(uname -m)
glibc=$("$here/../.venv/bin/python" "$here/glibc_floor.py" "$tree" --libdir /usr/lib/sendpost-agent)
floor=()
[[ -z $glibc ]] || floor=(--define "glibc_floor $glibc")

top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
sources="$top/sources"
mkdir -p "$sources"
cp -a "$tree" "$sources/tree"
cp "$here/systemd/sendpost-agent.service" "$here/config.yaml" "$here/copyright" "$sources/"

# HOME points into the scratch dir so that no ~/.rpmmacros of the builder changes the result.
HOME="$top" rpmbuild --quiet -bb --target "$arch" \
    --define "_topdir $top" \
    --define "agent_version $version" \
    "${floor[@]}" \
    --define "sources_dir $sources" \
    --define "_rpmdir $top/rpms" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    "$here/rpm/sendpost-agent.spec" >/dev/null
rpm="$out/sendpost-agent-$version-1.$arch.rpm"
mv "$top/rpms/sendpost-agent-$version-1.$arch.rpm" "$rpm"
echo "$rpm"
