#!/usr/bin/env bash
# Build the sendpost-agent .rpm around an executable made by build-binary.sh (needs rpmbuild:
# Debian's `rpm` package provides it).
#
#   packaging/build-rpm.sh BINARY OUT_DIR
#
# Writes OUT_DIR/sendpost-agent-VERSION-1.ARCH.rpm and prints its path.
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 BINARY OUT_DIR" >&2; exit 2; }
command -v rpmbuild >/dev/null || { echo "build-rpm: rpmbuild not found (apt-get install rpm)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
binary=$1
mkdir -p "$2"
out=$(cd "$2" && pwd)
version=$("$here/version.sh")
arch=$(uname -m)
glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')

top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
sources="$top/sources"
mkdir -p "$sources"
cp "$binary" "$sources/sendpost-agent"
cp "$here/systemd/sendpost-agent.service" "$here/config.yaml" "$here/copyright" "$sources/"

# HOME points into the scratch dir so that no ~/.rpmmacros of the builder changes the result.
HOME="$top" rpmbuild --quiet -bb --target "$arch" \
    --define "_topdir $top" \
    --define "agent_version $version" \
    --define "glibc_floor $glibc" \
    --define "sources_dir $sources" \
    --define "_rpmdir $top/rpms" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    "$here/rpm/sendpost-agent.spec" >/dev/null
rpm="$out/sendpost-agent-$version-1.$arch.rpm"
mv "$top/rpms/sendpost-agent-$version-1.$arch.rpm" "$rpm"
echo "$rpm"
