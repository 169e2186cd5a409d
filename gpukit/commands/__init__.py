"""What every command shares: exit codes, parsing of user input, consoles.

Commands live one per module in this package, each with `add_parser(subparsers)`; gpukit.cli
lists the modules. Only commands print; the library raises.
"""

from __future__ import annotations

import itertools
import math
import os
import re

from gpukit.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_GPU, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


# Past any memory or worker count, and still a C long long (the CUDA kernels' n).
MAX_COUNT = 2 ** 62


def parse_count(text: str, what: str) -> int:
    """'1024', '2^20', '1e6' or '64k' -> a positive int, or UsageError naming `what`."""
    t = text.strip().lower()
    try:
        if "^" in t:
            base, exp = (int(part) for part in t.split("^", 1))
            if exp < 0 or exp > MAX_COUNT.bit_length():  # 2^-1 is no count; 2^10^9 no size
                raise ValueError
            value = base ** exp
        elif t.endswith(("k", "m")):
            value = int(t[:-1]) * (1024 if t[-1] == "k" else 1024 ** 2)
        elif "e" in t:
            f = float(t)
            if not math.isfinite(f) or f != int(f):
                raise ValueError
            value = int(f)
        else:
            value = int(t)
    except ValueError:
        raise UsageError(f"{what} must be a positive integer (like 1024, 2^20, 64k), "
                         f"got {text!r}") from None
    if value <= 0:
        raise UsageError(f"{what} must be positive, got {text!r}")
    if value > MAX_COUNT:
        raise UsageError(f"{what} {text!r} is larger than any machine could hold (2^62)")
    return value


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
    """--param k=2,64 --param m=3 -> every combination; none -> the kernel's defaults."""
    if not given:
        return tuple(kernel.resolve_params(p) for p in kernel.default_param_sets)
    axes: dict[str, list[str]] = {}
    for item in given:
        name, sep, values = item.partition("=")
        if not sep or not values.strip():
            raise UsageError(f"--param takes NAME=V1,V2,..., got {item!r}")
        axes[name.strip()] = [v.strip() for v in values.split(",") if v.strip()]
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
    from rich.console import Console
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=200)
    return console


def check_writable(path: str, what: str) -> None:
    """Refuse, before anything is measured, an output path that could not be written."""
    from pathlib import Path
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"the {what} path {path} is a folder; give a file name")
    _try_write_in(target.parent, f"cannot write the {what} to {path}")


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
