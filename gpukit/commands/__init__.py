"""What every command shares: exit codes, parsing of user input, consoles.

Commands live one per module in this package, each with `add_parser(subparsers)`; gpukit.cli
lists the modules. Only commands print; the library raises.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import signal
import stat

from gpukit.errors import Interrupted, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_GPU, EXIT_NOT_WRITTEN = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
# For --help; the exit statuses are told in full in docs/faults.md.
EXIT_STATUSES = ("exit status: 0 every case ran and agreed with the reference; 1 a case failed "
                 "(error, wrong result, hung), the rest ran and are saved; 2 bad input, found "
                 "before anything ran; 3 --require-gpu and no GPU backend can run; 4 a file "
                 "could not be written after measuring (the line says where the results are, or "
                 "where gpukit tried); 130, 143, 129 stopped by Ctrl-C, SIGTERM, SIGHUP (what "
                 "was measured is saved, every process gpukit started is ended).")
# What a shell reports for a program a signal ended (128 + the signal's number), kept for the
# signals gpukit catches so that `timeout`, a CI job or a scheduler sees the usual status.
STOPPING_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
if hasattr(signal, "SIGHUP"):
    STOPPING_SIGNALS[signal.SIGHUP] = "hung up"


def signal_status(signum: int) -> int:
    return EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + int(signum)


class Stopping:
    """SIGINT, SIGTERM and SIGHUP all stop a command as Ctrl-C does: the first raises
    `Interrupted` in the main thread, where the command saves what it measured and ends every
    process it started. Later ones are noted and not raised, so that a second Ctrl-C cannot cut
    that saving short; `disarm()` makes the first one wait too, once there is nothing left to stop.
    """

    def __init__(self):
        self.received: int | None = None
        self.armed = True
        self._before = {}

    def install(self) -> None:
        """Armed, nothing received yet, and the handlers in place (in the main thread only: no
        other may set them, as when gpukit runs inside another program's thread)."""
        import threading
        self.received, self.armed = None, True
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOPPING_SIGNALS:
            self._before[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._before.items():
            signal.signal(signum, handler)
        self._before.clear()

    def disarm(self) -> None:
        self.armed = False

    def _handle(self, signum, frame) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if first and self.armed:
            raise Interrupted(signum)


STOPPING = Stopping()


# Past any memory or worker count, and still a C long long (the CUDA kernels' n).
MAX_COUNT = 2 ** 62


def parse_count(text: str, what: str, examples: str = "1024, 2^20, 64k") -> int:
    """'1024', '2^20', '1e6' or '64k' -> a positive int, or UsageError naming `what`."""
    try:
        value = _count_value(text.strip().lower())
    except ValueError:
        raise UsageError(f"{what} must be a positive integer (like {examples}), "
                         f"got {text!r}") from None
    if value <= 0:
        raise UsageError(f"{what} must be positive, got {text!r}")
    if value > MAX_COUNT:
        raise UsageError(f"{what} {text!r} is too large (at most 2^62)")
    return value


def _count_value(t: str) -> int | float:
    """The number a count's text stands for; ValueError if it is none. Counts past MAX_COUNT
    come back as infinity rather than being computed (2^10^9 would take minutes)."""
    if "^" in t:
        base, exp = (int(part) for part in t.split("^", 1))
        if exp < 0:  # 2^-1 is no count
            raise ValueError
        if abs(base) > 1 and exp > MAX_COUNT.bit_length():
            return math.inf if base > 0 or exp % 2 == 0 else -math.inf
        return base ** exp
    if t.endswith(("k", "m")):
        return int(t[:-1]) * (1024 if t[-1] == "k" else 1024 ** 2)
    if "e" in t:
        f = float(t)
        if math.isinf(f):
            return f
        if math.isnan(f) or f != int(f):
            raise ValueError
        return int(f)
    return int(t)


def parse_workers(text: str) -> tuple[int, ...]:
    """Comma list of worker counts, sorted, each once."""
    workers = {parse_count(w, "workers", examples="1, 4, 16") for w in text.split(",")
               if w.strip()}
    if not workers:
        raise UsageError("no worker counts given")
    return tuple(sorted(workers))


def parse_sizes(text: str) -> tuple[int, ...]:
    """Comma list of sizes; 'A..B' is A, 2A, 4A, ... up to B; 'A..B:F' steps by a factor F."""
    sizes: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(.+?)\.\.(.+?)(?::(\d+))?", part)
        if not m:
            sizes.append(parse_count(part, "size"))
            continue
        lo, hi = parse_count(m[1], "size"), parse_count(m[2], "size")
        factor = int(m[3]) if m[3] else 2
        if factor < 2 or hi < lo:
            raise UsageError(f"size range {part!r} needs A <= B and a factor of at least 2")
        n = lo
        while n <= hi:
            sizes.append(n)
            n *= factor
    if not sizes:
        raise UsageError("no sizes given")
    return tuple(sorted(set(sizes)))


def parse_names(text: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    for name in names:
        if name not in known:
            raise UsageError(f"unknown {what} {name!r} (known: {', '.join(known)})")
    if not names:
        raise UsageError(f"no {what} given")
    return names


def parse_param_sets(kernel, given: list[str] | None) -> tuple[dict[str, int], ...]:
    """--param k=2,64 --param m=3 -> every combination; none -> the kernel's defaults.

    The same name given twice (--param k=2 --param k=4) means both values, as k=2,4 does: a
    user adding a value to a command line expects it to join the others, not replace them."""
    if not given:
        return tuple(kernel.resolve_params(p) for p in kernel.default_param_sets)
    axes: dict[str, list[str]] = {}
    for item in given:
        name, sep, values = item.partition("=")
        if not sep or not values.strip():
            raise UsageError(f"--param takes NAME=V1,V2,..., got {item!r}")
        axis = axes.setdefault(name.strip(), [])
        axis.extend(v.strip() for v in values.split(",") if v.strip() and v.strip() not in axis)
    names = list(axes)
    return tuple(kernel.resolve_params(dict(zip(names, combo)))
                 for combo in itertools.product(*axes.values()))


def default_workers() -> tuple[int, ...]:
    cores = os.cpu_count() or 1
    counts = [1 << i for i in range(cores.bit_length()) if 1 << i <= cores]
    if counts[-1] != cores:
        counts.append(cores)
    return tuple(counts)


def console(stderr: bool = False):
    """A rich console at the terminal's width; piped, at the width COLUMNS gives, else 200
    (wide enough for a log that nobody reads at 80 columns)."""
    from rich.console import Console
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").strip().isdigit():
        console = Console(stderr=stderr, highlight=False, width=200)
    return console


def check_writable(path: str, what: str):
    """Refuse, before anything is measured, an output path that could not be written, or that
    holds anything but a regular file (a FIFO, a device: writing a file there would replace it).
    A symlink is written through, to its target, which must then be a regular file or new.
    Returns the path that will be written and, for a symlink, a line that says so."""
    from pathlib import Path
    target, note = Path(path), None
    if target.is_symlink():
        try:
            resolved = target.resolve(strict=False)
        except (OSError, RuntimeError):
            raise UsageError(f"the {what} path {path} is a symlink that loops") from None
        kind = _kind_of(resolved)
        if kind is not None:
            raise UsageError(f"the {what} path {path} is a symlink to {resolved}, a {kind}, "
                             f"not a regular file: refused (give a file name)")
        target, note = resolved, f"{path} is a symlink: the {what} go to its target {resolved}"
    else:
        kind = _kind_of(target)
        if kind is not None:
            raise UsageError(f"the {what} path {path} is a {kind}, not a regular file: refused, "
                             f"gpukit replaces only regular files (give a file name)")
    _try_write_in(target.parent, f"cannot write the {what} to {path}")
    return target, note


def _kind_of(path) -> str | None:
    """What stands at `path` when it is neither a regular file nor nothing (symlinks followed)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"path that cannot be looked at ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


def check_writable_folder(path: str, what: str) -> None:
    """The same for an output folder: it can be made, and a file written in it."""
    from pathlib import Path
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UsageError(f"the {what} folder {path} is a file; give a folder")
    _try_write_in(target, f"cannot write the {what} to {path}")


def _try_write_in(folder, failure: str) -> None:
    # Creating a real file is the only check that sees read-only mounts, quotas and /proc alike.
    import tempfile
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"{failure}: {exc.strerror or exc}") from None
