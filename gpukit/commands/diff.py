"""`gpukit diff A.json B.json`: case by case, B against A: faster, slower, or within the noise.

Noise: where both cases have at least 5 repetitions, a two-sided Mann-Whitney U test on their
wall times (beyond noise when p < 0.01; a rank test, so one slow outlier run cannot make a
change); with fewer repetitions, whether the interquartile ranges are disjoint. Each row says
which test judged it.

`--fail-slower 10%` makes the exit status 1 when any case got slower by more than 10% and beyond
the noise, for CI.
"""

from __future__ import annotations

import math
import sys

from gpukit.commands import EXIT_FAILED, EXIT_OK, console
from gpukit.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("diff", help="compare two saved runs case by case, beyond their noise")
    p.add_argument("a", metavar="A.json", help="the earlier (reference) results")
    p.add_argument("b", metavar="B.json", help="the later results, held against A")
    p.add_argument("--fail-slower", metavar="PCT",
                   help="exit with status 1 if a case got slower by more than PCT (e.g. 10%%) "
                        "beyond the noise")
    p.add_argument("--all", action="store_true",
                   help="list every case, not only those that changed beyond the noise")
    p.set_defaults(func=run)


def parse_percent(text: str) -> float:
    """'10%' or '10' -> 0.10."""
    t = text.strip().rstrip("%").strip()
    try:
        value = float(t)
    except ValueError:
        raise UsageError(f"--fail-slower takes a percentage like 10%, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"--fail-slower must be a percentage >= 0, got {text!r}")
    return value / 100.0


def run(args) -> int:
    from rich.table import Table

    from gpukit import analysis, format
    from gpukit.analysis import fmt_n, fmt_s, params_text
    from gpukit.commands.report import load_results

    threshold = parse_percent(args.fail_slower) if args.fail_slower is not None else None
    a, b = load_results(args.a), load_results(args.b)
    d = analysis.diff(a, b)
    if not d.changes:
        raise UsageError(f"{args.a} and {args.b} have no case in common (another kernel, "
                         f"parameters or sizes?)")
    out = console()
    out.print(f"A: {args.a}: " + format.machine_lines(a)[0], markup=False)
    out.print(f"B: {args.b}: " + format.machine_lines(b)[0], markup=False)
    table = Table(header_style="bold", title="B against A, time per run (median)",
                  title_justify="left")
    for name, justify in (("params", "left"), ("n", "right"), ("variant", "left"),
                          ("workers", "right"), ("A", "right"), ("B", "right"),
                          ("change", "right"), ("verdict", "left"), ("noise test", "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    failing = []
    counts = {"faster": 0, "slower": 0, "within noise": 0}
    for c in d.changes:
        verdict = ("slower" if c.change > 0 else "faster") if c.beyond_noise else "within noise"
        counts[verdict] += 1
        fails = (threshold is not None and c.beyond_noise and c.change > threshold)
        if fails:
            failing.append(c)
        if not (args.all or c.beyond_noise):
            continue
        p, label, w, n = c.key
        style = "red" if verdict == "slower" else "green" if verdict == "faster" else "dim"
        table.add_row(params_text(dict(p)), fmt_n(n), label, str(w), fmt_s(c.a_s), fmt_s(c.b_s),
                      f"{c.change:+.1%}", f"[{style}]{verdict}{' (fails)' if fails else ''}[/]",
                      c.test)
    if table.row_count:
        out.print(table)
    out.print(f"{len(d.changes)} cases in both: {counts['faster']} faster, {counts['slower']} "
              f"slower beyond the noise, {counts['within noise']} within it"
              + (f"; only in A: {len(d.only_a)}" if d.only_a else "")
              + (f"; only in B: {len(d.only_b)}" if d.only_b else "")
              + f" (noise: Mann-Whitney U, p < {analysis.ALPHA:g}, from "
              f"{analysis.MWU_MIN_RUNS} runs a side; else disjoint interquartile ranges).",
              markup=False)
    if failing:
        worst = max(failing, key=lambda c: c.change)
        p, label, w, n = worst.key
        print(f"error: {len(failing)} case(s) slower by more than {threshold:.0%} beyond the "
              f"noise; worst {label} x{w} at n={fmt_n(n)} ({params_text(dict(p))}): "
              f"{worst.change:+.1%}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
