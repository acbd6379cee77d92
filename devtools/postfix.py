"""A private, throw-away Postfix (Debian's package) on loopback, for tests, benchmarks and the demo.

API (stable, used by other test suites)::

    from devtools.postfix import PostfixInstance, PostfixSettings
    from devtools.sinks import SmtpSink

    with SmtpSink() as sink, PostfixInstance(PostfixSettings(relay=sink.nexthop)) as mta:
        mta.smtp_port                       # its smtpd on 127.0.0.1 (submit mail here)
        mta.log_path                        # Postfix's own maillog_file (postlogd)
        queue_id = submit(mta.smtp_port, ...)        # devtools.mail.submit
        trace = mta.wait_until_settled([queue_id], timeout=20)  # all recipients done, hops followed
        trace.notifications, trace.lines    # bounce notifications it caused, its log lines
        mta.flush(); mta.queue_is_empty(); mta.force_expire(queue_id)
        mta.wait_for_log(lambda text: "removed" in text, timeout=5)

Each instance runs as root from its own directory (``mkdtemp``, mode 0755 so that the ``postfix``
user can enter it) holding config_directory ``etc/``, queue_directory ``spool/``, data_directory
``data/`` and the log ``maillog``. It listens on 127.0.0.1 only, on ports chosen at start-up;
nothing is shared between instances, so any number may run at once. ``postfix -c DIR`` needs no
system main.cf when run as root, so no file outside the instance directory is written.

What the generated configuration does (see ``PostfixSettings`` for the knobs):

- no DNS and no local delivery: all mail goes to ``relay`` (a ``[host]:port`` next hop, e.g. a
  sink), except recipients matching a ``routes`` regexp, which go to that route's next hop or, for
  ``DISCARD``, to Postfix's discard(8);
- header_checks ``/^X-Sendpost-Message-UUID:/ INFO`` (the line the agent correlates on);
- short retry timers (queue_run_delay, minimal/maximal_backoff_time) and configurable
  ``maximal_queue_lifetime``/``bounce_queue_lifetime`` ("0s" = one attempt, then expire);
- optionally ``enable_long_queue_ids`` and a ``content_filter`` through ``devtools.content_filter``
  that re-injects into a second smtpd (syslog name ``postfix/reinject``) with
  ``receive_override_options=no_header_body_checks``; with ``content_filter_late_reply`` the
  filter answers only after the re-injected copy is done, so the parent's hop line comes last;
- ``main_cf`` entries are appended last (they win); ``master_cf`` lines are appended to master.cf.

Errors: ``PostfixUnavailable`` (binary missing, not root) and ``PostfixError`` (start-up failed,
with the log's tail). ``stop()`` always leaves no process behind; the directory is removed unless
``keep_dir=True``. An instance whose owner died without ``stop()`` (SIGKILL, ``os._exit``) is
killed and removed by the next ``start()`` in the same parent directory.

Layout: the configuration text is ``devtools.postfix_config`` (pure), reading the log for what
became of a message is ``devtools.postfix_log`` (pure), queue directories and process groups are
``devtools.postfix_procs``; this module runs the instance and re-exports the public names.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from devtools.content_filter import ReinjectingFilter
from devtools.postfix_config import (
    DISCARD,
    UUID_HEADER_CHECK,
    Ports,
    PostfixSettings,
    render_main_cf,
    render_master_cf,
    render_transport,
)
from devtools.postfix_log import MessageTrace, trace_messages
from devtools.postfix_procs import (
    claim,
    create_queue_dirs,
    live_members,
    reap_abandoned,
    release,
    wait_gone,
)
from devtools.service import Service

__all__ = [
    "DISCARD",
    "MessageTrace",
    "Ports",
    "PostfixError",
    "PostfixInstance",
    "PostfixSettings",
    "PostfixUnavailable",
    "free_port",
    "live_members",
    "render_main_cf",
    "render_master_cf",
    "trace_messages",
]

POSTFIX = Path("/usr/sbin/postfix")
POSTQUEUE = Path("/usr/sbin/postqueue")
POSTSUPER = Path("/usr/sbin/postsuper")
DIR_PREFIX = "sendpost-postfix-"


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (Postfix binds its own listeners, so it cannot take 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PostfixError(RuntimeError):
    """A private Postfix instance could not be started or operated."""


class PostfixUnavailable(PostfixError):
    """Postfix is not installed, or we cannot run it (not root)."""


def require_postfix() -> None:
    """Raise ``PostfixUnavailable`` with one clear line when we cannot run a private Postfix."""
    if not POSTFIX.exists():
        raise PostfixUnavailable(
            f"{POSTFIX} not found: install Debian's postfix package (scripts/bootstrap.sh does)"
        )
    if os.geteuid() != 0:
        raise PostfixUnavailable("a private Postfix instance must be started as root")


class PostfixInstance(Service):
    """One private Postfix; see the module docstring."""

    def __init__(
        self, settings: PostfixSettings, parent_dir: str | None = None, keep_dir: bool = False
    ) -> None:
        self.settings = settings
        self._parent_dir = parent_dir
        self._keep_dir = keep_dir
        self._root: Path | None = None
        self._ports: Ports | None = None
        self._filter: ReinjectingFilter | None = None
        self._running = False

    # -- paths and ports ------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        if self._root is None:
            raise PostfixError("the instance has not been started")
        return self._root

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def log_path(self) -> Path:
        return self.root / "maillog"

    @property
    def ports(self) -> Ports:
        if self._ports is None:
            raise PostfixError("the instance has not been started")
        return self._ports

    @property
    def smtp_port(self) -> int:
        return self.ports.smtpd

    @property
    def reinject_port(self) -> int:
        return self.ports.reinject

    # -- life cycle -----------------------------------------------------------------------------

    def start(self, attempts: int = 3) -> PostfixInstance:
        require_postfix()
        parent = Path(self._parent_dir or tempfile.gettempdir())
        reap_abandoned(parent, DIR_PREFIX)
        self._root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parent))
        self._root.chmod(0o755)
        claim(self._root)
        (self._root / "etc").mkdir()
        create_queue_dirs(self._root)
        atexit.register(self.stop)
        try:
            for attempt in range(attempts):
                if self._try_start() or attempt == attempts - 1:
                    break
        except BaseException:
            self.stop()
            raise
        if not self._running:
            tail = self._log_tail()
            self.stop()
            raise PostfixError(f"postfix did not start; log tail:\n{tail}")
        return self

    def _try_start(self) -> bool:
        """Write the configuration with fresh ports and start; False when a port was taken."""
        if self._filter is not None:
            self._filter.stop()
            self._filter = None
        reinject = free_port()
        if self.settings.content_filter:
            hold = self._wait_for_removal if self.settings.content_filter_late_reply else None
            self._filter = ReinjectingFilter(reinject_port=reinject, before_reply=hold).start()
        self._ports = Ports(
            smtpd=free_port(),
            reinject=reinject,
            content_filter=self._filter.port if self._filter else None,
        )
        etc = self.config_dir
        (etc / "main.cf").write_text(render_main_cf(self.root, self.settings, self._ports))
        (etc / "master.cf").write_text(render_master_cf(self.settings, self._ports))
        (etc / "transport").write_text(render_transport(self.settings))
        (etc / "header_checks").write_text(UUID_HEADER_CHECK)
        # Postfix re-reads a main.cf modified within the last couple of seconds until it is
        # "stable" (0.3 s naps, about 2 s in all); back-date the files we just wrote.
        past = time.time() - 10
        for name in ("main.cf", "master.cf", "transport", "header_checks"):
            os.utime(etc / name, (past, past))
        result = self._postfix("start")
        if result.returncode == 0:
            self._running = True
            return True
        if "Address already in use" in self._log_tail():
            return False
        raise PostfixError(
            f"postfix -c {etc} start failed: {result.stderr.strip()}\n{self._log_tail()}"
        )

    def stop(self, graceful: bool = True, timeout: float = 10.0) -> None:
        """Stop Postfix, then the filter; remove the directory. Safe to call more than once.

        SIGTERM to the master, as ``postfix abort`` does (the master passes it on to its process
        group), then SIGKILL for whatever is still alive after ``timeout``; ``graceful=False``
        sends SIGKILL to the whole group at once. Either way we return only once no live process
        of the group is left, waiting on /proc rather than postfix-script's one-second naps.
        """
        atexit.unregister(self.stop)
        if self._running:
            pid = self.master_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    if graceful:
                        os.kill(pid, signal.SIGTERM)
                    else:
                        os.killpg(pid, signal.SIGKILL)
                if not wait_gone(pid, timeout):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    wait_gone(pid, timeout)
            self._running = False
        if self._filter is not None:
            self._filter.stop()
            self._filter = None
        if self._root is not None:
            if self._keep_dir:
                release(self._root)
            else:
                shutil.rmtree(self._root, ignore_errors=True)

    # -- operations -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Ask Postfix to retry all deferred mail now (``postqueue -f``)."""
        self._run([str(POSTQUEUE), "-c", str(self.config_dir), "-f"], check=True)

    def force_expire(self, queue_id: str) -> None:
        """Expire a queued message now (``postsuper -e``, then a flush): Postfix returns it to the
        sender with ``status=force-expired``."""
        self._run([str(POSTSUPER), "-c", str(self.config_dir), "-e", queue_id], check=True)
        self.flush()

    def queue_is_empty(self) -> bool:
        spool = self.root / "spool"
        for queue in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _dirpath, _dirs, files in os.walk(spool / queue):
                if files:
                    return False
        return True

    def read_log(self) -> str:
        """The log's complete lines (a line being written is left for the next read)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text[: text.rfind("\n") + 1]

    def wait_for_log(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """Poll the log until ``predicate(text)`` holds; return the text, TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.read_log()
            if predicate(text):
                return text
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"postfix log condition not met within {timeout}s; tail:\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def wait_until_settled(self, queue_ids: Iterable[str], timeout: float) -> MessageTrace:
        """Wait until the given messages and every queue ID they led to have been removed.

        See ``trace_messages`` for the hops followed. Returns the final trace.
        """
        roots = list(queue_ids)
        traces: list[MessageTrace] = []

        def settled(text: str) -> bool:
            traces.append(trace_messages(text, roots, self.ports.content_filter))
            return not traces[-1].unfinished

        self.wait_for_log(settled, timeout)
        return traces[-1]

    def _wait_for_removal(self, queue_id: str) -> None:
        pattern = re.compile(rf"\b{re.escape(queue_id)}: removed$", re.M)
        with contextlib.suppress(TimeoutError):
            self.wait_for_log(lambda text: pattern.search(text) is not None, timeout=30)

    # -- helpers --------------------------------------------------------------------------------

    def _postfix(self, command: str) -> subprocess.CompletedProcess[str]:
        return self._run([str(POSTFIX), "-c", str(self.config_dir), command], check=False)

    @staticmethod
    def _run(argv: Sequence[str], check: bool) -> subprocess.CompletedProcess[str]:
        # Not a pipe for stdout/stderr: the daemons would inherit it and keep it open.
        with tempfile.TemporaryFile(mode="w+") as errors:
            result = subprocess.run(
                argv, stdout=subprocess.DEVNULL, stderr=errors, text=True, timeout=60
            )
            errors.seek(0)
            result.stderr = errors.read()
        if check and result.returncode != 0:
            raise PostfixError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        return result

    def master_pid(self) -> int | None:
        try:
            return int((self.root / "spool" / "pid" / "master.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.read_log().splitlines()[-lines:])
