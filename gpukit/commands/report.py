"""`gpukit report RESULTS.json`: a saved run's table, findings and plots again, without measuring.

`--html` writes one self-contained page (figures embedded), `--plots DIR` the figures as PNG and
SVG, `--csv` the case table, `--markdown` the findings and facts as Markdown (linking the figures
that --plots writes). The model holds each case against the ceilings saved in the results
file, else those `gpukit limits` stored for that machine, else `--ceilings FILE`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpukit.commands import EXIT_OK, check_writable, check_writable_folder, console
from gpukit.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="render a saved run again: table, findings, plots, HTML, CSV")
    p.add_argument("results", metavar="RESULTS.json", help="a results file written by compare")
    p.add_argument("--html", metavar="OUT.html", help="write one self-contained HTML page")
    p.add_argument("--plots", metavar="DIR", help="write the figures as PNG and SVG into DIR")
    p.add_argument("--csv", metavar="OUT.csv", help="write the case table as CSV")
    p.add_argument("--markdown", metavar="OUT.md",
                   help="write the findings, machine, ceilings and limits as Markdown (with "
                        "--plots, linking the figures)")
    p.add_argument("--ceilings", metavar="CEILINGS.json",
                   help="machine ceilings to hold the cases against (default: those saved with "
                        "the results, else the ones `gpukit limits` stored for that machine)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print only the answer and the findings, not the case table")
    add_table_option(p)
    p.set_defaults(func=run)


def add_table_option(p) -> None:
    from gpukit.reporting import tables
    p.add_argument("--table", choices=tables.TABLES, default=tables.TABLE_BEST,
                   help="best: one row per size and variant, at its fastest worker count, with "
                        "the columns that fit the terminal (default); full: every case and "
                        "every column")


def load_results(path: str) -> dict:
    """A results file, checked enough that a report of it cannot fail half way."""
    from gpukit import results
    return results.load(path)


def check_outputs(args) -> None:
    """Refuse unwritable output paths before the report is printed, not after."""
    for path, what in ((args.csv, "CSV"), (args.html, "HTML page"), (args.markdown, "Markdown")):
        if path:
            check_writable(path, what)
    if args.plots:
        check_writable_folder(args.plots, "plots")


def stored_ceilings(data: dict, path: str | None, warn=None) -> dict | None:
    """--ceilings FILE (damaged: UsageError), else those saved with the results, else this
    machine's cache (damaged: `warn` is told, and the report goes on without them)."""
    from gpukit import ceilings
    if path:
        if Path(path).is_dir():
            raise UsageError(f"--ceilings {path} is a folder; give a ceilings file")
        found = ceilings.load(path=Path(path))
        if found is None:
            raise UsageError(f"--ceilings {path}: no such file, or written by a newer gpukit")
        return found
    if data.get("ceilings"):
        return data["ceilings"]
    found, damaged = ceilings.cached(data["machine"])
    if damaged and warn:
        warn(damaged.replace("measured again", "`gpukit limits` measures them again"))
    return found


def write_text(path: str, text: str, what: str) -> Path:
    """Write an output file; OutputError (its own exit status: not bad input) if the disk
    fills or the folder went, leaving no partial file."""
    from gpukit.errors import OutputError
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as exc:
        if target.is_file():
            target.unlink(missing_ok=True)
        raise OutputError(f"cannot write the {what} to {path}: {exc.strerror or exc}") from None
    return target


def print_report(out, data: dict, an, table: str | None = "best") -> None:
    """The answer first, then the findings behind it, then the cases as a table that fits the
    console (`table`: tables.TABLE_BEST or TABLE_FULL; None for none), then the machine."""
    from gpukit.reporting import tables
    for part in tables.answer_renderables(data, an):
        out.print(part)
    lines = tables.finding_lines(data, an)
    if lines:
        out.print()
        out.print("[bold]Findings[/]")
        for line in lines:
            out.print(line, markup=False)
    if table:
        for t in tables.case_tables(data, an, width=out.width, table=table):
            out.print()
            out.print(t)
    out.print()
    for line in tables.machine_lines(data) + tables.backend_lines(data):
        out.print(line, markup=False)


def run(args) -> int:
    from gpukit import analysis
    from gpukit.reporting import page, plots, tables
    data = load_results(args.results)
    check_outputs(args)
    err = console(stderr=True)
    an = analysis.analyze(data, stored_ceilings(
        data, args.ceilings, lambda line: err.print(f"warning: {line}", markup=False)))
    out = console()
    print_report(out, data, an, table=None if args.quiet else args.table)
    if not args.quiet:
        out.print()
        out.print("[bold]Ceilings[/]")
        for line in tables.ceiling_lines(data, an):
            out.print(f"- {line}", markup=False)
        flags = tables.flag_lines(data, an)
        if flags:
            out.print()
            out.print(f"[bold]Far from the model[/] ({len(flags)} cases)")
            for line in flags:
                out.print(f"- {line}", markup=False)
    written = []
    if args.csv:
        written.append(write_text(args.csv, tables.csv_text(data, an), "CSV"))
    figs = plots.figures(data, an) if (args.plots or args.html) else None
    if args.plots:
        try:
            written.extend(plots.write_all(data, args.plots, an, figs=figs))
        except OSError as exc:
            from gpukit.errors import OutputError
            raise OutputError(f"cannot write plots to {args.plots}: {exc.strerror or exc}") \
                from None
    if args.html:
        written.append(write_text(args.html, page.html_page(data, an, figures=figs), "HTML page"))
    if args.markdown:
        links = None
        if args.plots:
            # Relative to the Markdown file, so the pair can move together.
            folder = os.path.relpath(args.plots, os.path.dirname(os.path.abspath(args.markdown)))
            links = {name: os.path.join(folder, f"{name}.png") for name in figs}
        written.append(write_text(args.markdown, page.markdown_page(data, an, figure_paths=links),
                                  "Markdown"))
    if written:
        out.print()
        out.print("wrote " + ", ".join(str(p) for p in written), markup=False)
    return EXIT_OK
