"""How much of a thread variant's time runs serialized, measured from its scaling over worker
counts rather than assumed from its implementation's name.

A pure-Python loop holds the GIL, but one that sleeps, waits on I/O or calls into C releases it;
NumPy releases it inside each ufunc, yet a memory-bound NumPy kernel still waits on bandwidth
its threads share. So gpukit measures: with T(1) and T(p) the times of one and p threads,
speedup S = T(1) / T(p), the Karp-Flatt metric

    e = (1/S - 1/p) / (1 - 1/p)

is the share of the one-thread time that did not run in parallel (Amdahl's law solved for the
serial fraction). Up to the number of cores every thread has a core and a shortfall is
serialization. Above the cores a CPU-bound released part can gain no more, while a part that
waits (a sleep, I/O) still can:

    T(p) / T(1) = e + (1 - e) * ((1 - w) / min(p, cores) + w / p)

with `w` the share of the released time that waits rather than computes. gpukit fits e and w to
every worker count at the largest size all of them ran (least squares on the relative error;
with counts up to the cores only, that is Karp-Flatt's e and w is unknown), and the same fit
to the repetitions' quartiles gives e's spread. Karp-Flatt at a single count can mislead: a
sleeping loop's hand-overs of the GIL cost more on 2 threads than on 8, so e from 2 threads
alone came out 0.10 where the fit over 2, 4 and 8 gives 0.02. The model predicts a thread
variant from e and w, with w = 0 (capped by the cores) where no count above the cores ran. A
pure function of a results dict; never measures.
"""

from __future__ import annotations

import dataclasses

from gpukit import records

# Below this, the released part is too small a share for the counts above the cores to say
# whether it waits or computes (the difference between the two is (1 - e) of the time).
MIN_RELEASED_FOR_WAITING = 0.1


@dataclasses.dataclass(frozen=True)
class Share:
    """One thread variant's serialized share, for one parameter set."""

    params: tuple             # the parameter set's key (sorted items)
    label: str                # "threads/python"
    n: int                    # the size it was measured at
    workers: tuple[int, ...]  # the counts above one it comes from
    share: float              # e, fitted over those counts, within [0, 1]
    low: float                # the same fit to the repetitions' quartiles, both ways
    high: float
    cores: int
    waiting: float | None = None   # w; None where no count above the cores ran
    # Karp-Flatt at each count, from the medians, not clipped: above 1, the threads lost time
    # fighting over the GIL; below 0, they gained more than their count (caches).
    per_count: dict = dataclasses.field(default_factory=dict)

    def factor(self, workers: int) -> float:
        """T(workers) / T(1) as this share predicts it."""
        if workers <= 1:
            return 1.0
        return _factor(self.share, self.waiting or 0.0, workers, self.cores)

    def contention(self) -> float | None:
        """How much slower than one thread the most contended count within the cores ran,
        where the threads lost time over the GIL beyond taking turns (a share above 1)."""
        inside = {w: e for w, e in self.per_count.items() if w <= self.cores}
        if not inside or max(inside.values()) <= 1.0:
            return None
        w, e = max(inside.items(), key=lambda kv: kv[1])
        return e + (1.0 - e) / w

    def to_json(self) -> dict:
        return {"params": dict(self.params), "label": self.label, "n": self.n,
                "workers": list(self.workers), "serialized_share": self.share,
                "serialized_low": self.low, "serialized_high": self.high, "cores": self.cores,
                "waiting_share": self.waiting,
                "karp_flatt": {str(w): e for w, e in sorted(self.per_count.items())}}


def karp_flatt(speedup: float, workers: int) -> float:
    """The serialized share e that Amdahl's law gives for this speedup on `workers`."""
    if workers < 2:
        raise ValueError(f"the Karp-Flatt metric needs two or more workers, got {workers}")
    if not speedup > 0:
        raise ValueError(f"a speedup must be positive, got {speedup!r}")
    return (1.0 / speedup - 1.0 / workers) / (1.0 - 1.0 / workers)


def _factor(e: float, w: float, workers: int, cores: int) -> float:
    return e + (1.0 - e) * ((1.0 - w) / min(workers, cores) + w / workers)


def fit(ratios: dict[int, float], cores: int) -> tuple[float, float | None]:
    """(e, w) that best give T(p) / T(1) = `ratios[p]`, each within [0, 1], by least squares on
    the relative error; w is None where no count exceeds the cores (it changes nothing there).

    For a given w the model is linear in e, so e has a closed form; w is searched on a grid.
    Karp-Flatt at a single count is the special case of one ratio within the cores."""
    if not ratios:
        raise ValueError("no worker counts to fit")
    above = any(p > cores for p in ratios)
    best = None
    for w in ([i / 100 for i in range(101)] if above else [0.0]):
        # r = a + e (1 - a), with a the time's share left on p workers with nothing serialized.
        pts = [((1.0 - w) / min(p, cores) + w / p, r) for p, r in ratios.items()]
        num = sum((1.0 - a) * (r - a) / r ** 2 for a, r in pts)
        den = sum((1.0 - a) ** 2 / r ** 2 for a, r in pts)
        e = min(1.0, max(0.0, num / den)) if den > 0 else 1.0
        err = sum(((_factor(e, w, p, cores) - r) / r) ** 2 for p, r in ratios.items())
        if best is None or err < best[0] - 1e-12:
            best = (err, e, w)
    _err, e, w = best
    return e, (w if above and 1.0 - e >= MIN_RELEASED_FOR_WAITING else None)


def _stat(case: dict, name: str) -> float:
    return case["summary"]["wall_s"][name]


def estimate(data: dict) -> dict[tuple, Share]:
    """(params key, label) -> Share for every thread variant with a one-thread run and a run on
    more threads at a common size; at the largest such size, where the fixed costs weigh least,
    from every count there."""
    cores = int(data["machine"].get("cores") or 1)
    groups: dict[tuple, dict[int, dict[int, dict]]] = {}
    for c in data["cases"]:
        if c.get("status") != "ok" or not records.backend_traits(data, c["backend"]).shares_gil:
            continue
        key = (tuple(sorted(c["params"].items())), c["label"])
        groups.setdefault(key, {}).setdefault(int(c["n"]), {})[int(c["workers"])] = c
    out = {}
    for key, by_n in groups.items():
        usable = [n for n, by_w in by_n.items() if 1 in by_w and len(by_w) > 1]
        if not usable:
            continue
        n = max(usable)
        by_w = by_n[n]
        one = by_w[1]
        counts = sorted(w for w in by_w if w > 1)
        e, waiting = fit({w: _stat(by_w[w], "median") / _stat(one, "median") for w in counts},
                         cores)
        # The most and least favourable pairing of the two times' quartiles.
        low = fit({w: _stat(by_w[w], "q1") / _stat(one, "q3") for w in counts}, cores)[0]
        high = fit({w: _stat(by_w[w], "q3") / _stat(one, "q1") for w in counts}, cores)[0]
        per_count = {w: karp_flatt(_stat(one, "median") / _stat(by_w[w], "median"), w)
                     for w in counts}
        out[key] = Share(key[0], key[1], n, tuple(counts), e, min(low, e), max(high, e), cores,
                         waiting, per_count)
    return out


def to_json(data: dict) -> list[dict]:
    """The shares as the results file records them."""
    return [s.to_json() for _key, s in sorted(estimate(data).items())]
