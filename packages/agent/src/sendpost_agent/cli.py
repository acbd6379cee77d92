"""Command line: ``sendpost-agent {parse,run,check}``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sendpost_agent import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sendpost-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sendpost-agent {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from sendpost_agent import commands  # the daemon's commands (imports httpx: ~0.5 s)
    from sendpost_agent.parse import command as parse_command

    parse_command.register(subparsers)
    commands.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        # The single file's launchers, if one was killed: remove what it unpacked (only the
        # daemon watches them, importing the module; `parse` starts without it).
        frozen = sys.modules.get("sendpost_agent.frozen")
        if frozen is not None:
            frozen.clean_up()


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["parse"]:
        # Straight to `parse`, without importing the daemon's dependencies: operators and
        # benchmarks run it on large files, start-up time counts.
        from sendpost_agent.parse import command as parse_command

        return parse_command.main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
