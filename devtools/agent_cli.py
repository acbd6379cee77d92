"""Run the real ``sendpost-agent`` executable (as operators do) and read what it prints.

    from devtools.agent_cli import run_parse

    result = run_parse([mta.log_path], stats=True)
    result.events        # list of dicts, one per JSON line on stdout
    result.stderr        # the --stats counters, or the error line

The executable is the one next to the running interpreter (``.venv/bin/sendpost-agent``), else
the first on ``PATH``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ParseResult:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str


def agent_executable() -> str:
    beside = Path(sys.executable).parent / "sendpost-agent"
    if beside.exists():
        return str(beside)
    found = shutil.which("sendpost-agent")
    if found is None:
        raise FileNotFoundError("sendpost-agent is not installed: run `make setup`")
    return found


def run_parse(
    paths: Sequence[str | Path], stats: bool = False, timeout: float = 120
) -> ParseResult:
    """``sendpost-agent parse [--stats] PATH...`` as a subprocess; stdout decoded as JSON lines."""
    argv = [agent_executable(), "parse", *(["--stats"] if stats else []), *map(str, paths)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return ParseResult(done.returncode, events, done.stderr)
