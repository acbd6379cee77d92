"""The ``run`` and ``check`` subcommands (``cli.py`` registers them with :func:`register`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from sendpost_agent import frozen
from sendpost_agent.config import ENV_PREFIX, FIELDS, Settings, load
from sendpost_agent.errors import ConfigError

if TYPE_CHECKING:
    from sendpost_agent.app import Agent


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML settings file (default /etc/sendpost-agent/config.yaml)",
    )
    for key, field in FIELDS.items():
        parser.add_argument(f"--{key}", dest=field.name, default=None, help=field.metadata["help"])


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``run`` and ``check`` to the ``sendpost-agent`` parser."""
    run = subparsers.add_parser("run", help="follow the log and ship delivery events (daemon)")
    _add_settings(run)
    run.set_defaults(handler=run_command)
    check = subparsers.add_parser(
        "check", help="validate settings, log access and that the endpoint accepts the key"
    )
    _add_settings(check)
    check.set_defaults(handler=check_command)


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    flags = {key: getattr(args, f.name) for key, f in FIELDS.items()}
    config = args.config or (
        Path(env[ENV_PREFIX + "CONFIG"]) if ENV_PREFIX + "CONFIG" in env else None
    )
    return load(flags, env, config)


def run_command(args: argparse.Namespace) -> int:
    from sendpost_agent.app import Agent, check_log_readable

    try:
        settings = settings_from(args, os.environ)
        check_log_readable(settings.log_path)
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)
        return asyncio.run(_run_watched(Agent(settings)))
    except ConfigError as exc:
        print(f"sendpost-agent: {exc}", file=sys.stderr)
        return 2


async def _run_watched(agent: Agent) -> int:
    """Run the agent; stop it as SIGTERM would if a launcher of the single file is killed."""
    loop = asyncio.get_running_loop()

    def launcher_gone() -> None:
        logging.getLogger(__name__).warning("the launcher of this executable was killed: stopping")
        loop.call_soon_threadsafe(agent.stop.set)

    with frozen.watch(launcher_gone):
        return await agent.run()


def check_command(args: argparse.Namespace) -> int:
    from sendpost_agent.app import check_log_readable

    try:
        settings = settings_from(args, os.environ)
    except ConfigError as exc:
        print(f"FAIL settings: {exc}")
        return 2
    print("ok   settings are valid")
    problems = 0
    try:
        check_log_readable(settings.log_path)
        print(f"ok   the log {settings.log_path} can be read")
    except ConfigError as exc:
        print(f"FAIL the log: {exc}")
        problems += 1
    verdict = probe_endpoint(settings)
    print(verdict[1])
    problems += not verdict[0]
    return 1 if problems else 0


def probe_endpoint(settings: Settings) -> tuple[bool, str]:
    """Ask the endpoint about the key with an empty batch (2xx or 400 mean the key is accepted)."""
    try:
        response = httpx.post(
            settings.endpoint,
            content=b'{"events":[]}',
            headers={"X-SP-Event-ApiKey": settings.api_key, "Content-Type": "application/json"},
            timeout=settings.request_timeout,
        )
    except httpx.HTTPError as exc:
        return False, f"FAIL cannot reach the endpoint {settings.endpoint}: {exc}"
    code = response.status_code
    if code in (401, 403):
        return False, f"FAIL the endpoint rejects the API key (HTTP {code})"
    if 200 <= code < 300 or code == 400:
        return True, f"ok   the endpoint {settings.endpoint} accepts the API key"
    return False, f"FAIL the endpoint answered HTTP {code}: {response.text[:200]}"
