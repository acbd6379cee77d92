"""Command line: ``sendpost-platform {serve,migrate,create-account,api,worker}``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sendpost_platform import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sendpost-platform", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sendpost-platform {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
