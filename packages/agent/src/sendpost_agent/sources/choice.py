"""Which log source the agent reads, and why: the one rule ``run`` and ``check`` share.

* ``log-path: journald``: the systemd journal (its mail entries, :mod:`.journal`).
* ``log-path`` is the default ``/var/log/mail.log`` and that file does not exist: the journal,
  when it holds Postfix's entries (a Debian 12 or later without rsyslog); else the file's error.
* any other ``log-path``: that file, which must be readable.

The decision is made once, at start: a mail.log that appears later (rsyslog installed) is used
from the next start.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from sendpost_agent.errors import ConfigError
from sendpost_agent.sources.journal import holds_postfix, journalctl_path

JOURNALD = Path("journald")
DEFAULT_LOG = Path("/var/log/mail.log")


@dataclasses.dataclass(frozen=True)
class Choice:
    """``journal``: read the journal (``path`` is then None), else the file ``path``."""

    journal: bool
    path: Path | None
    reason: str

    @property
    def name(self) -> str:
        """How the source is named in logs, /health and the heartbeat."""
        return "journald" if self.journal else str(self.path)


def check_file(path: Path) -> None:
    """Raise :class:`ConfigError` naming ``log-path`` when the file cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ConfigError("log-path", str(path), "does not exist") from None
    except OSError as exc:
        raise ConfigError("log-path", str(path), f"cannot be read: {exc.strerror}") from None
    os.close(fd)


def choose(log_path: Path, journal_directory: Path | None, default: Path = DEFAULT_LOG) -> Choice:
    """The source for these settings, or :class:`ConfigError` (one line: what is wrong and
    what to do). ``default``: the ``log-path`` that may fall back to the journal."""
    if log_path == JOURNALD:
        if journalctl_path() is None:
            raise ConfigError(
                "log-path", "journald", "journalctl is not installed (it comes with systemd)"
            )
        return Choice(True, None, "log-path is journald")
    if log_path != default:
        if not os.path.lexists(log_path):
            raise ConfigError(
                "log-path",
                str(log_path),
                "does not exist (if Postfix logs only to the systemd journal: log-path: journald)",
            )
        check_file(log_path)
        return Choice(False, log_path, f"log-path is {log_path}")
    try:
        check_file(log_path)
    except ConfigError:
        if os.path.lexists(log_path):
            raise
        journalctl = journalctl_path()
        if journalctl is None:
            raise ConfigError(
                "log-path", str(log_path), "does not exist and there is no journalctl either"
            ) from None
        found, why = holds_postfix(journalctl, journal_directory)
        if not found:
            raise ConfigError(
                "log-path",
                str(log_path),
                f"does not exist and {why}; set log-path to Postfix's log file, or to journald",
            ) from None
        return Choice(True, None, f"{log_path} does not exist and {why}")
    return Choice(False, log_path, f"log-path is {log_path}")


def verdict(choice: Choice, journal_directory: Path | None) -> tuple[bool, str]:
    """``check``'s line about the chosen source: which one, why, and whether it can be read."""
    if not choice.journal:
        return True, f"ok   the log {choice.path} can be read ({choice.reason})"
    journalctl = journalctl_path()
    assert journalctl is not None  # choose() made sure
    found, why = holds_postfix(journalctl, journal_directory)
    where = f"journal files in {journal_directory}" if journal_directory else "the systemd journal"
    if not found:
        return False, f"FAIL the log: {where} ({choice.reason}), but {why}"
    if choice.reason.endswith(why):  # the fallback's reason already says it
        return True, f"ok   the log: {where} ({choice.reason})"
    return True, f"ok   the log: {where} ({choice.reason}; {why})"
