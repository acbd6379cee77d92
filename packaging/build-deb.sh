#!/usr/bin/env bash
# Build the sendpost-agent .deb around an executable made by build-binary.sh.
#
#   packaging/build-deb.sh BINARY OUT_DIR
#
# Writes OUT_DIR/sendpost-agent_VERSION_ARCH.deb (the version is the agent package's) and prints
# its path. Contents: /usr/bin/sendpost-agent, the systemd unit, the example config as a conffile
# (mode 0640, group sendpost-agent set by postinst once the group exists).
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 BINARY OUT_DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
binary=$1
mkdir -p "$2"
out=$(cd "$2" && pwd)
version=$("$here/version.sh")
arch=$(dpkg --print-architecture)
# The executable embeds libraries built against this machine's C library: ask for at least it.
glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
install -D -m 0755 "$binary" "$root/usr/bin/sendpost-agent"
install -D -m 0644 "$here/systemd/sendpost-agent.service" \
    "$root/lib/systemd/system/sendpost-agent.service"
install -D -m 0640 "$here/config.yaml" "$root/etc/sendpost-agent/config.yaml"
install -D -m 0644 "$here/copyright" "$root/usr/share/doc/sendpost-agent/copyright"

install -d -m 0755 "$root/DEBIAN"
size_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@GLIBC@/$glibc/" \
    -e "s/@SIZE_KB@/$size_kb/" "$here/deb/control.in" >"$root/DEBIAN/control"
echo /etc/sendpost-agent/config.yaml >"$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$here/deb/$script" "$root/DEBIAN/$script"
done

deb="$out/sendpost-agent_${version}_${arch}.deb"
# --root-owner-group: every file root:root in the archive, whoever builds it.
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
