"""Where one series starts to beat another, and how a variant scales with workers."""

from __future__ import annotations

import dataclasses
import math

from gpukit.analysis.cases import beyond, noise_bar, wall
from gpukit.units import fmt_n, fmt_n_est

# Scaling has saturated when the next worker count gains less than this factor.
SATURATION_GAIN = 1.10


@dataclasses.dataclass(frozen=True)
class Crossover:
    """Where `b` starts to beat `a` for good within the sweep.

    status: "interpolated" (n estimated on log n between `below`, the last measured size where
    b lost, and `above`, the first from which it always wins), "from_start" (b wins at every
    measured size), "never" (b loses at the largest measured size; `won_at` lists the smaller
    sizes where it won all the same) or "no_data".
    """

    status: str
    n: float | None = None
    below: int | None = None
    above: int | None = None
    won_at: tuple[int, ...] = ()

    def text(self) -> str:
        if self.status == "from_start":
            return f"at every measured size (from n={fmt_n(self.above)})"
        if self.status == "never":
            if self.won_at:
                return ("only at n=" + ", ".join(fmt_n(n) for n in self.won_at)
                        + ", not at the largest size")
            return "at no size in the sweep"
        if self.status == "no_data":
            return "(no common sizes)"
        return (f"from n={fmt_n_est(self.n)}, interpolated on log n between the measured "
                f"{fmt_n(self.below)} and {fmt_n(self.above)}")

    def short(self) -> str:
        return {"from_start": f"from n={fmt_n(self.above or 0)}", "never": "never",
                "no_data": "-"}.get(self.status, f"n≈{fmt_n_est(self.n).split(' ')[0]}")


def crossover(a: dict[int, float], b: dict[int, float],
              won: dict[int, bool] | None = None) -> Crossover:
    """Times of two series by n -> where b becomes faster than a and stays so. `won` says per
    size whether b won, where that takes more than b < a (see `crossover_of_cases`)."""
    sizes = sorted(set(a) & set(b))
    if not sizes:
        return Crossover("no_data")
    wins = [won[n] if won is not None else b[n] < a[n] for n in sizes]
    if not wins[-1]:
        return Crossover("never", won_at=tuple(n for n, w in zip(sizes, wins) if w))
    i = len(sizes) - 1
    while i > 0 and wins[i - 1]:
        i -= 1
    if i == 0:
        return Crossover("from_start", float(sizes[0]), None, sizes[0])
    lo, hi = sizes[i - 1], sizes[i]
    r_lo, r_hi = math.log(b[lo] / a[lo]), math.log(b[hi] / a[hi])
    t = r_lo / (r_lo - r_hi) if r_lo != r_hi else 0.5
    # A tie that b led by a little still counts as lost: the switch is within the bracket.
    t = min(1.0, max(0.0, t))
    n = math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
    return Crossover("interpolated", n, lo, hi)


def crossover_of_cases(a: dict[int, dict], b: dict[int, dict]) -> Crossover:
    """As `crossover`, for two series of cases, where b wins at a size only beyond the noise:
    by more than MIN_CHANGE and either case's spread, as the fastest finding tells a tie."""
    won = {n: wall(b[n]) < wall(a[n]) and beyond(wall(a[n]) / wall(b[n]),
                                                 noise_bar(a[n], b[n]))
           for n in set(a) & set(b)}
    return crossover(walls(a), walls(b), won)


def walls(cases: dict[int, dict], clock=wall) -> dict[int, float]:
    return {n: clock(c) for n, c in cases.items()}



@dataclasses.dataclass(frozen=True)
class Scaling:
    label: str
    n: int
    workers: tuple[int, ...]
    wall_s: tuple[float, ...]
    speedup: tuple[float, ...]      # vs the same variant on the fewest workers (scaled to 1)
    efficiency: tuple[float, ...]   # speedup / workers
    saturates_at: int | None        # None: still gaining at the largest count


def scaling(idx: dict, pkey: tuple, label: str) -> Scaling | None:
    """At the largest n where every worker count of `label` ran."""
    by_w: dict[int, dict[int, dict]] = {}
    for (p, l, w, n), c in idx.items():
        if p == pkey and l == label:
            by_w.setdefault(w, {})[n] = c
    if len(by_w) < 2:
        return None
    common = set.intersection(*(set(s) for s in by_w.values()))
    if not common:
        return None
    n = max(common)
    ws = tuple(sorted(by_w))
    ts = tuple(wall(by_w[w][n]) for w in ws)
    # With no 1-worker run, assume the fewest workers scaled perfectly (said in the text).
    t1 = ts[0] * ws[0]
    sp = tuple(t1 / t for t in ts)
    eff = tuple(s / w for s, w in zip(sp, ws))
    sat = None
    for i in range(len(ws) - 1):
        if ts[i] / ts[i + 1] < SATURATION_GAIN:
            sat = ws[i]
            break
    return Scaling(label, n, ws, ts, sp, eff, sat)

