"""Two runs case by case: faster, slower, or within their noise (the repetitions' rank test, a
minimum change, both cases' spreads, and how much all the cases moved between the runs)."""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections.abc import Iterable

from gpukit.analysis import model
from gpukit.analysis.cases import MIN_CHANGE, beyond, index, key_order, rel_spread, wall

# Significance level of the Mann-Whitney U test, and the fewest runs it is used with.
ALPHA = 0.01
MWU_MIN_RUNS = 5
# A case must move by more than this many robust standard deviations of all the cases' moves
# (log B/A) between the two runs, estimated from at least RUN_NOISE_MIN_CASES cases.
RUN_NOISE_SIGMAS = 3.0
RUN_NOISE_MIN_CASES = 8
# mann_whitney_p counts orderings exactly up to this many runs in all, without ties.
EXACT_MAX = 40


@dataclasses.dataclass(frozen=True)
class Change:
    """One case in two runs. `beyond_noise` only when the rank test (or, with few runs, disjoint
    IQRs) says the runs differ *and* the ratio is beyond 1 +- `bar`, the largest of the minimum
    change, the two cases' spreads and the run-to-run noise; `bar_from` says which that was."""

    key: tuple
    a_s: float
    b_s: float
    beyond_noise: bool
    test: str            # how the repetitions were compared, with its figure
    p_value: float | None = None
    significant: bool = False    # the test alone, before the bar
    bar: float = 0.0             # the relative change it had to exceed
    bar_from: str = ""           # "min change", "spread" or "run-to-run"

    @property
    def ratio(self) -> float:
        return self.b_s / self.a_s

    @property
    def change(self) -> float:
        """+0.25: B takes 25% longer than A."""
        return self.ratio - 1.0

    @property
    def verdict(self) -> str:
        if not self.beyond_noise:
            return "within noise"
        return "slower" if self.change > 0 else "faster"


def mann_whitney_p(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test: exact when there are no ties and at most
    EXACT_MAX runs in all, else the normal approximation with tie and continuity corrections."""
    a, b = list(a), list(b)
    n1, n2 = len(a), len(b)
    pooled = sorted((v, i) for i, v in enumerate(a + b))
    ranks = [0.0] * (n1 + n2)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[pooled[k][1]] = rank
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    if ties == 0 and n1 + n2 <= EXACT_MAX:
        counts = _u_counts(n1, n2)
        total = sum(counts)
        u = round(u1)
        low, high = sum(counts[:u + 1]), sum(counts[u:])
        return min(1.0, 2 * min(low, high) / total)
    mu = n1 * n2 / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    return max(0.0, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))))



@functools.lru_cache(maxsize=256)
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many orderings of n1 + n2 distinct values give each U: the coefficients of the
    Gaussian binomial [n1 + n2 choose n1] in q, built factor by factor."""
    poly = [1]
    for i in range(1, n1 + 1):
        # times (1 - q^(n2+i))
        grown = poly + [0] * (n2 + i)
        for k, c in enumerate(poly):
            grown[k + n2 + i] -= c
        # divided by (1 - q^i), exactly
        for k in range(i, len(grown)):
            grown[k] += grown[k - i]
        poly = grown[:n1 * n2 + 1]
    return tuple(poly)


def _run_walls(case: dict) -> list[float]:
    return [r["wall_s"] for r in case.get("runs") or []]


def compare_cases(a: dict, b: dict, min_change: float = MIN_CHANGE,
                  run_noise: float = 0.0) -> Change:
    """B's case against A's. `run_noise`: robust standard deviation of log(B/A) over the two
    runs' cases (see `run_to_run`), of which the change must exceed RUN_NOISE_SIGMAS."""
    ra, rb = _run_walls(a), _run_walls(b)
    key = model.case_key(a)
    p = None
    if len(ra) >= MWU_MIN_RUNS and len(rb) >= MWU_MIN_RUNS:
        p = mann_whitney_p(ra, rb)
        significant, test = p < ALPHA, f"Mann-Whitney p={p:.2g}"
    else:
        sa, sb = a["summary"]["wall_s"], b["summary"]["wall_s"]
        significant = sa["q3"] < sb["q1"] or sb["q3"] < sa["q1"]
        test = "IQRs disjoint" if significant else "IQRs overlap"
    bars = {"min change": min_change, "spread": max(rel_spread(a), rel_spread(b)),
            "run-to-run": math.expm1(RUN_NOISE_SIGMAS * run_noise)}
    bar_from = max(bars, key=bars.get)
    return Change(key, wall(a), wall(b), significant and beyond(wall(b) / wall(a), bars[bar_from]),
                  test, p, significant, bars[bar_from], bar_from)


def run_to_run(log_ratios: list[float]) -> float | None:
    """How much cases move between two runs: the robust standard deviation (1.4826 x the median
    absolute deviation) of log(B/A) around its median. Repetitions within one run cannot see this
    noise (another process, cache and clock state, other load); the spread across cases can, as
    long as most cases did not really change. Centred on the median, so a change that moves every
    case alike is not taken for noise. None with fewer than RUN_NOISE_MIN_CASES cases."""
    if len(log_ratios) < RUN_NOISE_MIN_CASES:
        return None
    mid = statistics.median(log_ratios)
    return 1.4826 * statistics.median(abs(r - mid) for r in log_ratios)


@dataclasses.dataclass(frozen=True)
class Lost:
    """A case that ran in A and did not run in B: it failed there (its result disagreed, or it
    raised), was skipped (the run limit stopped its variant at a smaller size), or could not
    run (its backend was unavailable)."""

    key: tuple
    status: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Diff:
    changes: list[Change]
    only_a: list[tuple]
    only_b: list[tuple]
    min_change: float = MIN_CHANGE
    run_noise: float | None = None   # see `run_to_run`; None: too few cases to tell
    lost: list[Lost] = dataclasses.field(default_factory=list)   # ran in A, not in B

    @property
    def run_bar(self) -> float:
        """The relative change the run-to-run noise alone asks a case to exceed."""
        return math.expm1(RUN_NOISE_SIGMAS * (self.run_noise or 0.0))


def diff(a: dict, b: dict, min_change: float = MIN_CHANGE) -> Diff:
    """Case by case, B against A (see `Change` for when a change is beyond the noise)."""
    if not (math.isfinite(min_change) and min_change >= 0):
        raise ValueError(f"min_change must be >= 0, got {min_change!r}")
    ia, ib = index(a), index(b)
    common = sorted(set(ia) & set(ib), key=key_order)
    noise = run_to_run([math.log(wall(ib[k]) / wall(ia[k])) for k in common])
    changes = [compare_cases(ia[k], ib[k], min_change, noise or 0.0) for k in common]
    # Cases that ran in A but are in B with another status: losing them is news, not absence.
    not_ok_b = {model.case_key(c): c for c in b["cases"] if c.get("status") != "ok"}
    lost = [Lost(k, not_ok_b[k]["status"], not_ok_b[k].get("reason") or "")
            for k in sorted(set(ia) & set(not_ok_b), key=key_order)]
    gone = {x.key for x in lost}
    return Diff(changes, sorted(set(ia) - set(ib) - gone, key=key_order),
                sorted(set(ib) - set(ia), key=key_order), min_change, noise, lost)
