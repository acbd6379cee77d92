"""The configuration of a private Postfix instance: settings in, main.cf/master.cf text out (pure).

See ``devtools.postfix`` for what the generated configuration does and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DISCARD = "discard"
HOSTNAME = "mta.sendpost.test"
UUID_HEADER_CHECK = "/^X-Sendpost-Message-UUID:/ INFO\n"


@dataclass(frozen=True)
class PostfixSettings:
    relay: str  # default next hop for every recipient, e.g. "[127.0.0.1]:2525"
    # recipient regexp -> "[host]:port", DISCARD or "transport:nexthop" (e.g. "error:5.1.2 ...")
    routes: Mapping[str, str] = field(default_factory=dict)
    long_queue_ids: bool = False
    content_filter: bool = False
    # the filter answers Postfix only once the re-injected copy is delivered and removed
    content_filter_late_reply: bool = False
    # Postfix tells the filter the parent queue ID (XFORWARD), which it passes on: the child's
    # smtpd line then shows orig_queue_id=PARENT
    content_filter_xforward: bool = True
    maximal_queue_lifetime: str = "1d"
    bounce_queue_lifetime: str = "1d"
    retry_delay: str = "1s"  # queue_run_delay and minimal_backoff_time
    main_cf: Mapping[str, str] = field(default_factory=dict)
    master_cf: Sequence[str] = ()


@dataclass(frozen=True)
class Ports:
    smtpd: int
    reinject: int
    content_filter: int | None


def _transport_target(nexthop: str) -> str:
    """``[host]:port`` → smtp to it; ``DISCARD`` → discard(8); else a full ``transport:nexthop``
    (e.g. ``error:5.1.2 no such domain`` for error(8))."""
    if nexthop == DISCARD:
        return "discard:"
    return f"smtp:{nexthop}" if nexthop.startswith("[") else nexthop


def render_main_cf(root: Path, settings: PostfixSettings, ports: Ports) -> str:
    """main.cf for an instance rooted at ``root`` (a pure function of its arguments)."""
    entries: dict[str, str] = {
        "compatibility_level": "3.6",
        "config_directory": str(root / "etc"),
        "queue_directory": str(root / "spool"),
        "data_directory": str(root / "data"),
        "maillog_file": str(root / "maillog"),
        "maillog_file_prefixes": str(root),
        "myhostname": HOSTNAME,
        "mydomain": "sendpost.test",
        "myorigin": "$myhostname",
        "mydestination": "",
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "smtpd_relay_restrictions": "permit_mynetworks, reject",
        "relayhost": settings.relay,
        "transport_maps": f"regexp:{root / 'etc' / 'transport'}",
        "smtp_dns_support_level": "disabled",
        "smtp_host_lookup": "native",
        "header_checks": f"regexp:{root / 'etc' / 'header_checks'}",
        "enable_long_queue_ids": "yes" if settings.long_queue_ids else "no",
        "maximal_queue_lifetime": settings.maximal_queue_lifetime,
        "bounce_queue_lifetime": settings.bounce_queue_lifetime,
        "queue_run_delay": settings.retry_delay,
        "minimal_backoff_time": settings.retry_delay,
        "maximal_backoff_time": settings.retry_delay,
        "smtpd_error_sleep_time": "0",
        "in_flow_delay": "0",
        "biff": "no",
        "append_dot_mydomain": "no",
        "smtputf8_enable": "yes",
    }
    if ports.content_filter is not None:
        entries["content_filter"] = f"sendpost-filter:[127.0.0.1]:{ports.content_filter}"
    entries.update(settings.main_cf)
    return "".join(f"{key} = {value}\n" for key, value in entries.items())


def render_master_cf(settings: PostfixSettings, ports: Ports) -> str:
    """master.cf: every service unchrooted, postlogd for maillog_file, smtpd on loopback ports."""
    lines = [
        f"127.0.0.1:{ports.smtpd} inet n - n - - smtpd",
        f"127.0.0.1:{ports.reinject} inet n - n - - smtpd"
        " -o syslog_name=postfix/reinject -o content_filter="
        " -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks"
        " -o smtpd_authorized_xforward_hosts=127.0.0.0/8",
        "pickup unix n - n 60 1 pickup",
        "cleanup unix n - n - 0 cleanup",
        "qmgr unix n - n 300 1 qmgr",
        "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce",
        "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush",
        "proxymap unix - - n - - proxymap",
        "smtp unix - - n - - smtp",
        "relay unix - - n - - smtp",
        "showq unix n - n - - showq",
        "error unix - - n - - error",
        "retry unix - - n - - error",
        "discard unix - - n - - discard",
        "anvil unix - - n - 1 anvil",
        "scache unix - - n - 1 scache",
        "postlog unix-dgram n - n - 1 postlogd",
    ]
    if ports.content_filter is not None:
        lines.append(
            "sendpost-filter unix - - n - 4 smtp -o syslog_name=postfix/filter"
            f" -o smtp_send_xforward_command={'yes' if settings.content_filter_xforward else 'no'}"
        )
    lines.extend(settings.master_cf)
    return "\n".join(lines) + "\n"


def render_transport(settings: PostfixSettings) -> str:
    return "".join(
        f"/{pattern}/ {_transport_target(nexthop)}\n"
        for pattern, nexthop in settings.routes.items()
    )
