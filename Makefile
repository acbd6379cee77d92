# Quick start: `make demo` runs the system locally, `make test` runs the whole test suite.
# Both run scripts/bootstrap.sh first, which installs everything needed on a fresh Debian machine.

VENV := .venv/bin
UV := .tools/uv/bin/uv

.PHONY: setup demo test lint typecheck pytest pytest-pure format lock bench clean packages

setup:
	@scripts/bootstrap.sh

demo: setup
	cd "$(dir $(abspath $(firstword $(MAKEFILE_LIST))))" && $(VENV)/python -m devtools.demo

test: setup lint typecheck pytest pytest-pure

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck:
	$(VENV)/mypy

pytest:
	$(VENV)/pytest $(PYTEST_ARGS)

# The agent's suite again with the parser's modules run as Python, not compiled: they must
# give the same results (tests that only mean something compiled skip, saying why). The packaging
# tests are left out: the packaged agent holds only the compiled modules and ignores the switch.
pytest-pure:
	SENDPOST_AGENT_PURE_PYTHON=1 $(VENV)/pytest tests/agent --ignore=tests/agent/packaging $(PYTEST_ARGS)

format: setup
	$(VENV)/ruff check --fix .
	$(VENV)/ruff format .

lock:
	UV_PYTHON_DOWNLOADS=never $(UV) lock --python python3.11

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache

# The agent's distribution in dist/: the single executable (no dependency on the host's C
# library), the .deb and .rpm (the unpacked build in /usr/lib/sendpost-agent), install.sh,
# signed SHA256SUMS and a signed apt and yum repository (test key in build/repo-key unless
# REPO_KEY names a GnuPG home). Debian's own /usr/bin/python3.11 builds it, whatever is on PATH.
REPO_KEY ?= build/repo-key
packages: setup
	packaging/build-binary.sh dist build/agent-binary
	packaging/build-deb.sh dist/sendpost-agent.dir dist
	packaging/build-rpm.sh dist/sendpost-agent.dir dist
	cp packaging/install.sh dist/install.sh
	packaging/build-repos.sh dist $(REPO_KEY)
