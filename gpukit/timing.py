"""Repetition and statistics: how many times to run a case, and what to report of the runs.

Budgets are in seconds, not counts (as in triton's do_bench and pyperf's calibration): a case
repeats until `budget_s` of wall time has gone by and at least `min_reps` runs are in, never
more than `max_reps`. The clock is a parameter so the stopping rule is tested without waiting.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence

from gpukit.records import RunTiming


@dataclasses.dataclass(frozen=True)
class Budget:
    budget_s: float = 0.2
    min_reps: int = 3
    max_reps: int = 100
    warmup: int = 1

    def __post_init__(self):
        if self.min_reps < 1 or self.max_reps < self.min_reps or self.warmup < 0:
            raise ValueError("need 1 <= min_reps <= max_reps and warmup >= 0")
        if self.budget_s < 0:
            raise ValueError("budget_s must be >= 0")


def repeat(run_once: Callable[[], RunTiming], budget: Budget,
           clock: Callable[[], float] = time.perf_counter) -> list[RunTiming]:
    """Run `run_once` until the budget is spent; warm-up runs are the caller's business."""
    runs: list[RunTiming] = []
    start = clock()
    while len(runs) < budget.max_reps:
        runs.append(run_once())
        if len(runs) >= budget.min_reps and clock() - start >= budget.budget_s:
            break
    return runs


def describe(values: Sequence[float]) -> dict[str, float]:
    """Median and spread of one figure over the repetitions.

    `rel_spread` is the interquartile range over the median: robust to the one slow run that a
    shared machine always produces, and comparable across sizes.
    """
    ordered = sorted(values)
    median = statistics.median(ordered)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = median
    return {
        "median": median,
        "min": ordered[0],
        "max": ordered[-1],
        "q1": q1,
        "q3": q3,
        "rel_spread": (q3 - q1) / median if median > 0 else 0.0,
        "count": len(ordered),
    }


def summarize(runs: Sequence[RunTiming]) -> dict:
    """Per-figure statistics of a case's runs: wall, each host phase, each device phase."""
    summary = {"wall_s": describe([r.wall_s for r in runs]), "phases_s": {}}
    for phase in runs[0].phases_s:
        summary["phases_s"][phase] = describe([r.phases_s[phase] for r in runs])
    if runs[0].device_s is not None:
        summary["device_s"] = {phase: describe([r.device_s[phase] for r in runs])
                               for phase in runs[0].device_s}
    return summary
