"""Running our own executables as subprocesses for ``devtools.stack``: the agent, and helpers.

    agent = AgentProcess(workdir, log_path=..., endpoint=..., api_key=...)
    agent.start()                      # sendpost-agent run; returns once /health answers
    agent.metric("events_total", 'type="deferred"')
    agent.kill()                       # SIGKILL, as a crash would; start() again resumes
    agent.stop()                       # SIGTERM (orderly), SIGKILL after 10 s

The agent always uses ``{workdir}/agent-state`` (cursor and WAL), so a restart resumes where the
killed process left off; its output is appended to ``{workdir}/agent.log``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import httpx

from devtools.postfix import free_port


class StackError(RuntimeError):
    """A part of the stack did not start or did not behave; the message says which and why."""


def executable(name: str) -> str:
    """Our console script next to the running interpreter (``.venv/bin``), else on ``PATH``."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not installed: run `make setup`")
    return found


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ``SENDPOST_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_")}
    env.update(extra)
    return env


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"


def deadline_loop(what: str, timeout: float, interval: float = 0.1) -> Iterable[None]:
    """Yield until the caller breaks out; StackError once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        yield None
        if time.monotonic() >= deadline:
            raise StackError(f"{what}: not done within {timeout:.0f}s")
        time.sleep(interval)


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds; always reaped."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class AgentProcess:
    """``sendpost-agent run`` on one log with one key; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        *,
        log_path: Path,
        endpoint: str,
        api_key: str,
        batch_wait: float = 0.2,
    ) -> None:
        self.workdir = workdir
        self.log_path = log_path
        self.endpoint = endpoint
        self.api_key = api_key
        self.batch_wait = batch_wait
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def state_dir(self) -> Path:
        return self.workdir / "agent-state"

    @property
    def output(self) -> Path:
        return self.workdir / "agent.log"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise StackError("the agent is already running")
        config = self.workdir / "agent.yaml"
        config.write_text(f"api-key: {self.api_key}\n")
        self.port = free_port()
        argv = [
            executable("sendpost-agent"), "run", "--config", str(config),
            "--endpoint", self.endpoint,
            "--log-path", str(self.log_path), "--state-dir", str(self.state_dir),
            "--listen", f"127.0.0.1:{self.port}",
            "--batch-wait", str(self.batch_wait), "--poll-interval", "0.1",
            "--retry-initial", "0.2", "--retry-max", "2", "--checkpoint-interval", "0.2",
        ]  # fmt: skip
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                argv, env=clean_env({}), stdout=out, stderr=subprocess.STDOUT
            )
        for _ in deadline_loop("the agent's /health", 30):
            self.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise StackError(f"sendpost-agent run exited:\n{tail(self.output)}")

    def kill(self) -> None:
        """SIGKILL (no chance to save anything) and reap."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def metric(self, name: str, labels: str = "") -> float:
        """One value from the agent's /metrics (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        wanted = f"sendpost_agent_{name}{{{labels}}}" if labels else f"sendpost_agent_{name}"
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            if key == wanted:
                return float(value)
        return 0.0
