#!/usr/bin/env bash
# Build the sendpost-agent .deb around the unpacked build made by build-binary.sh.
#
#   packaging/build-deb.sh TREE OUT_DIR
#
# TREE is build-binary.sh's OUT_DIR/sendpost-agent.dir. Writes
# OUT_DIR/sendpost-agent_VERSION_ARCH.deb (the version is the agent package's) and prints its
# path. Contents: the tree as /usr/lib/sendpost-agent with /usr/bin/sendpost-agent pointing into
# it, the systemd unit, the example config as a conffile (mode 0640, group sendpost-agent set by
# postinst once the group exists). Depends names the C library only if the tree uses the
# host's (packaging/glibc_floor.py reads the versions the files ask for).
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 TREE OUT_DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
tree=$1
[[ -x $tree/sendpost-agent ]] || { echo "build-deb: $tree/sendpost-agent not found" >&2; exit 1; }
mkdir -p "$2"
out=$(cd "$2" && pwd)
version=$("$here/version.sh")
arch=$(dpkg --print-architecture)
libdir=/usr/lib/sendpost-agent
glibc=$("$here/../.venv/bin/python" "$here/glibc_floor.py" "$tree" --libdir "$libdir")
depends="passwd"
[[ -z $glibc ]] || depends="libc6 (>= $glibc), $depends"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
mkdir -p "$root/usr/lib" "$root/usr/bin"
cp -a "$tree" "$root$libdir"
chmod -R u=rwX,go=rX "$root$libdir"
ln -s ../lib/sendpost-agent/sendpost-agent "$root/usr/bin/sendpost-agent"
install -D -m 0644 "$here/systemd/sendpost-agent.service" \
    "$root/lib/systemd/system/sendpost-agent.service"
install -D -m 0640 "$here/config.yaml" "$root/etc/sendpost-agent/config.yaml"
install -D -m 0644 "$here/copyright" "$root/usr/share/doc/sendpost-agent/copyright"

install -d -m 0755 "$root/DEBIAN"
size_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" \
    -e "s/@SIZE_KB@/$size_kb/" "$here/deb/control.in" >"$root/DEBIAN/control"
echo /etc/sendpost-agent/config.yaml >"$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$here/deb/$script" "$root/DEBIAN/$script"
done

deb="$out/sendpost-agent_${version}_${arch}.deb"
# --root-owner-group: every file root:root in the archive, whoever builds it.
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
