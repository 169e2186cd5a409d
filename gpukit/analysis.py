"""What a sweep means: pure functions of a results dict (as saved), no measuring, no printing.

- `limit(...)`: per case, the phase that dominates and the limit it runs into, in words a user
  can act on (GIL, dispatch, transfer, launch, memory, compute, interpreter);
- `crossover(...)`: the n from which one series beats another, interpolated on log n between the
  two measured sizes that bracket the change (and said so);
- `scaling(...)`: speedup and parallel efficiency per worker count, and where scaling saturates;
- `findings(...)`: the answers, each a `Finding(topic, text, numbers)`: a sentence with its
  figures, so reports can render it and tests can check it;
- `diff(...)`: two runs case by case, faster or slower and whether beyond their noise: the
  repetitions' rank test, a minimum change, both cases' spreads, and how much all the cases moved
  between the two runs (the run-to-run noise that repetitions within one run cannot see).

The predictive model lives in gpukit.model; findings report how well it did.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections.abc import Iterable

from gpukit import model, phases

BASELINE = "serial/numpy"
FALLBACK_BASELINE = "serial/python"  # for a kernel that has no NumPy implementation
# A case faster than its ceiling by more than timing noise: the ceiling's conditions differ.
OVER_CEILING_PCT = 110.0

# A phase or cost "dominates" above this share of a case's time.
DOMINANT_SHARE = 0.5
# Threads with a GIL-holding implementation "do not scale" below this speedup over one thread.
GIL_SPEEDUP = 1.3
# One pool thread this much faster or slower than serial: the threads differ, not the count.
ONE_THREAD_APART = 1.3
# Scaling has saturated when the next worker count gains less than this factor.
SATURATION_GAIN = 1.10
# diff: significance level of the Mann-Whitney U test, and the fewest runs it is used with.
ALPHA = 0.01
MWU_MIN_RUNS = 5
# Smaller relative differences are noise: `diff --min-change` by default, and the gap under which
# "fastest" calls two variants tied. As asv's and pyperf's comparisons do, a change must be both
# statistically significant and this large to count.
MIN_CHANGE = 0.10
# diff: a case must move by more than this many robust standard deviations of all the cases'
# moves (log B/A) between the two runs, estimated from at least RUN_NOISE_MIN_CASES cases.
RUN_NOISE_SIGMAS = 3.0
RUN_NOISE_MIN_CASES = 8


@dataclasses.dataclass(frozen=True)
class Finding:
    topic: str
    text: str
    numbers: dict


# -- basics ------------------------------------------------------------------------------------


def params_key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def case_text(key: tuple, data: dict | None = None) -> str:
    """'[k=2] threads/numpy x2 at n=2^20' for a case key; no brackets for a parameterless
    kernel, no worker count for serial and GPU variants."""
    p, label, w, n = key
    ptxt = f"[{params_text(dict(p))}] " if p else ""
    return f"{ptxt}{_variant_name(label, w, data)} at n={fmt_n(n)}"


def ok_cases(data: dict) -> list[dict]:
    return [c for c in data["cases"] if c.get("status") == "ok"]


def wall(case: dict) -> float:
    return case["summary"]["wall_s"]["median"]


def rel_spread(case: dict) -> float:
    """The repetitions' interquartile range over their median."""
    return case["summary"]["wall_s"]["rel_spread"]


def noise_bar(a: dict, b: dict, floor: float = MIN_CHANGE) -> float:
    """The relative difference two cases' medians must exceed to be told apart: `floor`, or the
    larger relative spread where that is wider (a gap inside either case's own IQR is noise)."""
    return max(floor, rel_spread(a), rel_spread(b))


def beyond(ratio: float, bar: float) -> bool:
    """Whether a ratio of times is outside 1 +- bar, symmetric in log: x1.1 and x1/1.1 alike."""
    return abs(math.log(ratio)) > math.log1p(bar)


def phase(case: dict, name: str) -> float:
    return case["summary"]["phases_s"][name]["median"]


def device_phase(case: dict, name: str) -> float:
    """The device clock's figure where the GPU timed it (CUDA events), else the host's."""
    dev = case["summary"].get("device_s") or {}
    return dev[name]["median"] if name in dev else phase(case, name)


def is_gpu(case: dict, data: dict) -> bool:
    return bool(data["backends"].get(case["backend"], {}).get("gpu"))


def is_parallel(case: dict, data: dict) -> bool:
    return bool(data["backends"].get(case["backend"], {}).get("parallel"))


def index(data: dict) -> dict[tuple, dict]:
    """(params, label, workers, n) -> case, for the cases that ran."""
    return {model.case_key(c): c for c in ok_cases(data)}


def baseline(data: dict, case: dict) -> dict | None:
    return _baseline(index(data), case)


def _baseline(idx: dict, case: dict) -> dict | None:
    """Serial NumPy at the case's size, or serial pure Python for a kernel without NumPy."""
    key = params_key(case["params"])
    for label in (BASELINE, FALLBACK_BASELINE):
        found = idx.get((key, label, 1, case["n"]))
        if found is not None:
            return found
    return None


def speedup_vs_baseline(idx: dict, case: dict) -> float | None:
    base = _baseline(idx, case)
    if base is None:
        return None
    return wall(base) / wall(case)


def throughput(case: dict) -> dict[str, float]:
    t = wall(case)
    work = case["work"]
    return {"gbps": (work["bytes_in"] + work["bytes_out"]) / t / 1e9,
            "gflops": work["flops"] / t / 1e9}


def intensity(case: dict) -> float:
    """FLOPs per byte moved to and from memory: the roofline's x axis."""
    work = case["work"]
    return work["flops"] / max(1, work["bytes_in"] + work["bytes_out"])


def run_phases(case: dict, data: dict) -> dict[str, float]:
    clock = device_phase if is_gpu(case, data) else phase
    return {name: clock(case, name) for name in phases.RUN_PHASES}


def transfer_share(case: dict, data: dict | None = None) -> float:
    ph = run_phases(case, data) if data else {n: phase(case, n) for n in phases.RUN_PHASES}
    total = sum(ph.values())
    moved = ph[phases.TRANSFER_IN] + ph[phases.TRANSFER_OUT]
    return moved / total if total > 0 else 0.0


def fmt_n(n: int) -> str:
    if n > 0 and n & (n - 1) == 0 and n >= 1024:
        return f"2^{n.bit_length() - 1}"
    return str(n)


def fmt_n_est(n: float) -> str:
    """An interpolated size: 2^17.3 (about 161k)."""
    e = math.log2(n)
    if abs(e - round(e)) < 0.05:
        return f"2^{round(e)}"
    if n >= 1e6:
        approx = f"{n / 1e6:.3g}M"
    elif n >= 1e3:
        approx = f"{n / 1e3:.3g}k"
    else:
        approx = f"{n:.3g}"
    return f"2^{e:.1f} (about {approx})"


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def series(idx: dict, pkey: tuple, label: str, workers: int) -> dict[int, dict]:
    """n -> case for one line of a time-vs-n plot."""
    return {n: c for (p, l, w, n), c in idx.items() if p == pkey and l == label and w == workers}


def labels_workers(idx: dict, pkey: tuple) -> list[tuple[str, int]]:
    return sorted({(l, w) for (p, l, w, _n) in idx if p == pkey})


def max_workers(idx: dict, pkey: tuple, label: str) -> int | None:
    ws = [w for (p, l, w, _n) in idx if p == pkey and l == label]
    return max(ws) if ws else None


# -- crossovers --------------------------------------------------------------------------------


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


def crossover(a: dict[int, float], b: dict[int, float]) -> Crossover:
    """Times of two series by n -> where b becomes faster than a and stays so."""
    sizes = sorted(set(a) & set(b))
    if not sizes:
        return Crossover("no_data")
    wins = [b[n] < a[n] for n in sizes]
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
    n = math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
    return Crossover("interpolated", n, lo, hi)


def walls(cases: dict[int, dict], clock=wall) -> dict[int, float]:
    return {n: clock(c) for n, c in cases.items()}


# -- scaling -----------------------------------------------------------------------------------


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


# -- the limit of each case --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Limit:
    dominant: str            # the phase holding most of the time
    kind: str                # GIL, interpreter, dispatch, transfer, launch, memory, compute
    short: str               # for a table cell
    text: str                # a sentence with its numbers and what to do about it
    percent: float | None = None   # of the ceiling it is held against, where one is known


def _pct(value: float, ceiling: float | None) -> float | None:
    return 100.0 * value / ceiling if ceiling else None


def _of(percent: float | None, ceiling: float | None, unit: str, name: str, ceil) -> str:
    if percent is None:
        if not name:
            return "(no ceiling for this path)"
        return f"(no {name} ceiling to hold it against: run `gpukit limits`)"
    src = "" if ceil.sources.get(name) == model.LIMITS_SOURCE else ", the best this run reached"
    if percent > OVER_CEILING_PCT and not src:
        # `gpukit limits` measures on data larger than the caches (and pickling on one stream);
        # a small problem's data can stay in cache, and several workers move data side by side.
        return (f"({percent:.0f}% of {ceiling:.3g} {unit}: above that ceiling, which is measured "
                f"on data larger than the caches by one worker, so this case's data likely "
                f"stayed in cache or moved on several workers at once)")
    return f"({percent:.0f}% of {ceiling:.3g} {unit}{src})"


def limit(data: dict, case: dict, ceil: model.Ceilings, idx: dict | None = None) -> Limit:
    idx = idx if idx is not None else index(data)
    ph = run_phases(case, data)
    total = sum(ph.values()) or wall(case)
    dominant = max(ph, key=ph.get)
    rule = _gpu_limit if is_gpu(case, data) else _host_limit
    return rule(data, case, ceil, idx, ph, total, dominant)


def _gpu_limit(data, case, ceil, idx, ph, total, dominant) -> Limit:
    work = case["work"]
    latency = ceil.get("copy_latency_s")
    launch = ceil.get(model.LAUNCH.get(case["backend"], "launch_cupy_s"))
    if latency is not None and launch is not None:
        overhead = launch + 2 * latency
        if overhead / wall(case) > DOMINANT_SHARE:
            return Limit(dominant, "launch", "launch",
                         f"launch-bound: about {fmt_s(overhead)} of its {fmt_s(wall(case))} is "
                         f"kernel launch and small-copy latency; give the GPU more work per call "
                         f"(larger n, or batch calls)")
    moved = ph[phases.TRANSFER_IN] + ph[phases.TRANSFER_OUT]
    if moved / total > DOMINANT_SHARE:
        memory = model.gpu_memory(case)
        gbps = (work["bytes_in"] + work["bytes_out"]) / moved / 1e9
        h2d_name, d2h_name = model.GPU_LINK[memory]
        h2d, d2h = ceil.get(h2d_name), ceil.get(d2h_name)
        pct, against = None, f"(no {h2d_name} / {d2h_name} ceilings: run `gpukit limits`)"
        if h2d and d2h:
            # Each direction against its own ceiling: the time the link alone would need.
            pct = 100.0 * (work["bytes_in"] / h2d + work["bytes_out"] / d2h) / 1e9 / moved
            src = ("" if ceil.sources.get(h2d_name) == model.LIMITS_SOURCE
                   else ", the best this run reached")
            against = f"({pct:.0f}% of the {h2d:.3g} / {d2h:.3g} GB/s H2D / D2H ceilings{src})"
        advice = ("use pinned host memory" if memory == "pageable"
                  else "overlap copies with streams, or keep the data on the GPU between calls")
        return Limit(dominant, "transfer", f"PCIe {memory}" + (f" {pct:.0f}%" if pct else ""),
                     f"transfer-bound (PCIe, {memory}): {moved / total:.0%} of the time copying "
                     f"at {gbps:.3g} GB/s {against}; {advice}", pct)
    return _roofline_limit(case, ceil, dominant, device_phase(case, phases.COMPUTE),
                           ceil.get("d2d_gbps"), "d2d_gbps", ceil.get("fma_gflops"), "fma_gflops",
                           "the GPU")


def _host_limit(data, case, ceil, idx, ph, total, dominant) -> Limit:
    work = case["work"]
    pkey = params_key(case["params"])
    workers = case["workers"]
    impl = case["impl"]
    if impl in model.GIL_HOLDING and case["backend"] == "threads" and workers > 1:
        one = series(idx, pkey, case["label"], 1).get(case["n"]) or \
            series(idx, pkey, f"serial/{impl}", 1).get(case["n"])
        if one is not None:
            sp = wall(one) / wall(case)
            if sp < GIL_SPEEDUP:
                return Limit(dominant, "GIL", "GIL",
                             f"GIL-bound: {workers} threads run {sp:.2f}x one, because the "
                             f"{impl} loop holds the GIL; use processes or NumPy")
    if case["backend"] in model.DISPATCH:
        per_task = ceil.get(model.DISPATCH[case["backend"]][0])
        if per_task is not None and workers * per_task / wall(case) > DOMINANT_SHARE:
            cost = workers * per_task
            return Limit(dominant, "dispatch", "dispatch",
                         f"dispatch-bound: about {fmt_s(cost)} of its {fmt_s(wall(case))} is the "
                         f"pool's per-task overhead ({workers} tasks); run serially at this "
                         f"size, or give each task more work")
    moved = ph[phases.TRANSFER_IN] + ph[phases.TRANSFER_OUT]
    transfer = (case.get("variant") or {}).get("options", {}).get("transfer")
    if moved / total > DOMINANT_SHARE:
        how, name, factor, advice = {
            "pickle": ("pickling", "pickle_gbps", 1.0, "use shared memory"),
            "shm": ("shared-memory copies", "host_copy_1t_gbps", 2.0,
                    "keep the arrays in shared memory across calls instead of copying them in"),
        }.get(transfer, ("moving data between workers", "", 1.0, "move less data per run"))
        gbps = factor * (work["bytes_in"] + work["bytes_out"]) / moved / 1e9
        cap = ceil.get(name)
        pct = _pct(gbps, cap)
        return Limit(dominant, "transfer", f"{transfer or 'transfer'}" + (f" {pct:.0f}%" if pct else ""),
                     f"transfer-bound ({how}): {moved / total:.0%} of the time moving data at "
                     f"{gbps:.3g} GB/s {_of(pct, cap, 'GB/s', name, ceil)}; {advice}", pct)
    parallel = min(workers, model.cores(data))
    if impl in model.GIL_HOLDING and case["backend"] == "threads":
        parallel = 1
    rate_name = model.IMPL_RATE.get(impl, model.IMPL_RATE["numpy"])
    rate = ceil.get(rate_name)
    if impl not in model.MEMORY_SENSITIVE:
        gflops = work["flops"] / phase(case, phases.COMPUTE) / 1e9
        cap = rate * parallel if rate else None
        pct = _pct(gflops, cap)
        numpy_rate = ceil.get(model.IMPL_RATE["numpy"])
        vs = (f"; NumPy runs {numpy_rate / (gflops / parallel):.0f}x faster per core here"
              if numpy_rate and gflops > 0 else "; vectorize it (NumPy)")
        return Limit(dominant, "interpreter", "interpreter",
                     f"interpreter-bound: the pure-Python loop runs at {gflops:.3g} GFLOP/s "
                     f"{_of(pct, cap, 'GFLOP/s', rate_name, ceil)}{vs}", pct)
    bw1, bw_all = ceil.get("host_copy_1t_gbps"), ceil.get("host_copy_all_gbps")
    bw = None if bw1 is None else (min(bw1 * parallel, bw_all) if bw_all else bw1 * parallel)
    where = "one core" if parallel == 1 else f"{parallel} cores"
    return _roofline_limit(case, ceil, dominant, phase(case, phases.COMPUTE), bw,
                           "host_copy_1t_gbps", rate * parallel if rate else None, rate_name, where)


def _roofline_limit(case, ceil, dominant, compute_s, bw, bw_name, rate, rate_name, where) -> Limit:
    work = case["work"]
    gbps = (work["bytes_in"] + work["bytes_out"]) / compute_s / 1e9
    gflops = work["flops"] / compute_s / 1e9
    memory_bound = bw is not None and rate is not None and intensity(case) < rate / bw
    if memory_bound:
        pct = _pct(gbps, bw)
        return Limit(dominant, "memory", f"memory {pct:.0f}%",
                     f"memory-bound on {where}: {gbps:.3g} GB/s {_of(pct, bw, 'GB/s', bw_name, ceil)}"
                     f"; more FLOPs per byte would come free", pct)
    pct = _pct(gflops, rate)
    return Limit(dominant, "compute", f"compute {pct:.0f}%" if pct is not None else "compute",
                 f"compute-bound on {where}: {gflops:.3g} GFLOP/s "
                 f"{_of(pct, rate, 'GFLOP/s', rate_name, ceil)}", pct)


def limits(data: dict, ceil: model.Ceilings) -> dict[tuple, Limit]:
    idx = index(data)
    return {key: limit(data, c, ceil, idx) for key, c in idx.items()}


# -- findings ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Everything a report shows, computed once from a results dict and its ceilings."""

    data: dict
    ceilings: model.Ceilings
    verdicts: dict
    limits: dict
    findings: list


def analyze(data: dict, stored_ceilings: dict | None = None) -> Analysis:
    ceil = model.resolve(data, stored_ceilings)
    verdicts = model.predict_all(data, ceil)
    lims = limits(data, ceil)
    return Analysis(data, ceil, verdicts, lims, _findings(data, ceil, verdicts))


def findings(data: dict, stored_ceilings: dict | None = None) -> list[Finding]:
    return analyze(data, stored_ceilings).findings


def _findings(data, ceil, verdicts) -> list[Finding]:
    idx = index(data)
    out: list[Finding] = _failure_findings(data)
    for pset in data["sweep"]["param_sets"]:
        pkey = params_key(pset)
        # Each finding opens with its parameter set ("[k=2] "), or nothing for a kernel without one.
        ptxt = f"[{params_text(pset)}] " if pset else ""
        for rule in (_fastest_findings, _threads_findings, _process_findings, _mpi_findings,
                     _scaling_findings):
            out.extend(rule(idx, pkey, ptxt, data))
        out.extend(_gpu_findings(data, idx, pkey, ptxt))
    out.extend(_model_findings(data, ceil, verdicts))
    return out


def _failure_findings(data: dict) -> list[Finding]:
    """Failed cases first: every other finding leaves them out, so it must not read as whole."""
    first: dict[tuple, dict] = {}
    for c in data["cases"]:
        if c.get("status") == "failed":
            key = (params_key(c["params"]), c["label"], c["workers"])
            if key not in first or c["n"] < first[key]["n"]:
                first[key] = c
    if not first:
        return []
    parts = []
    for (pkey, label, w), c in sorted(first.items(), key=lambda kv: (kv[0], kv[1]["n"])):
        ptxt = f"[{params_text(dict(pkey))}] " if pkey else ""
        reason = (c.get("reason") or "").split(": ", 1)[-1]
        parts.append(f"{ptxt}{_variant_name(label, w, data)} from n={fmt_n(c['n'])} "
                     f"({reason[:120]}{'...' if len(reason) > 120 else ''})")
    failed = sum(c.get("status") == "failed" for c in data["cases"])
    return [Finding("failed", f"failed: {failed} case{'s' * (failed != 1)}, which the findings "
                    f"below leave out: " + "; ".join(parts) + ".",
                    {"failed": failed, "first": [{"label": k[1], "workers": k[2], "n": c["n"]}
                                                 for k, c in first.items()]})]


@dataclasses.dataclass
class _Stretch:
    """Sizes from_n..to_n over which one variant stays the fastest."""

    variant: tuple[str, int]     # label, workers
    from_n: int
    to_n: int
    tied: dict[tuple[str, int], list[int]]   # variant -> sizes where it was ahead, within noise


def _fastest_stretches(idx, pkey, sizes) -> list[_Stretch]:
    """The winner at each size, kept until another variant beats it by more than MIN_CHANGE and
    both their spreads: a gap inside the noise is a tie, not a switch, so the finding does not
    flip back and forth between two variants that run about the same."""
    stretches: list[_Stretch] = []
    for n in sizes:
        cands = {(l, w): c for (p, l, w, m), c in idx.items() if p == pkey and m == n}
        best = min(cands, key=lambda lw: (wall(cands[lw]), lw))
        held = stretches[-1].variant if stretches else None
        if held in cands and not beyond(wall(cands[held]) / wall(cands[best]),
                                        noise_bar(cands[held], cands[best])):
            stretches[-1].to_n = n
            if best != held:
                stretches[-1].tied.setdefault(best, []).append(n)
        else:
            stretches.append(_Stretch(best, n, n, {}))
    return stretches


def _fastest_findings(idx, pkey, ptxt, data):
    sizes = sorted({n for (p, _l, _w, n) in idx if p == pkey})
    if not sizes:
        return []
    stretches = _fastest_stretches(idx, pkey, sizes)
    parts = []
    switches = []
    for i, st in enumerate(stretches):
        (label, w), lo, hi = st.variant, st.from_n, st.to_n
        name = _variant_name(label, w, data)
        tied = "; ".join(f"{_variant_name(*lw, data)} at n=" + ", ".join(fmt_n(n) for n in ns)
                         for lw, ns in st.tied.items())
        if i == 0 and len(stretches) == 1:
            part = (f"{name} at every size ("
                    + (f"n={fmt_n(lo)}..{fmt_n(hi)}" if hi > lo else f"n={fmt_n(lo)}")
                    + (f"; tied with {tied}" if tied else "") + ")")
        elif i == 0:
            part = f"{name} up to n={fmt_n(hi)}"
        else:
            (prev_label, prev_w), prev_hi = stretches[i - 1].variant, stretches[i - 1].to_n
            x = crossover({n: t for n, t in walls(series(idx, pkey, prev_label, prev_w)).items()
                           if n in (prev_hi, lo)},
                          {n: t for n, t in walls(series(idx, pkey, label, w)).items()
                           if n in (prev_hi, lo)})
            where = f"n≈{fmt_n_est(x.n)}" if x.status == "interpolated" else f"n={fmt_n(lo)}"
            part = f"{name} from {where}" + (f" to {fmt_n(hi)}" if i < len(stretches) - 1 else "")
            switches.append({"from": prev_label, "to": label, "workers": w, "measured_n": lo,
                             "n": x.n if x.status == "interpolated" else lo,
                             "interpolated": x.status == "interpolated"})
        if tied and len(stretches) > 1:
            part += f" (tied with {tied})"
        parts.append(part)
    notes = []
    if switches:
        notes.append("switch points interpolated on log n between measured sizes")
    if any(st.tied for st in stretches):
        notes.append(f"tied: a gap under {MIN_CHANGE:.0%} or inside either one's spread, where "
                     f"the earlier winner is kept")
    text = (f"{ptxt}fastest: " + "; ".join(parts)
            + (f" ({'; '.join(notes)})" if notes else "") + ".")
    winners = [{"label": st.variant[0], "workers": st.variant[1], "from_n": st.from_n,
                "to_n": st.to_n,
                "tied": [{"label": tl, "workers": tw, "n": ns} for (tl, tw), ns in st.tied.items()]}
               for st in stretches]
    return [Finding("fastest", text, {"winners": winners, "switches": switches})]


def _variant_name(label: str, workers: int, data: dict | None = None) -> str:
    """'threads/numpy x2'; the worker count of a parallel backend always shows (x1 too), that
    of serial and GPU variants never."""
    backend = label.split("/", 1)[0]
    parallel = (data["backends"].get(backend, {}).get("parallel") if data else workers > 1)
    return label + (f" x{workers}" if parallel else "")


def _threads_findings(idx, pkey, ptxt, data):
    found = []
    for impl in ("python", "numpy"):
        label = f"threads/{impl}"
        w = max_workers(idx, pkey, label)
        serial = series(idx, pkey, f"serial/{impl}", 1)
        threads = series(idx, pkey, label, w) if w else {}
        common = sorted(set(serial) & set(threads))
        if not common:
            continue
        n = common[-1]
        speedup = wall(serial[n]) / wall(threads[n])
        numbers = {"impl": impl, "workers": w, "n": n, "speedup": speedup}
        if impl in model.GIL_HOLDING:
            one = series(idx, pkey, label, 1).get(n)
            vs_one = wall(one) / wall(threads[n]) if one is not None and w > 1 else None
            numbers["speedup_vs_one_thread"] = vs_one
            gain = vs_one if vs_one is not None else speedup
            gil_on = data["machine"].get("gil_enabled", True)
            if gain < GIL_SPEEDUP:
                verdict = "GIL-bound: one thread runs at a time"
            elif gil_on:
                spread = threads[n]["summary"]["wall_s"]["rel_spread"]
                verdict = (f"more than the GIL should allow, with the GIL on: check the noise "
                           f"(spread {spread:.0%})")
            else:
                verdict = "it scales: this Python runs without the GIL"
            text = (f"{ptxt}{label} on {w} thread{'s' * (w != 1)}: {speedup:.2f}x serial/{impl}"
                    + (f", {vs_one:.2f}x one thread" if vs_one is not None else "")
                    + f" at n={fmt_n(n)} ({verdict}).")
        else:
            x = crossover(walls(serial), walls(threads))
            numbers["crossover"] = dataclasses.asdict(x)
            numbers["crossover_n"] = x.n
            text = (f"{ptxt}{label} on {w} thread{'s' * (w != 1)}: {speedup:.2f}x serial/{impl} at "
                    f"n={fmt_n(n)} (NumPy releases the GIL in each ufunc); threads beat serial "
                    f"{x.text()}.")
            one = series(idx, pkey, label, 1).get(n)
            if one is not None and w > 1:
                apart = wall(serial[n]) / wall(one)
                numbers["one_thread_vs_serial"] = apart
                if not 1 / ONE_THREAD_APART < apart < ONE_THREAD_APART:
                    # Same work, one thread either way: what differs is the thread. One known cause
                    # (others, such as caches, are possible): glibc hands the main thread's large
                    # temporaries back to the system on every free (its heap is trimmed, or they
                    # were mmapped), so each new one faults its pages in again; a pool thread's heap
                    # keeps them. Measured here: np.exp on 2^16 float32 in a loop ran 1.34x slower
                    # on the main thread, 1.03x with MALLOC_TRIM_THRESHOLD_ and
                    # MALLOC_MMAP_THRESHOLD_ raised.
                    text += (f" One pool thread alone already runs {apart:.2f}x serial, so "
                             f"part of that is running on a pool thread rather than the main "
                             f"one, not the number of threads (the scaling finding compares "
                             f"against one thread; an implementation whose large temporaries "
                             f"the main thread pays page faults for can reuse buffers with "
                             f"out=).")
        found.append(Finding("threads", text, numbers))
    return found


def _process_findings(idx, pkey, ptxt, data):
    serial = series(idx, pkey, BASELINE, 1)
    parts, numbers = [], {}
    for label in sorted({l for (p, l, _w, _n) in idx if p == pkey and l.startswith("processes/numpy/")}):
        transfer = label.rsplit("/", 1)[-1]
        w = max_workers(idx, pkey, label)
        cases = series(idx, pkey, label, w)
        common = sorted(set(cases) & set(serial))
        if not common:
            continue
        n = common[-1]
        speedup = wall(serial[n]) / wall(cases[n])
        share = transfer_share(cases[n], data)
        x = crossover(walls(serial), walls(cases))
        numbers[transfer] = {"workers": w, "n": n, "speedup": speedup, "transfer_share": share,
                             "crossover": dataclasses.asdict(x), "crossover_n": x.n}
        parts.append(f"{transfer}: {speedup:.2f}x serial/numpy at n={fmt_n(n)} on {w} "
                     f"process{'es' * (w != 1)}, {share:.0%} of it moving data, ahead of serial "
                     f"{x.text()}")
    if not parts:
        return []
    return [Finding("processes", f"{ptxt}processes/numpy " + "; ".join(parts) + ".", numbers)]


def _mpi_findings(idx, pkey, ptxt, data):
    """Does splitting over R ranks pay, and what does moving the data cost: at the largest n,
    each rank count against serial NumPy, with the share of scatter and gather."""
    serial = series(idx, pkey, BASELINE, 1)
    ranks = sorted({w for (p, l, w, _n) in idx if p == pkey and l == "mpi/numpy"})
    if not serial or not ranks:
        return []
    n = max(n for (p, l, _w, n) in idx if p == pkey and l == "mpi/numpy" and n in serial)
    parts, numbers = [], {"n": n, "ranks": {}}
    for r in ranks:
        case = idx.get((pkey, "mpi/numpy", r, n))
        if case is None:
            continue
        speedup = wall(serial[n]) / wall(case)
        share = transfer_share(case, data)
        numbers["ranks"][r] = {"speedup": speedup, "transfer_share": share}
        parts.append(f"{r}: {speedup:.2f}x ({share:.0%} scatter and gather)")
    split = {r: v["speedup"] for r, v in numbers["ranks"].items() if r > 1}
    best = max(split, key=split.get) if split else None
    if best is None:
        verdict = "one rank only: run more to see whether splitting pays"
    elif split[best] > 1 + MIN_CHANGE:
        verdict = f"splitting pays, most on {best} ranks"
    else:
        verdict = "splitting over ranks does not pay here"
    return [Finding("mpi", f"{ptxt}mpi/numpy at n={fmt_n(n)} against serial/numpy, by ranks: "
                    + ", ".join(parts) + f"; {verdict}.", numbers)]


def _scaling_findings(idx, pkey, ptxt, data):
    labels = sorted({l for (p, l, _w, _n) in idx if p == pkey})
    results = [s for s in (scaling(idx, pkey, l) for l in labels) if s is not None]
    if not results:
        return []
    parts = []
    superlinear = False
    for s in results:
        eff = ", ".join(f"{w}: {e:.0%}" for w, e in zip(s.workers, s.efficiency))
        backend, impl = (s.label.split("/") + [""])[:2]
        if backend == "threads" and impl in model.GIL_HOLDING and s.speedup[-1] < GIL_SPEEDUP:
            # The same test as the threads finding's: a few percent is not the GIL letting go.
            sat = "GIL-bound, no real gain"
        elif s.saturates_at is not None:
            sat = f"no gain beyond {s.saturates_at} worker{'s' * (s.saturates_at > 1)}"
        else:
            sat = f"still gaining at {s.workers[-1]}"
        superlinear = superlinear or max(s.efficiency) > 1 + MIN_CHANGE
        parts.append(f"{s.label} {s.speedup[-1]:.2f}x on {s.workers[-1]} at n={fmt_n(s.n)}, "
                     f"{sat} (efficiency {eff})")
    note = "" if results[0].workers[0] == 1 else " (speedup taken against the fewest workers)"
    if superlinear:
        note += ("; an efficiency above 100% means the one-worker run paid for something the "
                 "others split or avoided (its data out of cache, or the main thread's memory "
                 "allocation)")
    return [Finding("scaling", f"{ptxt}scaling: " + "; ".join(parts) + note + ".",
                    {s.label: dataclasses.asdict(s) for s in results})]


def _gpu_findings(data, idx, pkey, ptxt):
    cpu_best: dict[int, dict] = {}
    gpu_best: dict[int, dict] = {}
    cpu_compute: dict[int, float] = {}
    gpu_compute: dict[int, float] = {}
    for (p, _l, _w, n), c in idx.items():
        if p != pkey:
            continue
        gpu = is_gpu(c, data)
        best, comp = (gpu_best, gpu_compute) if gpu else (cpu_best, cpu_compute)
        if n not in best or wall(c) < wall(best[n]):
            best[n] = c
        t = device_phase(c, phases.COMPUTE) if gpu else phase(c, phases.COMPUTE)
        comp[n] = min(t, comp.get(n, math.inf))
    common = sorted(set(cpu_best) & set(gpu_best))
    if not common:
        return []
    end_to_end = crossover(walls(cpu_best), walls(gpu_best))
    compute = crossover(cpu_compute, gpu_compute)
    n = common[-1]
    g, c = gpu_best[n], cpu_best[n]
    text = (f"{ptxt}GPU vs best CPU: end to end the GPU wins {end_to_end.text()}; on compute "
            f"alone {compute.text()}; at n={fmt_n(n)} {g['label']} takes {fmt_s(wall(g))} "
            f"({transfer_share(g, data):.0%} transfers) vs {c['label']} x{c['workers']} "
            f"{fmt_s(wall(c))} ({wall(c) / wall(g):.3g}x).")
    return [Finding("gpu", text, {"end_to_end": dataclasses.asdict(end_to_end),
                                  "compute": dataclasses.asdict(compute),
                                  "end_to_end_crossover_n": end_to_end.n,
                                  "compute_crossover_n": compute.n, "n": n,
                                  "gpu_label": g["label"], "gpu_wall_s": wall(g),
                                  "gpu_transfer_share": transfer_share(g, data),
                                  "cpu_label": c["label"], "cpu_workers": c["workers"],
                                  "cpu_wall_s": wall(c)})]


def _model_findings(data, ceil, verdicts) -> list[Finding]:
    acc = model.accuracy(verdicts)
    stored, derived = ceil.stored(), ceil.derived()
    lacking = sorted(ceil.lacking)
    src = []
    if stored:
        src.append(f"{len(stored)} from `gpukit limits`"
                   + (" --quick (rough: re-measure without --quick)" if ceil.rough else ""))
    if derived:
        src.append(f"{len(derived)} derived from this run ({', '.join(derived)})")
    src.append(f"lacking {', '.join(lacking)}" if lacking else "none lacking for these cases")
    numbers = {"predicted": acc.predicted, "scored": acc.scored, "within": acc.within,
               "within_band": model.WITHIN, "far": acc.far, "far_factor": model.FAR,
               "anchors": acc.anchors, "unpredicted": acc.unpredicted,
               "stored": stored, "derived": derived, "lacking": lacking}
    if acc.scored == 0:
        text = (f"model: no case could be predicted ({'; '.join(src) or 'no ceilings'}).")
        return [Finding("model", text, numbers)]
    text = (f"model: {acc.within} of {acc.scored} cases within {model.WITHIN:.0%} of the "
            f"prediction, {acc.far} more than {model.FAR:g}x off")
    if acc.anchors:
        text += f" ({acc.anchors} calibration case{'s' * (acc.anchors != 1)} not counted)"
    if acc.worst is not None and acc.worst.far:
        p, label, w, n = acc.worst.key
        text += (f"; furthest: {case_text(acc.worst.key, data)}, "
                 f"{acc.worst.ratio:.3g}x the prediction")
        numbers["worst"] = {"label": label, "workers": w, "n": n, "ratio": acc.worst.ratio}
    text += f". Ceilings: {'; '.join(src)}."
    if data["cases"] and all(not (c.get("work") or {}).get("flops") for c in data["cases"]):
        # A user's kernel that declares no work: the model can only see bytes.
        text += (" The kernel declares no FLOPs, so the model prices its arithmetic at "
                 "nothing (a user kernel: set flops_per_row).")
    return [Finding("model", text, numbers)]


def flag_text(case: dict, verdict: model.Verdict, data: dict) -> str | None:
    """For a case far from its prediction: by how much, and in which phase most of the gap is."""
    if not verdict.far:
        return None
    gap = model.gap_phase(case, verdict, device=is_gpu(case, data))
    way = "slower" if verdict.ratio > 1 else "faster"
    text = f"{verdict.ratio:.2g}x the model ({way})"
    if gap:
        text += f"; most of the gap in {gap[0]}: {fmt_s(gap[1])} measured vs {fmt_s(gap[2])}"
    return text


# -- two runs ----------------------------------------------------------------------------------


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


EXACT_MAX = 40


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
class Diff:
    changes: list[Change]
    only_a: list[tuple]
    only_b: list[tuple]
    min_change: float = MIN_CHANGE
    run_noise: float | None = None   # see `run_to_run`; None: too few cases to tell

    @property
    def run_bar(self) -> float:
        """The relative change the run-to-run noise alone asks a case to exceed."""
        return math.expm1(RUN_NOISE_SIGMAS * (self.run_noise or 0.0))


def diff(a: dict, b: dict, min_change: float = MIN_CHANGE) -> Diff:
    """Case by case, B against A (see `Change` for when a change is beyond the noise)."""
    if not (math.isfinite(min_change) and min_change >= 0):
        raise ValueError(f"min_change must be >= 0, got {min_change!r}")
    ia, ib = index(a), index(b)
    common = sorted(set(ia) & set(ib), key=_key_order)
    noise = run_to_run([math.log(wall(ib[k]) / wall(ia[k])) for k in common])
    changes = [compare_cases(ia[k], ib[k], min_change, noise or 0.0) for k in common]
    return Diff(changes, sorted(set(ia) - set(ib), key=_key_order),
                sorted(set(ib) - set(ia), key=_key_order), min_change, noise)


def _key_order(key):
    p, label, w, n = key
    return (p, n, label, w)
