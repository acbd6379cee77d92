#!/usr/bin/env bash
# Build the agent as one self-contained executable (PyInstaller one-file: the interpreter, the
# agent, sendpost-wire and their dependencies in one ELF file; the host needs no Python).
#
#   packaging/build-binary.sh OUT_DIR [WORK_DIR]
#
# Writes OUT_DIR/sendpost-agent. The build runs in a fresh virtualenv under WORK_DIR (default: a
# temporary directory) that holds only sendpost-agent, its dependencies at the versions in uv.lock
# and PyInstaller, so nothing of the platform's dependency tree can end up in the executable.
set -euo pipefail

say() { printf '[build-binary] %s\n' "$*"; }

[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: $0 OUT_DIR [WORK_DIR]" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
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
export UV_PYTHON_DOWNLOADS=never

cd "$repo"
# The agent's runtime closure: the two workspace members as wheels (not editable installs that
# point back into the source tree) plus their third-party dependencies at the locked versions.
rm -rf "$work/wheels"
for member in sendpost-wire sendpost-agent; do
    "$uv" build --quiet --wheel --package "$member" --out-dir "$work/wheels"
done
"$uv" export --quiet --frozen --no-dev --no-hashes --no-header --no-emit-workspace \
    --package sendpost-agent -o "$work/requirements.txt"
# As constraints, every version the lock file pins, PyInstaller's included.
"$uv" export --quiet --frozen --all-packages --all-groups --no-hashes --no-header \
    --no-emit-workspace -o "$work/constraints.txt"

say "fresh virtualenv in $work/venv"
"$uv" venv --quiet --clear --python python3.11 "$work/venv"
VIRTUAL_ENV="$work/venv" "$uv" pip install --quiet \
    -r "$work/requirements.txt" -c "$work/constraints.txt" pyinstaller "$work"/wheels/*.whl

say "PyInstaller one-file build"
# The console script's target, as a tiny entry file PyInstaller can analyse.
printf 'import sys\nfrom sendpost_agent.cli import main\nsys.exit(main())\n' >"$work/entry.py"
"$work/venv/bin/pyinstaller" --noconfirm --clean --log-level WARN --onefile --strip \
    --name sendpost-agent \
    --distpath "$out" --workpath "$work/pyinstaller" --specpath "$work" \
    --exclude-module tkinter --exclude-module sendpost_platform \
    "$work/entry.py"

say "$out/sendpost-agent ($(du -h "$out/sendpost-agent" | cut -f1)): $("$out/sendpost-agent" --version)"
