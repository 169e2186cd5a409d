"""The command line: `python -m gpukit COMMAND`. Commands live in gpukit.commands.

Exit codes: 0 all cases ran and agreed with the reference; 1 a case failed (wrong result,
backend error, hung; the rest still ran and were saved); 2 bad input, found before anything
ran; 3 --require-gpu and no GPU backend can run; 4 a file could not be written after
measuring (the results went to another place, or nowhere, and the line says where gpukit
tried; or the CSV, HTML, plots); 130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP
(what was measured is saved, marked incomplete, and every process gpukit started is ended).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from gpukit import __version__
from gpukit.commands import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NOT_WRITTEN, EXIT_STATUSES,
                             EXIT_USAGE, STOPPING, STOPPING_SIGNALS, signal_status)

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
                    "and from what size?", epilog=EXIT_STATUSES)
    parser.add_argument("--version", action="version", version=f"gpukit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS:
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gpukit.errors import GpukitError, Interrupted, OutputError
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    STOPPING.install()
    try:
        return args.func(args)
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    except GpukitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as exc:
        print(f"error: {STOPPING_SIGNALS[exc.signum]}", file=sys.stderr)
        return signal_status(exc.signum)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        # A fault of gpukit's own: one line, and the traceback on request for a bug report.
        if os.environ.get("GPUKIT_TRACEBACK"):
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc} (GPUKIT_TRACEBACK=1 shows "
              "where)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        STOPPING.restore()


def entry() -> int:
    """The program: `python -m gpukit` and the `gpukit` script. main(), then an exit that no
    leftover thread can hold up."""
    code = main()
    _leave_if_held(code)
    return code


def _leave_if_held(code: int, wait_s: float = 5.0, daemon_wait_s: float = 0.5) -> None:
    """End the process at once where a thread gpukit started outlives the command.

    Two kinds can: a pool's thread (concurrent.futures' are not daemons, and Python waits for
    them at exit) that waits on a worker gpukit killed as it sent a result, which would keep
    gpukit running for ever after it saved and said everything; and a case's own thread that a
    hung kernel holds (a daemon), which may be inside NumPy, without the GIL, while Python's
    exit frees what it uses: a crash (seen: SIGSEGV after a Ctrl-C). Each gets a moment to end;
    then the process ends without them, once multiprocessing has released its semaphores and
    reaped its children, as it does at any exit."""
    import threading
    import time
    now = time.monotonic()
    held = [t for t in threading.enumerate() if t is not threading.current_thread()
            and (not t.daemon or t.name.startswith("gpukit"))]
    for thread in held:
        limit = now + (daemon_wait_s if thread.daemon else wait_s)
        thread.join(max(0.0, limit - time.monotonic()))
    if not any(t.is_alive() for t in held):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    import multiprocessing
    import multiprocessing.util
    for child in multiprocessing.active_children():
        child.kill()
    multiprocessing.util._exit_function()
    os._exit(code)
