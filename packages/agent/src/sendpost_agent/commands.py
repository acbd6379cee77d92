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
from sendpost_agent.config import ENV_PREFIX, FIELDS, Settings, load, tls_verify
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
    from sendpost_agent.app import Agent
    from sendpost_agent.sources.choice import choose

    try:
        settings = settings_from(args, os.environ)
        choice = choose(settings.log_path, settings.journal_directory)
        tls_verify(settings.endpoint, os.environ)
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)
        return asyncio.run(_run_watched(Agent(settings, choice=choice)))
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
    from sendpost_agent.sources.choice import choose
    from sendpost_agent.sources.choice import verdict as source_verdict

    try:
        settings = settings_from(args, os.environ)
    except ConfigError as exc:
        print(f"FAIL settings: {exc}")
        return 2
    print("ok   settings are valid")
    problems = 0
    try:
        choice = choose(settings.log_path, settings.journal_directory)
        ok, line = source_verdict(choice, settings.journal_directory)
        print(line)
        problems += not ok
    except ConfigError as exc:
        print(f"FAIL the log: {exc}")
        problems += 1
    for ok, line in (*check_state_and_listen(settings), probe_endpoint(settings)):
        print(line)
        problems += not ok
    return 1 if problems else 0


def check_state_and_listen(settings: Settings) -> list[tuple[bool, str]]:
    """The state directory can be written (or created) and locked; the listen address is free,
    unless an agent already running with this state directory holds both."""
    import fcntl
    import socket
    import tempfile

    state, (host, port) = settings.state_dir, settings.listen
    running = False
    if state.is_dir():
        try:
            tempfile.TemporaryFile(dir=state).close()
            fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            return [(False, f"FAIL the state directory {state} is not usable: {exc.strerror}")]
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running = True
        finally:
            os.close(fd)
        results = [(True, f"ok   the state directory {state} can be written")]
    else:
        parent = next((p for p in state.parents if p.exists()), Path("/"))
        if state.exists() or not os.access(parent, os.W_OK | os.X_OK):
            why = "is not a directory" if state.exists() else f"cannot be created in {parent}"
            return [(False, f"FAIL the state directory {state} {why}")]
        results = [(True, f"ok   the state directory {state} will be created")]
    if running:
        results[0] = (True, f"ok   the state directory {state} is in use by the running agent")
        return [*results, (True, f"ok   the running agent listens on {host}:{port}")]
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return [*results, (False, f"FAIL cannot listen on {host}:{port}: {reason}")]
    return [*results, (True, f"ok   {host}:{port} is free to listen on")]


def probe_endpoint(settings: Settings) -> tuple[bool, str]:
    """Ask the endpoint about the key with an empty batch (2xx or 400 mean the key is accepted)."""
    try:
        verify = tls_verify(settings.endpoint, os.environ)
    except ConfigError as exc:
        return False, f"FAIL TLS: {exc}"
    try:
        response = httpx.post(
            settings.endpoint,
            verify=verify,
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
