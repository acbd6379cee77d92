#!/usr/bin/env bash
# Build the agent as executables that need nothing from the host, not even its C library:
#
#   packaging/build-binary.sh OUT_DIR [WORK_DIR]
#
# Writes
#   OUT_DIR/sendpost-agent        the single-file download: PyInstaller's one-file build wrapped by
#                                 staticx with the C library it was linked against (a static
#                                 bootloader; no GLIBC_ symbol version needed from the host);
#   OUT_DIR/sendpost-agent.dir/   the same program unpacked, for the .deb and .rpm, to be installed
#                                 as LIBDIR (/usr/lib/sendpost-agent): the executable, PyInstaller's
#                                 _internal/ and glibc/ with the C library and its loader, which the
#                                 executable names as its interpreter (so nothing is unpacked at
#                                 start and the host's libc is never used).
#
# The interpreter is Debian's own /usr/bin/python3.11 (apt-get install python3.11-dev), named by
# its path, and every tool runs with a fixed PATH: whichever python3.11 comes first on the
# caller's PATH (pyenv, conda) cannot end up in the build. The build runs in a fresh virtualenv
# under WORK_DIR (default: a temporary directory) holding only sendpost-agent, its dependencies
# at the versions in uv.lock, PyInstaller and staticx.
set -euo pipefail

say() { printf '[build-binary] %s\n' "$*"; }
die() { printf 'build-binary: %s\n' "$*" >&2; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: $0 OUT_DIR [WORK_DIR]" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
here="$repo/packaging"
mkdir -p "$1"
out=$(cd "$1" && pwd)
if [[ $# -eq 2 ]]; then
    mkdir -p "$2"
    work=$(cd "$2" && pwd)
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
uv="${UV:-$repo/.tools/uv/bin/uv}"
LIBDIR=${LIBDIR:-/usr/lib/sendpost-agent}
PYTHON=/usr/bin/python3.11

# Nothing from the caller's environment that changes which tools or libraries are used.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
unset LD_LIBRARY_PATH LD_PRELOAD PYTHONPATH PYTHONHOME VIRTUAL_ENV CONDA_PREFIX PYENV_VERSION
export UV_PYTHON_DOWNLOADS=never LC_ALL=C.UTF-8

[[ -x $PYTHON ]] || die "$PYTHON not found (apt-get install python3.11 python3.11-dev)"
"$PYTHON" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
    || die "Python.h of $PYTHON not found (apt-get install python3.11-dev)"
for tool in patchelf objcopy ldd; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install patchelf binutils)"
done

cd "$repo"
# The agent's runtime closure: the two workspace members as wheels (not editable installs that
# point back into the source tree) plus their third-party dependencies at the locked versions.
rm -rf "$work/wheels"
for member in sendpost-wire sendpost-agent; do
    "$uv" build --quiet --wheel --python "$PYTHON" --package "$member" --out-dir "$work/wheels"
done
"$uv" export --quiet --frozen --no-dev --no-hashes --no-header --no-emit-workspace \
    --package sendpost-agent -o "$work/requirements.txt"
# As constraints, every version the lock file pins, PyInstaller's and staticx's included.
"$uv" export --quiet --frozen --all-packages --all-groups --no-hashes --no-header \
    --no-emit-workspace -o "$work/constraints.txt"

say "fresh virtualenv in $work/venv ($PYTHON)"
"$uv" venv --quiet --clear --python "$PYTHON" "$work/venv"
VIRTUAL_ENV="$work/venv" "$uv" pip install --quiet --python "$work/venv/bin/python" \
    -r "$work/requirements.txt" -c "$work/constraints.txt" pyinstaller staticx "$work"/wheels/*.whl

say "PyInstaller build (one file and unpacked)"
printf 'import sys\nfrom sendpost_agent.cli import main\nsys.exit(main())\n' >"$work/entry.py"
rm -rf "$work/dist"
SENDPOST_ENTRY="$work/entry.py" "$work/venv/bin/pyinstaller" --noconfirm --clean \
    --log-level WARN --distpath "$work/dist" --workpath "$work/pyinstaller" \
    "$here/sendpost-agent.spec"

say "staticx: the one-file build with its C library"
"$work/venv/bin/staticx" --strip "$work/dist/sendpost-agent-onefile" "$work/sendpost-agent"

say "unpacked build with its C library, for $LIBDIR"
tree="$work/dist/onedir"
mkdir -p "$tree/glibc"
# Every library an ELF file of the tree needs that the tree does not hold (the C library family
# and the loader, which PyInstaller leaves to the host), copied from this machine into glibc/.
declare -A have=()
while IFS= read -r -d '' f; do have[$(basename "$f")]=1; done < <(find "$tree" -type f -print0)
while IFS= read -r -d '' elf; do
    file -b "$elf" | grep -q '^ELF.*dynamic' || continue
    while read -r name _arrow path _addr; do
        case $name in
            /*ld-linux*) path=$name name=$(basename "$name") ;;
            linux-vdso*) continue ;;
        esac
        [[ -n ${have[$name]:-} || $path != /* ]] && continue
        cp -L "$path" "$tree/glibc/$name"
        have[$name]=1
    done < <(ldd "$elf")
done < <(find "$tree" -type f \( -name sendpost-agent -o -name '*.so*' \) -print0)
loader=$(cd "$tree/glibc" && ls ld-linux-*.so.*)
patchelf --set-interpreter "$LIBDIR/glibc/$loader" --force-rpath --set-rpath "$LIBDIR/glibc" \
    "$tree/sendpost-agent"

rm -rf "$out/sendpost-agent.dir"
cp -a "$tree" "$out/sendpost-agent.dir"
install -m 0755 "$work/sendpost-agent" "$out/sendpost-agent"
say "$out/sendpost-agent ($(du -h "$out/sendpost-agent" | cut -f1)): $("$out/sendpost-agent" --version)"
