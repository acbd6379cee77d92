"""Command line: ``sendpost-agent {parse,run,check}``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sendpost_agent import __version__
from sendpost_agent.commands import register as register_daemon_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sendpost-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sendpost-agent {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_daemon_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
