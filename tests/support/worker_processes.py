"""``sendpost-platform worker`` processes for crash tests: started with a given environment,
SIGKILLed or stopped one by one, and killed together when the test ends."""

from __future__ import annotations

import signal
import subprocess
import sys


class WorkerProcesses:
    def __init__(self, env: dict[str, str], *, stop_timeout: float) -> None:
        self.env = env
        self.stop_timeout = stop_timeout
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sendpost_platform.cli", "worker"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.running.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self.running.remove(proc)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM (after SIGCONT, for a stopped one): the worker finishes the pass it is in,
        then exits with 0."""
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        assert 0 == proc.wait(timeout=self.stop_timeout)
        self.running.remove(proc)

    def close(self) -> None:
        for proc in self.running:
            proc.kill()
            proc.wait(timeout=30)
