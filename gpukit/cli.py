"""The command line: `python -m gpukit COMMAND`. Commands live in gpukit.commands.

Exit codes: 0 all cases ran and agreed with the reference; 1 a case failed (wrong result or a
backend error; the rest still ran and were saved); 2 bad input; 3 --require-gpu and no GPU
backend can run; 130 interrupted (what was measured is saved).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gpukit import __version__
from gpukit.commands import EXIT_INTERRUPTED, EXIT_USAGE

# One module per command, each with add_parser(subparsers); the order is the help's order.
COMMANDS = (
    "gpukit.commands.compare",
    "gpukit.commands.backends",
    "gpukit.commands.kernels",
    "gpukit.commands.report",
    "gpukit.commands.diff",
    "gpukit.commands.limits",
)


class _Parser(argparse.ArgumentParser):
    """Bad arguments end in one line, `error: ...`, and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gpukit",
        description="Should this numeric code run on threads, processes or the GPU, "
                    "and from what size?")
    parser.add_argument("--version", action="version", version=f"gpukit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS:
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gpukit.errors import GpukitError
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except GpukitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
