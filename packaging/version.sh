#!/usr/bin/env bash
# Print the agent's version (packages/agent/pyproject.toml), the one every package carries.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$here/../packages/agent/pyproject.toml"
