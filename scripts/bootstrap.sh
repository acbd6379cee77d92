#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian machine with Python 3.11:
#   - the Debian packages the demo and the tests use (Postfix, pflogsumm, swaks, rpm, gcc
#     with Python's headers to compile the agent's parser (Cython) and PCRE2's for its line
#     matcher, Chromium for the dashboard's browser tests, which Playwright drives at
#     /usr/bin/chromium, and systemd's journalctl with
#     systemd-journal-remote, which writes the real journal files the journald source's tests
#     read), via apt-get;
#   - uv (pinned) in .tools/uv, then .venv from uv.lock with both deployables installed and
#     compiled to bytecode.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
# systemd, systemd-journal-remote: the agent's journald source and its tests (real journal files).
# patchelf, debootstrap, apt-utils, createrepo-c, gpg: the agent's packages (make packages)
# and their tests (a Debian 11 root).
# libpcre2-dev: PCRE2's headers and static library for the agent's native line matcher
# (sendpost_agent/parse/linematch.py), linked into it so the packaged agent needs no PCRE2.
APT_PACKAGES=(postfix pflogsumm swaks rpm gcc chromium patchelf debootstrap apt-utils createrepo-c gpg
    systemd systemd-journal-remote libpcre2-dev)
# Compiling the agent's parser and its packaged build need the headers of Debian's own
# python3.11 (packaging/build-binary.sh builds with /usr/bin/python3.11), kept apart in -dev.
if ! /usr/bin/python3.11 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
    APT_PACKAGES+=(python3.11-dev)
fi

say() { printf '[bootstrap] %s\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
    say "installing Debian packages: ${missing[*]}"
    # "No configuration" keeps the system Postfix stopped; the project runs its own instances.
    echo "postfix postfix/main_mailer_type select No configuration" | "${sudo_cmd[@]}" debconf-set-selections
    if [[ ! -d /var/lib/apt/lists/partial ]] || [[ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e partial -e lock)" ]]; then
        "${sudo_cmd[@]}" apt-get update -qq
    fi
    if ! DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null; then
        "${sudo_cmd[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

if [[ ! -x .tools/uv/bin/uv ]] || [[ "$(.tools/uv/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]]; then
    say "installing uv $UV_VERSION into .tools/uv"
    rm -rf .tools/uv
    python3.11 -m venv .tools/uv
    .tools/uv/bin/pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi

export UV_PYTHON_DOWNLOADS=never
# Bytecode written now, once: with PYTHONDONTWRITEBYTECODE set (CI and many shells set it) every
# process would otherwise compile what it imports from source, about 1 s of CPU for each start of
# sendpost-platform or sendpost-agent (the tests start hundreds). The workspace's own sources are
# installed editable, so uv leaves them to compileall, which rewrites only what changed.
.tools/uv/bin/uv sync --quiet --frozen --all-packages --python python3.11 --compile-bytecode
.venv/bin/python -m compileall -q -j 0 packages/agent/src packages/platform/src packages/wire/src devtools >/dev/null
