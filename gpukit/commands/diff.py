"""`gpukit diff A.json B.json`: case by case, B against A: faster, slower, or within the noise.

A change counts (is "beyond the noise") only when all of these hold, as in asv's and pyperf's
comparisons, which ask for both statistical significance and a minimum effect size:

- the repetitions differ: a two-sided Mann-Whitney U test on their wall times (p < 0.01) where
  both cases have at least 5 repetitions, else disjoint interquartile ranges;
- the change of medians is larger than `--min-change` (default 10%);
- it is larger than either case's own spread (interquartile range over median);
- it is larger than 3 robust standard deviations of how much all the cases moved between the two
  runs. Repetitions within one run share a process, cache and clock state and the machine's load
  at that moment; two runs do not, so on a shared machine the same code moves by tens of percent
  from run to run while each run's repetitions agree to a few percent. The rank test alone calls
  that a change. The spread of log(B/A) across all the cases measures this noise (as long as most
  cases did not really change); it is centred on the median, so a change that moves every case
  alike still counts.

Each row says which test judged it and which bar it had to clear. `--fail-slower 10%` makes the
exit status 1 when any case got slower beyond the noise by more than 10%, for CI; the summary
says when the run-to-run noise is too large for a threshold that small to be checked.

A case that ran in A and failed in B (a wrong result, an error) is listed and makes the exit
status 1 with or without `--fail-slower`: a gate on speed must not pass a broken result. One
that B skipped (the run limit stopped its variant at a smaller size, since it got slower) fails
`--fail-slower` too.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

from gpukit.commands import EXIT_FAILED, EXIT_OK, console
from gpukit.errors import UsageError

if TYPE_CHECKING:
    from gpukit import analysis

# analysis.MIN_CHANGE, spelled out so that `--help` needs no import of the analysis (a test checks
# that the two agree).
DEFAULT_MIN_CHANGE = "10%"


def add_parser(sub) -> None:
    p = sub.add_parser("diff", help="compare two saved runs case by case, beyond their noise")
    p.add_argument("a", metavar="A.json", help="the earlier (reference) results")
    p.add_argument("b", metavar="B.json", help="the later results, held against A")
    p.add_argument("--fail-slower", metavar="PCT",
                   help="exit with status 1 if a case got slower by more than PCT (e.g. 10%%) "
                        "beyond the noise")
    p.add_argument("--min-change", metavar="PCT", default=DEFAULT_MIN_CHANGE,
                   help="smaller changes of the median are noise however significant (default: "
                        "%(default)s; changes inside either case's spread, or inside the "
                        "run-to-run noise of the two runs, are noise too)")
    p.add_argument("--all", action="store_true",
                   help="list every case, not only those that changed beyond the noise")
    p.set_defaults(func=run)


def parse_percent(text: str, option: str = "--fail-slower") -> float:
    """'10%' or '10' -> 0.10."""
    t = text.strip().rstrip("%").strip()
    try:
        value = float(t)
    except ValueError:
        raise UsageError(f"{option} takes a percentage like 10%, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{option} must be a percentage >= 0, got {text!r}")
    return value / 100.0


def run(args) -> int:
    from gpukit import analysis
    from gpukit.reporting import tables
    from gpukit.commands.report import load_results

    threshold = parse_percent(args.fail_slower) if args.fail_slower is not None else None
    min_change = parse_percent(args.min_change, "--min-change")
    a, b = load_results(args.a), load_results(args.b)
    d = analysis.diff(a, b, min_change)
    if not d.changes and not d.lost:
        raise UsageError(f"{args.a} and {args.b} have no case in common (another kernel, "
                         f"parameters or sizes?)")
    out = console()
    for name, data in (("A", a), ("B", b)):
        path = args.a if name == "A" else args.b
        out.print(f"{name}: {path}: " + tables.machine_lines(data)[0], markup=False)
        partial = tables.partial_text(data)
        if partial:
            out.print(f"   {name} is a {partial}", markup=False)
    table = change_table(d, threshold, args.all)
    if table.row_count:
        out.print(table)
    for line in lost_lines(d):
        out.print(line, markup=False)
    for line in summary_lines(d, args.a, args.b, threshold):
        out.print(line, markup=False)
    errors = failure_lines(d, threshold)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


def failure_lines(d: analysis.Diff, threshold: float | None) -> list[str]:
    """Why the exit status is 1: cases that failed in B, and with a threshold, cases that got
    slower beyond it or that B's run limit skipped."""
    from gpukit import analysis

    lines = []
    broken = [x for x in d.lost if x.status == "failed"]
    if broken:
        lines.append(f"{len(broken)} case(s) that ran in A failed in B; first "
                     f"{analysis.case_text(broken[0].key)}: {_short(broken[0].reason)}")
    if threshold is None:
        return lines
    slower = [c for c in d.changes if fails(c, threshold)]
    if slower:
        worst = max(slower, key=lambda c: c.change)
        lines.append(f"{len(slower)} case(s) slower by more than {threshold * 100:g}% beyond the "
                     f"noise; worst {analysis.case_text(worst.key)}: {worst.change:+.1%}")
    skipped = [x for x in d.lost if x.status == "skipped"]
    if skipped:
        lines.append(f"{len(skipped)} case(s) that ran in A were skipped in B; first "
                     f"{analysis.case_text(skipped[0].key)}: {_short(skipped[0].reason)}")
    return lines


def lost_lines(d: analysis.Diff, most: int = 10) -> list[str]:
    """The cases that ran in A and not in B, with B's reason, a few of them by name."""
    from gpukit import analysis

    if not d.lost:
        return []
    lines = [f"Ran in A, not in B ({len(d.lost)}):"]
    for x in d.lost[:most]:
        lines.append(f"- {analysis.case_text(x.key)}: {x.status} in B: {_short(x.reason)}")
    if len(d.lost) > most:
        lines.append(f"- and {len(d.lost) - most} more")
    return lines


def _short(reason: str, chars: int = 160) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= chars else reason[:chars - 3] + "..."


def fails(c: analysis.Change, threshold: float | None) -> bool:
    """Slower beyond the noise, and by more than --fail-slower's threshold."""
    return threshold is not None and c.beyond_noise and c.change > threshold


def change_table(d: analysis.Diff, threshold: float | None, every: bool):
    """The changed cases (`every`: all cases) as a rich table."""
    from rich.table import Table

    from gpukit.analysis import params_text
    from gpukit.units import fmt_n, fmt_s

    table = Table(header_style="bold", title="B against A, time per run (median)",
                  title_justify="left")
    for name, justify in (("params", "left"), ("n", "right"), ("variant", "left"),
                          ("workers", "right"), ("A", "right"), ("B", "right"),
                          ("change", "right"), ("verdict", "left"), ("noise test", "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    for c in d.changes:
        if not (every or c.beyond_noise):
            continue
        p, label, w, n = c.key
        verdict = c.verdict
        style = "red" if verdict == "slower" else "green" if verdict == "faster" else "dim"
        table.add_row(params_text(dict(p)), fmt_n(n), label, str(w), fmt_s(c.a_s), fmt_s(c.b_s),
                      f"{c.change:+.1%}",
                      f"[{style}]{verdict}{' (fails)' if fails(c, threshold) else ''}[/]",
                      f"{c.test}; bar {bar_text(c)} ({c.bar_from})")
    return table


def bar_text(c: analysis.Change) -> str:
    """The bar on the side of the change: x1.55 either way is +55% slower or -35% faster."""
    return f"{c.bar:+.0%}" if c.change >= 0 else f"{1 / (1 + c.bar) - 1:+.0%}"


def summary_lines(d: analysis.Diff, a_name: str, b_name: str,
                  threshold: float | None) -> list[str]:
    """How many changed, and what counted as noise (with the run-to-run figure)."""
    from gpukit import analysis

    counts = {v: sum(c.verdict == v for c in d.changes)
              for v in ("faster", "slower", "within noise")}
    lines = [f"{len(d.changes)} cases in both: {counts['faster']} faster, {counts['slower']} "
             f"slower beyond the noise, {counts['within noise']} within it"
             + (f"; ran in A, not in B: {len(d.lost)}" if d.lost else "")
             + (f"; only in A: {len(d.only_a)}" if d.only_a else "")
             + (f"; only in B: {len(d.only_b)}" if d.only_b else "") + "."]
    test = (f"Noise: a change counts when Mann-Whitney U says so (p < {analysis.ALPHA:g}, from "
            f"{analysis.MWU_MIN_RUNS} runs a side; else disjoint interquartile ranges) and it is "
            f"larger than --min-change {d.min_change * 100:g}%, than either case's spread")
    if d.run_noise is None:
        lines.append(f"{test} (run-to-run noise not estimated: fewer than "
                     f"{analysis.RUN_NOISE_MIN_CASES} cases in both).")
    else:
        lines.append(f"{test}, and than {analysis.RUN_NOISE_SIGMAS:g}x the run-to-run noise: "
                     f"{d.run_bar:.0%} here (the cases' changes between these two runs spread "
                     f"by a robust standard deviation of {math.expm1(d.run_noise):.1%}).")
    if threshold is not None and d.run_noise is not None and d.run_bar > threshold:
        lines.append(f"note: the run-to-run noise between {a_name} and {b_name} hides changes "
                     f"below {d.run_bar:.0%}, so --fail-slower {threshold * 100:g}% cannot catch a "
                     f"smaller slowdown here (compare runs made on a quieter machine).")
    return lines
