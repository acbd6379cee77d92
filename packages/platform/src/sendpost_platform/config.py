"""The platform's settings: one typed schema, read from the environment once, at the edge.

Each field of :class:`Settings` declares its environment variable and documentation with
:func:`setting`; the value is parsed from the field's type (``str``, ``int``, ``float``, ``bool``,
durations (``unit=DURATION``: seconds written ``90``, ``90s``, ``15m``, ``24h`` or ``7d``;
``unit=DURATIONS``: a comma-separated list of those), and ``X | None`` for optional values).
Errors raise :class:`~sendpost_platform.errors.ConfigError` naming the variable and the bad value.
The reference in ``docs/platform.md`` is generated from this schema by :func:`reference_markdown`.

Adding a setting is one field in the right section below, e.g.::

    relay_retry_schedule: tuple[float, ...] = setting(
        (3600.0, 7200.0),
        env="SENDPOST_RELAY_RETRY_SCHEDULE",
        doc="Delays between relay attempts.",
        unit=DURATIONS,
    )

Tests build ``Settings(database_url=..., secret_key="...")`` directly; the CLI calls
:func:`load_settings`, which also generates the secret key file in embedded (SQLite) mode.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import secrets
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sendpost_platform import egress
from sendpost_platform.errors import ConfigError

DURATION = "duration"
"""``unit=DURATION``: a float of seconds, written ``90``, ``90s``, ``15m``, ``24h`` or ``7d``."""
DURATIONS = "durations"
"""``unit=DURATIONS``: a tuple of seconds, written as a comma-separated list (``1h,2h,3h``)."""

SECRET_KEY_FILE = "secret.key"  # noqa: S105 (a file name, not a secret)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def setting(default: Any, *, env: str, doc: str, unit: str | None = None) -> Any:
    """Declare one setting: its default, environment variable, one-line documentation and, for
    durations, ``unit=DURATION`` (a float of seconds) or ``unit=DURATIONS`` (a tuple of them)."""
    return dataclasses.field(default=default, metadata={"env": env, "doc": doc, "unit": unit})


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable about the platform (see ``docs/platform.md``)."""

    # --- core: storage, HTTP, secrets ---------------------------------------------------------
    database_url: str = setting(
        "sqlite:///./sendpost.db",
        env="SENDPOST_DATABASE_URL",
        doc="SQLAlchemy URL: `sqlite:///PATH` (embedded) or `postgresql://user@host/db`.",
    )
    secret_key: str = setting(
        "",
        env="SENDPOST_SECRET_KEY",
        doc="Platform secret (encrypts SMTP passwords, signs tokens). Embedded mode generates "
        "one into the data directory on first run; required with PostgreSQL.",
    )
    data_dir: str | None = setting(
        None,
        env="SENDPOST_DATA_DIR",
        doc="Directory for local state (the generated secret key). Default: the SQLite "
        "database's directory, else the working directory.",
    )
    listen: str = setting(
        "127.0.0.1:8080", env="SENDPOST_LISTEN", doc="HOST:PORT the HTTP API listens on."
    )
    # --- event ingestion ------------------------------------------------------------------------
    ingest_rate_limit: str = setting(
        "10000/minute",
        env="SENDPOST_INGEST_RATE_LIMIT",
        doc="Requests allowed per ingestion key (`limits` notation, e.g. `10000/minute`).",
    )
    rate_limit_url: str | None = setting(
        None,
        env="SENDPOST_RATE_LIMIT_URL",
        doc="Shared rate-limit storage, e.g. `redis://127.0.0.1:6379/0`, so several API "
        "processes share one budget. Default: in-process memory.",
    )
    auth_failure_limit: str = setting(
        "30/minute",
        env="SENDPOST_AUTH_FAILURE_LIMIT",
        doc="Failed API-key checks allowed per client address (`limits` notation); over it, "
        "that address gets 429 before any key is looked up.",
    )
    ingest_key_grace: float = setting(
        86400.0,
        env="SENDPOST_INGEST_KEY_GRACE",
        doc="How long a rotated ingestion key keeps working after rotation.",
        unit=DURATION,
    )
    smtp_test_timeout: float = setting(
        15.0,
        env="SENDPOST_SMTP_TEST_TIMEOUT",
        doc="Time allowed for each stage of a provider's SMTP connectivity test.",
        unit=DURATION,
    )
    # --- background processing -------------------------------------------------------------------
    worker_idle_interval: float = setting(
        0.5,
        env="SENDPOST_WORKER_IDLE_INTERVAL",
        doc="How long the worker waits before polling again when it found nothing to do.",
        unit=DURATION,
    )
    worker_claim_batches: int = setting(
        20,
        env="SENDPOST_WORKER_CLAIM_BATCHES",
        doc="Ingested batches one worker claims and processes per transaction.",
    )
    event_retention: float = setting(
        30 * 86400.0,
        env="SENDPOST_EVENT_RETENTION",
        doc="How long stored events are kept (the accounts' event retention). On PostgreSQL "
        "whole daily partitions are dropped once their day is older; on SQLite rows are deleted.",
        unit=DURATION,
    )
    ingest_batch_retention: float = setting(
        3 * 86400.0,
        env="SENDPOST_INGEST_BATCH_RETENTION",
        doc="How long a raw ingested batch is kept after it was processed (for replays and "
        "investigation); unprocessed batches are never removed.",
        unit=DURATION,
    )
    # --- sending (relay, DNS, tracking): add fields below ---------------------------------------
    public_base_url: str = setting(
        "http://127.0.0.1:8080",
        env="SENDPOST_PUBLIC_BASE_URL",
        doc="Public URL of the platform; tracking and unsubscribe links point under it.",
    )
    bounce_cname_target: str = setting(
        "bounce.sendpost.localhost",
        env="SENDPOST_BOUNCE_CNAME_TARGET",
        doc="Host the `sp-bounce.{domain}` CNAME of every sender domain must point to.",
    )
    dkim_selector: str = setting(
        "sendpost", env="SENDPOST_DKIM_SELECTOR", doc="Default DKIM selector for new domains."
    )
    dns_nameserver: str | None = setting(
        None,
        env="SENDPOST_DNS_NAMESERVER",
        doc="IP address of the nameserver that verifies domains and resolves providers' hosts "
        "(a private one needs `SENDPOST_ALLOW_PRIVATE_NETWORKS`). Default: the system resolver.",
    )
    dns_port: int = setting(53, env="SENDPOST_DNS_PORT", doc="Port of that nameserver.")
    dns_timeout: float = setting(
        5.0, env="SENDPOST_DNS_TIMEOUT", doc="Time allowed for one DNS lookup.", unit=DURATION
    )
    unsubscribe_mailto: str | None = setting(
        None,
        env="SENDPOST_UNSUBSCRIBE_MAILTO",
        doc="Address added as a `mailto:` to List-Unsubscribe (the URL is always there).",
    )
    relay_retry_schedule: tuple[float, ...] = setting(
        (3600.0, 7200.0, 10800.0, 14400.0, 18000.0),
        env="SENDPOST_RELAY_RETRY_SCHEDULE",
        doc="Delays after each failed relay attempt; when exhausted the message is dropped.",
        unit=DURATIONS,
    )
    relay_lease: float = setting(
        300.0,
        env="SENDPOST_RELAY_LEASE",
        doc="How long a worker's claim on a message lasts; a dead worker's claim expires then.",
        unit=DURATION,
    )
    relay_batch_size: int = setting(
        100, env="SENDPOST_RELAY_BATCH_SIZE", doc="Messages one worker claims per provider at once."
    )
    relay_connections_per_provider: int = setting(
        4,
        env="SENDPOST_RELAY_CONNECTIONS",
        doc="Concurrent SMTP connections one worker opens to one provider.",
    )
    relay_smtp_timeout: float = setting(
        60.0, env="SENDPOST_RELAY_SMTP_TIMEOUT", doc="Timeout of each SMTP command.", unit=DURATION
    )
    # --- outbound connections (egress.py) ---------------------------------------------------------
    allow_private_networks: bool = setting(
        False,
        env="SENDPOST_ALLOW_PRIVATE_NETWORKS",
        doc="Development only: let the SMTP test, the relay, webhooks and "
        "`SENDPOST_DNS_NAMESERVER` reach loopback, private, link-local, CGNAT, multicast, "
        "reserved and metadata addresses.",
    )
    # --- webhooks (webhook_dispatch.py, docs/webhooks.md) ---------------------------------------
    webhook_retry_schedule: tuple[float, ...] = setting(
        (60.0, 300.0, 1800.0, 7200.0, 86400.0),
        env="SENDPOST_WEBHOOK_RETRY_SCHEDULE",
        doc="Delays after each failed webhook attempt; when exhausted the delivery is `failed` "
        "(kept, and sent again when the webhook is re-enabled or replayed).",
        unit=DURATIONS,
    )
    webhook_quick_retries: int = setting(
        2,
        env="SENDPOST_WEBHOOK_QUICK_RETRIES",
        doc="Tries of one attempt on a network error, 408, 429 or 5xx before it counts as "
        "failed (stamina, backoff 0.2 s doubling to 2 s; 1: no quick retry).",
    )
    webhook_timeout: float = setting(
        10.0,
        env="SENDPOST_WEBHOOK_TIMEOUT",
        doc="Time an endpoint has to answer one POST.",
        unit=DURATION,
    )
    webhook_lease: float = setting(
        120.0,
        env="SENDPOST_WEBHOOK_LEASE",
        doc="How long a dispatcher's claim on a delivery lasts; a dead dispatcher's claims "
        "are taken over then.",
        unit=DURATION,
    )
    webhook_batch_size: int = setting(
        500,
        env="SENDPOST_WEBHOOK_BATCH_SIZE",
        doc="Outbox rows fanned out, and deliveries claimed, per dispatcher pass.",
    )
    webhook_concurrency: int = setting(
        256,
        env="SENDPOST_WEBHOOK_CONCURRENCY",
        doc="Webhook POSTs one dispatcher process has in flight at once.",
    )
    webhook_endpoint_concurrency: int = setting(
        16,
        env="SENDPOST_WEBHOOK_ENDPOINT_CONCURRENCY",
        doc="Webhook POSTs one dispatcher process has in flight to one endpoint (URL) at once.",
    )
    webhook_degrade_after: int = setting(
        3,
        env="SENDPOST_WEBHOOK_DEGRADE_AFTER",
        doc="Consecutive failed attempts after which a webhook's status is `degraded`.",
    )
    webhook_disable_after: int = setting(
        50,
        env="SENDPOST_WEBHOOK_DISABLE_AFTER",
        doc="Consecutive failed attempts after which a webhook is `disabled` (its deliveries "
        "wait until it is re-enabled).",
    )
    webhook_retry_after_cap: float = setting(
        3600.0,
        env="SENDPOST_WEBHOOK_RETRY_AFTER_CAP",
        doc="Longest `Retry-After` honoured; a longer one is cut to this.",
        unit=DURATION,
    )
    # --- bounce processor (SMTP server for DSNs to `sp-bounce.{domain}`) -------------------------
    bounce_listen: str = setting(
        "127.0.0.1:2525",
        env="SENDPOST_BOUNCE_LISTEN",
        doc="HOST:PORT the bounce processor listens on (`bounce` role; `serve` too unless empty).",
    )
    bounce_max_bytes: int = setting(
        10485760,
        env="SENDPOST_BOUNCE_MAX_BYTES",
        doc="Largest bounce message accepted; bigger ones are refused with 552.",
    )
    bounce_max_connections: int = setting(
        200,
        env="SENDPOST_BOUNCE_MAX_CONNECTIONS",
        doc="Open SMTP sessions the bounce processor holds at once; more get `421 4.7.0`.",
    )
    bounce_max_connections_per_address: int = setting(
        20,
        env="SENDPOST_BOUNCE_MAX_CONNECTIONS_PER_ADDRESS",
        doc="Open sessions per client IPv4 address or IPv6 /64; more get `421 4.7.0`.",
    )
    bounce_idle_timeout: float = setting(
        60.0,
        env="SENDPOST_BOUNCE_IDLE_TIMEOUT",
        doc="A bounce session that sends nothing for this long is closed (`421 4.4.2`).",
        unit=DURATION,
    )
    bounce_session_limit: float = setting(
        600.0,
        env="SENDPOST_BOUNCE_SESSION_LIMIT",
        doc="Longest a bounce session may last, however active (`421 4.4.2`).",
        unit=DURATION,
    )
    bounce_store_rate: float = setting(
        200.0,
        env="SENDPOST_BOUNCE_STORE_RATE",
        doc="Recipient checks and messages per second the bounce processor looks up or stores "
        "(whole process); over it, replies wait.",
    )
    bounce_unparsed_quota: int = setting(
        67108864,
        env="SENDPOST_BOUNCE_UNPARSED_QUOTA",
        doc="Bytes of unrecognised bounces kept per provider per 24 h; beyond, `452 4.3.1` "
        "(the sender retries later). At least `SENDPOST_BOUNCE_MAX_BYTES`.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``environ`` (default ``os.environ``); no side effects."""
        env = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = field.metadata["env"]
            raw = env.get(name)
            if raw is None:
                continue
            kind = field.metadata["unit"] or hints[field.name]
            values[field.name] = _parse(kind, name, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Cross-field checks; raises :class:`ConfigError`."""
        url = self.database_url
        if not url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ConfigError(
                "SENDPOST_DATABASE_URL", url, "must start with sqlite:// or postgresql://"
            )
        parse_listen(self.listen, variable="SENDPOST_LISTEN")
        for variable, number in (
            ("SENDPOST_BOUNCE_MAX_CONNECTIONS", self.bounce_max_connections),
            (
                "SENDPOST_BOUNCE_MAX_CONNECTIONS_PER_ADDRESS",
                self.bounce_max_connections_per_address,
            ),
            ("SENDPOST_BOUNCE_IDLE_TIMEOUT", self.bounce_idle_timeout),
            ("SENDPOST_BOUNCE_SESSION_LIMIT", self.bounce_session_limit),
            ("SENDPOST_BOUNCE_STORE_RATE", self.bounce_store_rate),
            ("SENDPOST_WEBHOOK_QUICK_RETRIES", self.webhook_quick_retries),
            ("SENDPOST_WEBHOOK_TIMEOUT", self.webhook_timeout),
            ("SENDPOST_WEBHOOK_LEASE", self.webhook_lease),
            ("SENDPOST_WEBHOOK_BATCH_SIZE", self.webhook_batch_size),
            ("SENDPOST_WEBHOOK_CONCURRENCY", self.webhook_concurrency),
            ("SENDPOST_WEBHOOK_ENDPOINT_CONCURRENCY", self.webhook_endpoint_concurrency),
            ("SENDPOST_WEBHOOK_DEGRADE_AFTER", self.webhook_degrade_after),
            ("SENDPOST_WEBHOOK_DISABLE_AFTER", self.webhook_disable_after),
        ):
            if number <= 0:
                raise ConfigError(variable, str(number), "must be greater than 0")
        if self.bounce_unparsed_quota < self.bounce_max_bytes:
            raise ConfigError(
                "SENDPOST_BOUNCE_UNPARSED_QUOTA",
                str(self.bounce_unparsed_quota),
                "must be at least SENDPOST_BOUNCE_MAX_BYTES",
            )
        for variable, value in (
            ("SENDPOST_INGEST_RATE_LIMIT", self.ingest_rate_limit),
            ("SENDPOST_AUTH_FAILURE_LIMIT", self.auth_failure_limit),
        ):
            if not re.match(r"^\d+\s*/\s*\d*\s*(second|minute|hour|day)s?$", value):
                raise ConfigError(variable, value, "expected e.g. 10000/minute")
        if self.dns_nameserver is not None:
            _check_nameserver(self.dns_nameserver, allow_private=self.allow_private_networks)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None for PostgreSQL / in-memory SQLite."""
        if not self.is_sqlite:
            return None
        path = self.database_url.split("://", 1)[1]
        path = path[1:] if path.startswith("/") else path
        return None if path in ("", ":memory:") else Path(path)

    def resolved_data_dir(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir)
        db = self.sqlite_path()
        return db.parent if db is not None else Path(".")


def _check_nameserver(value: str, *, allow_private: bool) -> None:
    """The nameserver is an outbound connection too: an IP address, refused in the classes
    ``egress.classify`` refuses unless private networks are allowed."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError("SENDPOST_DNS_NAMESERVER", value, "expected an IP address") from None
    kind = egress.classify(address)
    if kind is not None and not allow_private:
        raise ConfigError(
            "SENDPOST_DNS_NAMESERVER",
            value,
            f"{address} is {kind.description}; set {egress.ALLOW_SETTING}=true to allow it "
            "(development only)",
        )


def parse_listen(value: str, *, variable: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT`` → (host, port); raises :class:`ConfigError`."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(variable, value, "expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def parse_duration(text: str, *, variable: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(variable, text, "expected a duration such as 90, 90s, 15m, 24h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _type_name(kind: Any) -> str:
    text = str(kind) if typing.get_origin(kind) else getattr(kind, "__name__", str(kind))
    return text.replace("typing.", "").replace(" | None", ", optional")


def _parse(kind: Any, variable: str, raw: str) -> Any:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if raw.strip() == "":
            return None
        return _parse(args[0], variable, raw)
    if kind == DURATION:
        return parse_duration(raw, variable=variable)
    if kind == DURATIONS:
        parts = [p for p in raw.split(",") if p.strip()]
        if not parts:
            raise ConfigError(variable, raw, "expected a comma-separated list of durations")
        return tuple(parse_duration(p, variable=variable) for p in parts)
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(variable, raw, "expected true or false")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(variable, raw, "expected an integer") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(variable, raw, "expected a number") from None
    return raw


def ensure_secret_key(settings: Settings) -> Settings:
    """Return settings with a secret key: the configured one, or (embedded mode) the one in the
    data directory, generated there with mode 0600 on first run."""
    if settings.secret_key:
        return settings
    if not settings.is_sqlite:
        raise ConfigError("SENDPOST_SECRET_KEY", None, "required when the database is PostgreSQL")
    path = settings.resolved_data_dir() / SECRET_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    key = path.read_text().strip()
    if not key:
        raise ConfigError("SENDPOST_SECRET_KEY", None, f"{path} is empty")
    return dataclasses.replace(settings, secret_key=key)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The CLI's entry: read the environment, then make sure a secret key exists."""
    return ensure_secret_key(Settings.from_env(environ))


def reference_markdown() -> str:
    """The configuration reference table, generated from :class:`Settings`."""
    hints = typing.get_type_hints(Settings)
    lines = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for field in dataclasses.fields(Settings):
        name = field.metadata["unit"] or _type_name(hints[field.name])
        default = "" if field.default in (None, "") else f"`{field.default}`"
        lines.append(
            f"| `{field.metadata['env']}` | {name} | {default} | {field.metadata['doc']} |"
        )
    return "\n".join(lines) + "\n"
