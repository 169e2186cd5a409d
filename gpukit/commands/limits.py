"""`gpukit limits`: this machine's ceilings, measured once and cached, as a table and JSON."""

from __future__ import annotations

from pathlib import Path

from gpukit.commands import EXIT_OK, check_writable, check_writable_folder, console
from gpukit.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("limits", help="measure this machine's ceilings: copy bandwidth, thread, "
                                      "pool and launch costs, transfer curves, FMA rate")
    p.add_argument("--refresh", action="store_true",
                   help="measure again even if this machine's ceilings are cached")
    p.add_argument("--json", metavar="PATH", help="also write the ceilings to PATH")
    p.add_argument("--quick", action="store_true",
                   help="fewer, smaller measurements: a smoke test whose figures are rough")
    p.set_defaults(func=run)


def run(args) -> int:
    from gpukit import allocator, ceilings, limits
    json_path = Path(args.json) if args.json else None
    check_outputs(json_path)
    allocator.steady()  # the ceilings are measured as compare runs its cases
    out = console()
    err = console(stderr=True)
    not_saved = []
    try:
        with _progress(err) as progress:
            data = limits.measure_all(refresh=args.refresh, progress=progress, quick=args.quick)
    except ceilings.NotSaved as exc:
        # The cache went away while measuring: show the figures anyway, then say so.
        data = {**exc.data, "path": None, "cached": False}
        not_saved.append(str(exc))
    if json_path is not None:
        try:
            ceilings.save(data["machine"], data["figures"], data["curves"], data["missing"],
                          path=json_path, settings=data.get("settings"))
        except ceilings.NotSaved as exc:
            json_path = None
            not_saved.append(str(exc))
    if data.get("damaged_cache"):
        err.print(f"warning: {data['damaged_cache']}", markup=False)
    for table in _tables(data):
        out.print(table)
    for line in limits.missing_lines(data):
        out.print(line, markup=False)
    out.print(_summary_line(data, json_path), markup=False)
    if not_saved:
        raise UsageError("; ".join(not_saved) + " (the figures above are all there is of them)")
    return EXIT_OK


def check_outputs(json_path: Path | None) -> None:
    """Refuse, before minutes of measuring, a cache or --json path that cannot be written."""
    from gpukit import ceilings
    if json_path is not None:
        if not json_path.parent.is_dir():
            raise UsageError(f"--json: folder {json_path.parent} does not exist")
        check_writable(str(json_path), "--json ceilings")
    try:
        check_writable_folder(str(ceilings.cache_dir()), "ceilings cache")
    except UsageError as exc:
        raise UsageError(f"{exc} (set GPUKIT_CACHE_DIR to a folder you can write)") from None


def _summary_line(data: dict, json_path: Path | None) -> str:
    settings = data.get("settings", {})
    how = ("reused from the cache (--refresh measures again)" if data["cached"]
           else f"measured in {settings.get('wall_s', 0):.1f} s")
    if settings.get("quick"):
        how += "; --quick: rough figures"
    where = f"stored in {data['path']}" if data["path"] else "not stored"
    return f"ceilings {how}; {where}" + (f"; written to {json_path}" if json_path else "")


def _tables(data: dict) -> list:
    from rich.table import Table
    from gpukit import limits
    m = data.get("machine", {})
    gpu = (m.get("gpu") or {}).get("device")
    title = f"Ceilings of {m.get('hostname')}: {m.get('cpu')}, {m.get('cores')} cores" + \
        (f", {gpu}" if gpu else "")
    figures = Table(title=title, title_justify="left", header_style="bold")
    for name, justify in (("figure", "left"), ("what", "left"), ("value", "right")):
        figures.add_column(name, justify=justify, no_wrap=(name != "what"))
    for row in limits.figure_rows(data):
        figures.add_row(*row)
    tables = [figures]
    header, rows = limits.transfer_rows(data.get("curves", {}))
    if rows:
        curve = Table(title="Host<->device copies (device time and bandwidth; small sizes show "
                            "the latency, large ones the bandwidth)",
                      title_justify="left", header_style="bold")
        for name in header:
            curve.add_column(name, justify="right", no_wrap=True)
        for row in rows:
            curve.add_row(*row)
        tables.append(curve)
    return tables


class _progress:
    """A spinner on a terminal, else one line per step on stderr; the measure_all callback."""

    def __init__(self, console):
        self.console = console
        self._status = None

    def __enter__(self):
        if self.console.is_terminal:
            self._status = self.console.status("measuring")
            self._status.__enter__()
        return self

    def __call__(self, label: str, index: int, total: int) -> None:
        text = f"measuring {label} ({index + 1} of {total})"
        if self._status is not None:
            self._status.update(text)
        else:
            self.console.print(text, markup=False)

    def __exit__(self, *exc):
        if self._status is not None:
            self._status.__exit__(*exc)
