"""The agent's settings: one typed schema, read once at the edge and passed down.

Sources, highest priority first: command-line flags, ``SENDPOST_AGENT_*`` environment variables,
the YAML file (``--config``, default ``/etc/sendpost-agent/config.yaml``; a missing default file is
fine, a missing file named explicitly is an error). Every problem is a :class:`ConfigError` naming
the key and the value.

``python -m sendpost_agent.config --markdown`` prints the reference (``docs/agent-config.md``).
"""

from __future__ import annotations

import dataclasses
import re
import ssl
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sendpost_agent.errors import ConfigError
from sendpost_agent.parse.mta import REGISTRY as MTA_ADAPTERS
from sendpost_agent.parse.relays import parse_entry

DEFAULT_CONFIG_FILE = Path("/etc/sendpost-agent/config.yaml")
ENV_PREFIX = "SENDPOST_AGENT_"
MTAS = tuple(MTA_ADAPTERS)  # the `mta` setting's values: the adapters registered in parse/mta.py
# Environment variables with the settings' prefix that are not settings: read elsewhere, never
# "unknown setting". Name → what it does (listed in the generated reference).
ENV_SWITCHES = {
    ENV_PREFIX + "CONFIG": "The YAML file, when `--config` is not given.",
    ENV_PREFIX + "PURE_PYTHON": "`1` switches off the compiled scanner (same events, slower); "
    "read when the parser is imported, by `run`, `check` and `parse` alike.",
}


def _url(key: str, raw: object) -> str:
    text = str(raw).strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, raw, "must be an http:// or https:// URL with a host")
    return text


def _listen(key: str, raw: object) -> tuple[str, int]:
    text = str(raw).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, raw, "must be HOST:PORT, e.g. 127.0.0.1:9113")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _size(key: str, raw: object) -> int:
    match = _SIZE.match(str(raw))
    if match is None:
        raise ConfigError(key, raw, "must be a size in bytes, e.g. 104857600 or 100MB")
    unit = (match.group(2) or "").upper()[:1]
    value = int(match.group(1)) * _UNITS[unit]
    if value < 4096:
        raise ConfigError(key, raw, "must be at least 4096 bytes")
    return value


def _positive_float(key: str, raw: object) -> float:
    try:
        value = float(str(raw))
    except ValueError:
        raise ConfigError(key, raw, "must be a number of seconds") from None
    if not value > 0:
        raise ConfigError(key, raw, "must be greater than zero")
    return value


def _seconds_or_off(key: str, raw: object) -> float:
    try:
        value = float(str(raw))
    except ValueError:
        raise ConfigError(key, raw, "must be a number of seconds (0: off)") from None
    if not 0 <= value <= 86400:
        raise ConfigError(key, raw, "must be from 0 (off) to 86400 seconds")
    return value


def _int_between(low: int, high: int) -> Callable[[str, object], int]:
    def convert(key: str, raw: object) -> int:
        try:
            value = int(str(raw))
        except ValueError:
            raise ConfigError(key, raw, "must be a whole number") from None
        if not low <= value <= high:
            raise ConfigError(key, raw, f"must be between {low} and {high}")
        return value

    return convert


def _text(key: str, raw: object) -> str:
    text = str(raw).strip()
    if not text:
        raise ConfigError(key, raw, "must not be empty")
    return text


def _mta(key: str, raw: object) -> str:
    text = str(raw).strip().lower()
    if text not in MTAS:
        raise ConfigError(key, raw, f"unsupported MTA; supported: {', '.join(MTAS)}")
    return text


def _path(key: str, raw: object) -> Path:
    return Path(_text(key, raw))


def _relays(key: str, raw: object) -> tuple[str, ...]:
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            parse_entry(text)
        except ValueError as exc:
            raise ConfigError(key, raw, str(exc)) from None
        out.append(text)
    return tuple(out)


def _level(key: str, raw: object) -> str:
    text = str(raw).strip().upper()
    if text not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(key, raw, "must be one of debug, info, warning, error")
    return text


def _setting(
    default: Any, convert: Callable[[str, Any], Any], help: str, shown: str | None = None
) -> Any:
    return dataclasses.field(
        default=default, metadata={"convert": convert, "help": help, "shown": shown}
    )


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of ``sendpost-agent run``; keys are the field names with ``-`` for ``_``."""

    api_key: str = _setting(None, _text, "API key of the Custom SMTP provider (required).")
    mta: str = _setting("postfix", _mta, "Which MTA writes the log. Only `postfix` for now.")
    endpoint: str = _setting(
        "https://events.sendpost.io/api/v1/tpsp/custom-smtp/events",
        _url,
        "Event ingestion URL of the platform.",
    )
    log_path: Path = _setting(  # noqa: RUF009 - a field() with metadata, not a shared default
        Path("/var/log/mail.log"),
        _path,
        "The mail log to follow, or `journald`: Postfix's entries in the systemd journal. The "
        "default, when `/var/log/mail.log` does not exist, reads the journal if it holds "
        "Postfix's entries (docs/agent-sources.md).",
    )
    journal_directory: Path | None = _setting(  # noqa: RUF009
        None,
        _path,
        "With `journald`: read the journal files in this directory (`journalctl --directory`) "
        "instead of the system journal.",
        "the system journal",
    )
    state_dir: Path = _setting(  # noqa: RUF009
        Path("/var/lib/sendpost-agent"),
        _path,
        "Directory for `state.db` (cursor and correlation state), `pending.wal/` and "
        "`dead-letter.jsonl`.",
    )
    listen: tuple[str, int] = _setting(
        ("127.0.0.1", 9113), _listen, "Address of `/health` and `/metrics`.", "127.0.0.1:9113"
    )
    batch_size: int = _setting(100, _int_between(1, 1000), "Most events in one request.")
    batch_wait: float = _setting(
        5.0, _positive_float, "Seconds a partial batch waits for more events before it is sent."
    )
    max_in_flight: int = _setting(
        4, _int_between(1, 64), "Requests sent concurrently (acknowledgement order is kept)."
    )
    request_timeout: float = _setting(10.0, _positive_float, "Seconds before a request times out.")
    retry_initial: float = _setting(1.0, _positive_float, "First retry backoff, seconds.")
    retry_max: float = _setting(60.0, _positive_float, "Longest retry backoff, seconds.")
    auth_probe_interval: float = _setting(
        60.0, _positive_float, "Seconds between probes while the key is rejected (401/403)."
    )
    wal_max_bytes: int = _setting(
        100 * 1024**2, _size, "WAL cap; when reached, reading pauses.", "100MB"
    )
    wal_segment_bytes: int = _setting(8 * 1024**2, _size, "Size of one WAL segment file.", "8MB")
    poll_interval: float = _setting(
        0.25, _positive_float, "Seconds between checks of the log when it has no new lines."
    )
    read_chunk_bytes: int = _setting(
        1024 * 1024, _size, "Most bytes read from the log at once.", "1MB"
    )
    checkpoint_interval: float = _setting(
        1.0, _positive_float, "Most seconds between cursor saves while lines are read."
    )
    heartbeat_interval: float = _setting(
        60.0,
        _seconds_or_off,
        "Seconds between heartbeats to the platform (alive, version, lag, WAL depth, last "
        "error), sent to the endpoint's origin at /api/v1/tpsp/custom-smtp/agent/heartbeat; "
        "0: none.",
    )
    stale_after: float = _setting(
        600.0, _positive_float, "Unhealthy when events wait this long without a successful ship."
    )
    shutdown_timeout: float = _setting(
        10.0, _positive_float, "Seconds given to in-flight batches on SIGTERM."
    )
    internal_relays: tuple[str, ...] | None = _setting(
        None,
        _relays,
        "Relays whose `queued as NEWID` may be a hop (content filters, another Postfix writing "
        "the same log): networks, names or `host:port`; list or comma-separated. A hop "
        "only when NEWID shows in the log, else a delivery.",
        "loopback addresses",
    )
    log_level: str = _setting("INFO", _level, "Agent's own log verbosity.", "info")


FIELDS = {f.name.replace("_", "-"): f for f in dataclasses.fields(Settings)}


def env_name(key: str) -> str:
    return ENV_PREFIX + key.replace("-", "_").upper()


def read_yaml(path: Path, explicit: bool) -> dict[str, Any]:
    """The YAML file's mapping; ``{}`` when the default file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError("config", str(path), "file does not exist") from None
        return {}
    except OSError as exc:
        raise ConfigError("config", str(path), f"cannot read: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("config", str(path), f"not valid YAML: {exc}".splitlines()[0]) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError("config", str(path), "must be a mapping of key: value")
    return {str(k): v for k, v in doc.items()}


def load(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: Path | None = None,
) -> Settings:
    """Merge flags (keys as in the file, ``None`` = not given) over env over the YAML file."""
    explicit = config_file is not None
    merged: dict[str, Any] = {}
    for key, value in read_yaml(config_file or DEFAULT_CONFIG_FILE, explicit).items():
        if key not in FIELDS:
            raise ConfigError(key, value, "unknown key")
        merged[key] = value
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_SWITCHES:
            continue
        key = name[len(ENV_PREFIX) :].lower().replace("_", "-")
        if key not in FIELDS:
            raise ConfigError(name, value, "unknown setting in the environment")
        merged[key] = value
    for key, value in flags.items():
        if value is not None:
            merged[key] = value
    values: dict[str, Any] = {}
    for key, field in FIELDS.items():
        if key not in merged or merged[key] is None:
            if field.default is None and key == "api-key":
                raise ConfigError(key, None, f"is required (flag --{key} or {env_name(key)})")
            continue
        values[field.name] = field.metadata["convert"](key, merged[key])
    return Settings(**values)


def markdown() -> str:
    """The configuration reference, generated from :class:`Settings`."""
    lines = [
        "# sendpost-agent configuration",
        "",
        "<!-- Generated by `python -m sendpost_agent.config --markdown`; do not edit. -->",
        "",
        "Settings come from command-line flags, then environment variables, then the YAML file",
        f"(`--config`, default `{DEFAULT_CONFIG_FILE}`); flags win. A bad or missing setting stops",
        "the agent at start with one line naming the key and the value.",
        "",
        "| key (YAML) | flag | environment | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for key, field in FIELDS.items():
        shown = field.metadata["shown"]
        default = shown if shown is not None else field.default
        text = "(required)" if default is None else f"`{default}`"
        lines.append(
            f"| `{key}` | `--{key}` | `{env_name(key)}` | {text} | {field.metadata['help']} |"
        )
    lines += [
        "",
        "Environment variables that are switches, not settings:",
        "",
        "| environment | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {text} |" for name, text in ENV_SWITCHES.items()]
    lines += [
        "",
        "Example `/etc/sendpost-agent/config.yaml`:",
        "",
        "```yaml",
        "api-key: sp_live_0123456789abcdef",
        "mta: postfix",
        "log-path: /var/log/mail.log",
        "state-dir: /var/lib/sendpost-agent",
        "listen: 127.0.0.1:9113",
        "internal-relays: [127.0.0.1, '::1', 10.0.0.5]",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    if list(argv) != ["--markdown"]:
        print("usage: python -m sendpost_agent.config --markdown", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_SWITCHES",
    "FIELDS",
    "Settings",
    "env_name",
    "load",
    "markdown",
]


def tls_verify(endpoint: str, env: Mapping[str, str]) -> ssl.SSLContext | bool:
    """What the HTTP client verifies the endpoint with: nothing for ``http://`` (no TLS, so a
    broken ``SSL_CERT_FILE`` does not matter), else the trust store httpx would use (certifi,
    or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set), loaded once here so that an unusable one is
    a :class:`ConfigError` naming the variable instead of a traceback."""
    if not endpoint.lower().startswith("https://"):
        return False
    import httpx  # the daemon's dependency: `parse` never gets here

    try:
        return httpx.create_ssl_context(verify=True, trust_env=True)
    except (OSError, ssl.SSLError) as exc:
        name = "SSL_CERT_FILE" if env.get("SSL_CERT_FILE") else "SSL_CERT_DIR"
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            name, env.get(name, ""), f"cannot load the CA certificates for https: {reason}"
        ) from None
