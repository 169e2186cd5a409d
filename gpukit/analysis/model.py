"""The predictive model: what each case should cost, from the machine's ceilings and the
kernel's work model. A pure function of a results dict and a ceilings dict; never measures.

Per repetition (startup is reported once per session and predicted apart):

- compute: the larger of bytes over memory bandwidth and FLOPs over the arithmetic rate of the
  implementation, the rate times the workers that can run at once (min(workers, cores)); on
  threads, the arithmetic's time on one thread times what the variant's measured serialized
  share and waiting share predict for its count (gpukit.analysis.serialized), or, where the run
  has no one-thread and multi-thread pair to measure them, no gain for an implementation that holds
  the GIL by its name (pure Python) and min(workers, cores) for the others;
- pools: one task per worker, handed out together: one dispatch round trip, plus what each
  further task adds to a fan-out (their round trips overlap; a full round trip each where the
  fan-out was not measured), counted in the phase where the backend's clock puts it (compute
  for threads, transfer_in for processes);
- process transfers: bytes over the pickle rate for each task's message size, or two NumPy
  copies into and out of shared memory (each counted read + write, as the copy ceiling is);
- GPU: per copy its latency plus bytes over the link bandwidth (pinned or pageable), per
  launch its launch cost plus the kernel's own max(bytes/d2d bandwidth, FLOPs/FMA rate).

Figures come from the ceilings `gpukit limits` stored for the machine. Where a figure is
missing, the model derives it from the run itself when it can (the best rate the run achieved,
or the size-independent cost at the smallest size) and says so: such a figure is calibrated on
an "anchor" case, which is then left out of the accuracy count. What it cannot derive, it lacks,
and the cases that need it get no prediction, with the figure named.
"""

from __future__ import annotations

import dataclasses
import math

from gpukit import phases, records
from gpukit.analysis import serialized
from gpukit.records import PICKLE, SCATTER, SHM, BackendTraits

# Accuracy bands: "within" is the yardstick the model is held to; "far" is where a case gets
# flagged.
WITHIN = 0.25
FAR = 2.0

# Implementations: their single-thread rate figure, and whether they hold the GIL where the run
# does not show it (no one-thread and multi-thread pair to measure the serialized share from).
IMPL_RATE = {"numpy": "host_numpy_1t_gflops", "python": "host_python_1t_gflops"}
GIL_HOLDING = frozenset({"python"})
# Implementations whose speed can be bounded by memory bandwidth (the interpreter never is).
MEMORY_SENSITIVE = frozenset({"numpy"})

# What each backend costs beyond its compute (a pool's dispatch, a GPU's launch) and how it
# moves data, the model reads from the backend's traits (gpukit.records.BackendTraits).
# GPU host memory kinds: (H2D figure, D2H figure).
GPU_LINK = {"pinned": ("h2d_pinned_gbps", "d2h_pinned_gbps"),
            "pageable": ("h2d_pageable_gbps", "d2h_pageable_gbps")}
GPU_LINK_DEFAULT = "pageable"

LIMITS_SOURCE = "limits"
# The name a kernel's own serial rate goes by where it stands in for IMPL_RATE's figure.
KERNEL_RATE = "this kernel's serial rate"

# The GPU figures every GPU backend needs; each adds its launch figures (`_gpu_figures`).
GPU_FIGURES = frozenset({"copy_latency_s", "d2d_gbps", "fma_gflops", "bidir_pinned_gbps",
                         *(name for pair in GPU_LINK.values() for name in pair)})


def case_key(case: dict) -> tuple:
    return (tuple(sorted(case["params"].items())), case["label"], case["workers"], case["n"])


@dataclasses.dataclass(frozen=True)
class Ceilings:
    """Figures by name, where each came from, and what is lacking and why."""

    values: dict[str, float]
    sources: dict[str, str]
    lacking: dict[str, str]
    anchors: frozenset = frozenset()
    # (params key, impl) -> (seconds, source): the implementation's size-independent cost per
    # run (NumPy's per-call overheads, the interpreter's set-up), from serial at the smallest n.
    fixed: dict = dataclasses.field(default_factory=dict)
    # The stored figures came from `gpukit limits --quick`: a smoke test's rough numbers.
    rough: bool = False
    # (params key, impl) -> (GFLOP/s, source): a kernel whose work is not multiply-adds, rated by
    # its own serial run rather than by the multiply-add rate `limits` measures.
    kernel_rates: dict = dataclasses.field(default_factory=dict)
    # Stored curves by name, as `limits` measured them (pickling over message sizes).
    curves: dict = dataclasses.field(default_factory=dict)
    # (params key, label) -> serialized.Share: each thread variant's measured serialized share.
    shares: dict = dataclasses.field(default_factory=dict)

    def share(self, case: dict) -> serialized.Share | None:
        return self.shares.get((tuple(sorted(case["params"].items())), case["label"]))

    def pickle_gbps(self, message_bytes: float) -> float | None:
        """Pickling's rate for messages of this size: interpolated on log size between the
        stored curve's points (flat beyond its ends), else the one figure."""
        curve = self.curves.get("pickle") if self.sources.get("pickle_gbps") == LIMITS_SOURCE \
            else None
        if not curve or not curve.get("sizes_bytes"):
            return self.get("pickle_gbps")
        points = sorted(zip(curve["sizes_bytes"], curve["gbps"]))
        if message_bytes <= points[0][0]:
            return points[0][1]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if message_bytes <= x1:
                t = math.log(message_bytes / x0) / math.log(x1 / x0)
                return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
        return points[-1][1]

    def fixed_s(self, case: dict) -> float:
        return self.fixed.get((tuple(sorted(case["params"].items())), case["impl"]), (0.0,))[0]

    def rate(self, case: dict) -> tuple[float | None, str]:
        """One core's arithmetic rate for this case's implementation, and the figure's name
        (KERNEL_RATE where it is the kernel's own serial rate from the run)."""
        own = self.kernel_rates.get((tuple(sorted(case["params"].items())), case["impl"]))
        if own is not None:
            return own[0], KERNEL_RATE
        name = IMPL_RATE.get(case["impl"], IMPL_RATE["numpy"])
        return self.get(name), name

    def get(self, name: str) -> float | None:
        return self.values.get(name)

    def stored(self) -> list[str]:
        return sorted(k for k, v in self.sources.items() if v == LIMITS_SOURCE)

    def derived(self) -> list[str]:
        return sorted(k for k, v in self.sources.items() if v != LIMITS_SOURCE)


@dataclasses.dataclass(frozen=True)
class Prediction:
    phases_s: dict[str, float]
    wall_s: float
    uses: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Measured against predicted for one case; `prediction` None when figures are lacking."""

    key: tuple
    prediction: Prediction | None
    measured_s: float
    needs: tuple[str, ...] = ()
    anchor: bool = False

    @property
    def ratio(self) -> float | None:
        if self.prediction is None or self.prediction.wall_s <= 0:
            return None
        return self.measured_s / self.prediction.wall_s

    @property
    def within(self) -> bool:
        r = self.ratio
        return r is not None and abs(r - 1.0) <= WITHIN

    @property
    def far(self) -> bool:
        r = self.ratio
        return r is not None and (r > FAR or r < 1.0 / FAR)


# -- what the run says about the case kinds --------------------------------------------------


def _ok(data):
    return [c for c in data["cases"] if c.get("status") == "ok"]


def _wall(case):
    return case["summary"]["wall_s"]["median"]


def _phase(case, name, device=False):
    summary = case["summary"]
    if device and summary.get("device_s") and name in summary["device_s"]:
        return summary["device_s"][name]["median"]
    return summary["phases_s"][name]["median"]


def _is_gpu(data, case):
    return bool(data["backends"].get(case["backend"], {}).get("gpu"))


def traits(data: dict, case: dict) -> BackendTraits:
    return records.backend_traits(data, case["backend"])


def _reference(data, case) -> bool:
    return traits(data, case).reference


def backend_names(data: dict) -> list[str]:
    """The backends of a run: those it probed, and any a case names beyond them."""
    return list(dict.fromkeys([*data["backends"], *(c["backend"] for c in data["cases"])]))


def _gpu_figures(data: dict) -> frozenset:
    launches = {name for b in backend_names(data) for t in [records.backend_traits(data, b)]
                if t.device == records.GPU
                for name in (t.launch_s, t.launch_sync_s, t.launch_queued_s) if name}
    return GPU_FIGURES | launches


def _option(case, name, default=None):
    return (case.get("variant") or {}).get("options", {}).get(name, default)


def gpu_memory(case: dict) -> str:
    """pinned / pageable, read from the variant's options whatever the option is called."""
    for value in (case.get("variant") or {}).get("options", {}).values():
        if value in GPU_LINK:
            return value
    return GPU_LINK_DEFAULT


def streamed(case: dict) -> bool:
    return any("stream" in str(v) for v in (case.get("variant") or {}).get("options", {}).values())


def cores(data: dict) -> int:
    return int(data["machine"].get("cores") or 1)


def needed(data: dict, case: dict) -> tuple[str, ...]:
    """The figures the model needs for this case (memory bandwidth is optional, noted if absent)."""
    t = traits(data, case)
    if _is_gpu(data, case):
        h2d, d2h = GPU_LINK[gpu_memory(case)]
        return (h2d, d2h, "copy_latency_s", t.launch_s, "d2d_gbps", "fma_gflops")
    names = [IMPL_RATE.get(case["impl"], IMPL_RATE["numpy"])]
    if t.dispatch_s:
        names.append(t.dispatch_s)
    transfer = t.transfer(case.get("variant"))
    if transfer == PICKLE:
        names.append("pickle_gbps")
    elif transfer in (SHM, SCATTER):
        names.append("host_copy_1t_gbps")
    return tuple(names)


# -- ceilings: stored, derived from the run, or lacking ---------------------------------------


def _best(cases, rate):
    best = None
    for c in cases:
        value = rate(c)
        if value and value > 0 and (best is None or value > best[0]):
            best = (value, c)
    return best


def _derive(data: dict, values: dict) -> dict[str, tuple[float, dict]]:
    """Figures the run itself shows, each with the case it came from; only those not in `values`.

    Rates are the best the run achieved (an empirical ceiling); fixed costs are what a pool or
    GPU costs at the smallest size beyond the serial NumPy time for the same problem.
    """
    ok = _ok(data)
    out: dict[str, tuple[float, dict]] = {}
    serial = {(tuple(sorted(c["params"].items())), c["n"]): c for c in ok
              if _reference(data, c) and c["impl"] == "numpy"}

    def get(name):
        return values.get(name, out.get(name, (None,))[0])

    def one(pred):
        return [c for c in ok if pred(c)]

    for impl, name in IMPL_RATE.items():
        found = _best(one(lambda c, impl=impl: _reference(data, c) and c["impl"] == impl),
                      lambda c: c["work"]["flops"] / _phase(c, phases.COMPUTE) / 1e9)
        if found:
            out[name] = found

    for backend in backend_names(data):
        name = records.backend_traits(data, backend).dispatch_s
        if not name:
            continue
        pool = one(lambda c, backend=backend: c["backend"] == backend and c["workers"] == 1
                   and c["impl"] == "numpy")
        pool = [c for c in pool if _option(c, "transfer") in (None, SHM)]
        if not pool:
            continue
        smallest = min(c["n"] for c in pool)
        costs = []
        for c in pool:
            base = serial.get((tuple(sorted(c["params"].items())), c["n"]))
            if c["n"] == smallest and base is not None and _wall(c) > _wall(base):
                costs.append((_wall(c) - _wall(base), c))
        if costs:
            out[name] = min(costs, key=lambda t: t[0])

    # Memory bandwidth: the most bytes per second serial NumPy moved (a lower bound on the
    # machine's, and the one that matters for this kernel).
    found = _best(list(serial.values()), lambda c: (c["work"]["bytes_in"] + c["work"]["bytes_out"])
                  / _phase(c, phases.COMPUTE) / 1e9)
    if found:
        out["host_copy_1t_gbps"] = found

    # Pickling: at the largest size, where bytes outweigh the fixed costs.
    pool = one(lambda c: c["workers"] == 1 and traits(data, c).transfer(c.get("variant")) == PICKLE)
    if pool:
        largest = max(c["n"] for c in pool)

        def pickle_rate(c):
            dispatch = get(traits(data, c).dispatch_s) or 0.0
            moved = _phase(c, phases.TRANSFER_IN) + _phase(c, phases.TRANSFER_OUT)
            return (c["work"]["bytes_in"] + c["work"]["bytes_out"]) / max(
                moved - dispatch, moved / 2) / 1e9
        found = _best([c for c in pool if c["n"] == largest], pickle_rate)
        if found:
            out["pickle_gbps"] = found

    gpu = [c for c in ok if _is_gpu(data, c)]
    if gpu:
        smallest = min(c["n"] for c in gpu)
        small = [c for c in gpu if c["n"] == smallest]
        lat = min(((_phase(c, phases.TRANSFER_IN, True), c) for c in small), key=lambda t: t[0])
        out["copy_latency_s"] = lat
        for backend in dict.fromkeys(c["backend"] for c in small):
            name = records.backend_traits(data, backend).launch_s
            mine = [c for c in small if c["backend"] == backend]
            if name:
                out[name] = min(((_phase(c, phases.COMPUTE, True), c) for c in mine),
                                key=lambda t: t[0])
        latency = get("copy_latency_s") or 0.0
        for memory, (h2d, d2h) in GPU_LINK.items():
            mine = [c for c in gpu if gpu_memory(c) == memory and not streamed(c)]
            if not mine:
                continue
            # At the largest size, where bytes outweigh the latency: at the smallest, the one
            # the latency comes from, phase minus latency is about nothing, and bytes over
            # nothing made a link 80x faster than it is.
            largest = max(c["n"] for c in mine)
            mine = [c for c in mine if c["n"] == largest]
            for name, phase_name, nbytes in ((h2d, phases.TRANSFER_IN, "bytes_in"),
                                             (d2h, phases.TRANSFER_OUT, "bytes_out")):
                def rate(c, nbytes=nbytes, phase_name=phase_name):
                    moved = _phase(c, phase_name, True)
                    return c["work"][nbytes] / max(moved - latency, moved / 2) / 1e9
                found = _best(mine, rate)
                if found:
                    out[name] = found
        out_d2d = _best(gpu, lambda c: (c["work"]["bytes_in"] + c["work"]["bytes_out"])
                        / _phase(c, phases.COMPUTE, True) / 1e9)
        out_fma = _best(gpu, lambda c: c["work"]["flops"] / _phase(c, phases.COMPUTE, True) / 1e9)
        if out_d2d:
            out["d2d_gbps"] = out_d2d
        if out_fma:
            out["fma_gflops"] = out_fma
    return {k: v for k, v in out.items() if k not in values}


def _anchor_text(case: dict) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted(case["params"].items()))
    return f"this run: {case['label']} x{case['workers']} at n={case['n']} ({params})"


def resolve(data: dict, stored: dict | None = None, derive: bool = True) -> Ceilings:
    """Ceilings for the machine of `data`: stored figures first (a ceilings file's dict, as
    `gpukit.ceilings.load` returns it, or `data['ceilings']`), then figures derived from the run,
    and the lacking ones that some case needs, with the reason."""
    stored = stored if stored is not None else data.get("ceilings")
    values, sources, lacking = {}, {}, {}
    stored_missing = {}
    if stored:
        for name, value in (stored.get("figures") or {}).items():
            # A cost may be zero (a fan-out that adds nothing); a rate must be positive.
            cost = name.endswith("_s")
            if isinstance(value, (int, float)) and (value > 0 or value == 0 and cost):
                values[name] = float(value)
                sources[name] = LIMITS_SOURCE
        stored_missing = dict(stored.get("missing") or {})
    anchors = set()
    if derive:
        for name, (value, case) in _derive(data, values).items():
            values[name] = float(value)
            sources[name] = _anchor_text(case)
            anchors.add(case_key(case))
    wanted = {name for c in _ok(data) for name in needed(data, c)}
    if any(c["impl"] in MEMORY_SENSITIVE and not _is_gpu(data, c) for c in _ok(data)):
        wanted |= {"host_copy_1t_gbps", "host_copy_all_gbps"}
    gpu_figures = _gpu_figures(data)
    for name in sorted(wanted - set(values)):
        why = stored_missing.get(name) or (stored_missing.get("gpu") if name in gpu_figures
                                           else None)
        lacking[name] = why or ("not measured for this machine (run `gpukit limits`)" if not stored
                                else "not in the stored ceilings")
    fixed, rates = {}, {}
    if derive:
        if not multiply_add(data):
            rates = _derive_kernel_rates(data, values)
            anchors |= {key for _r, _src, keys in rates.values() for key in keys}
        fixed = _derive_fixed(data, values, rates)
        anchors |= {key for _s, _src, key in fixed.values()}
    shares = serialized.estimate(data) if derive else {}
    # The counts a share comes from are predicted by it, so they calibrate rather than test it.
    anchors |= {(s.params, s.label, w, s.n) for s in shares.values()
                for w in s.workers}
    rough = bool(stored and (stored.get("settings") or {}).get("quick"))
    return Ceilings(values, sources, lacking, frozenset(anchors),
                    {k: (s, src) for k, (s, src, _key) in fixed.items()}, rough,
                    {k: (r, src) for k, (r, src, _keys) in rates.items()},
                    dict((stored or {}).get("curves") or {}), shares)


def multiply_add(data: dict) -> bool:
    """Whether the run's kernel does multiply-adds (results from before the sweep said so: only
    polyval did)."""
    sweep = data["sweep"]
    return bool(sweep.get("kernel_multiply_add", sweep.get("kernel") == "polyval"))


def rated_work(case: dict) -> float:
    """What a kernel's own rate counts: its FLOPs, or its rows where it declares no FLOPs (an
    array function without flops_per_row), which its own runs then rate in rows per second."""
    return case["work"]["flops"] or float(case["n"])


def flops_known(data: dict) -> bool:
    return any((c.get("work") or {}).get("flops") for c in data["cases"])


def rowwise(data: dict) -> bool:
    """Whether the run's kernel may be cut into chunks of rows (results from before the sweep
    said so: every kernel could)."""
    return bool(data["sweep"].get("kernel_rowwise", True))


def _derive_kernel_rates(data: dict, values: dict) -> dict:
    """Per (params, impl) of a kernel that is not multiply-adds: its rate from the line through
    its smallest and largest size (time = fixed cost + work / rate, the work as `rated_work`
    counts it), so that a fixed cost per call (NumPy's, a GPU launch) does not count against
    the rate. Serial cases for the host implementations; for the GPU ones, the GPU variants'
    fastest device compute at each size."""
    groups: dict[tuple, dict[int, tuple[float, dict]]] = {}
    for c in _ok(data):
        gpu = _is_gpu(data, c)
        if not (gpu or _reference(data, c)):
            continue
        seconds = _phase(c, phases.COMPUTE, True) if gpu else _wall(c)
        per_n = groups.setdefault((tuple(sorted(c["params"].items())), c["impl"]), {})
        if c["n"] not in per_n or seconds < per_n[c["n"]][0]:
            per_n[c["n"]] = (seconds, c)
    out = {}
    for key, per_n in groups.items():
        (t_lo, lo), (t_hi, hi) = per_n[min(per_n)], per_n[max(per_n)]
        dflops, dt = rated_work(hi) - rated_work(lo), t_hi - t_lo
        if dflops > 0 and dt > 0:
            seconds, flops = dt, dflops
        else:
            # One size (or times that do not grow): its time alone, less the launch where the
            # GPU's prediction adds that back.
            launch = values.get(traits(data, hi).launch_s) if _is_gpu(data, hi) else None
            seconds = t_hi - launch if launch and launch < t_hi / 2 else t_hi
            flops = rated_work(hi)
        out[key] = (flops / seconds / 1e9, _anchor_text(hi), (case_key(lo), case_key(hi)))
    return out


def _derive_fixed(data: dict, values: dict, rates: dict | None = None) -> dict:
    """Per (params, impl): serial time at the smallest size beyond the rate model's figure."""
    out = {}
    ceil = Ceilings(values, {}, {}, kernel_rates={k: (r, src) for k, (r, src, _keys)
                                                  in (rates or {}).items()})
    groups: dict[tuple, dict] = {}
    for c in _ok(data):
        if _reference(data, c):
            key = (tuple(sorted(c["params"].items())), c["impl"])
            if key not in groups or c["n"] < groups[key]["n"]:
                groups[key] = c
    for key, c in groups.items():
        if ceil.rate(c)[0] is None:
            continue
        extra = _wall(c) - _host_compute(c, ceil, 1, [])
        if extra > 0:
            out[key] = (extra, _anchor_text(c), case_key(c))
    return out


# -- predictions ---------------------------------------------------------------------------------


def _host_compute(case, ceil: Ceilings, parallel: int, notes: list,
                  arithmetic: float | None = None) -> float:
    """The kernel's own time on `parallel` cores, without the implementation's fixed cost;
    `arithmetic`, where given, is how many times faster than one thread the arithmetic and the
    interpreter's rows run (on threads, from the measured serialized share)."""
    work = case["work"]
    rate, name = ceil.rate(case)
    speedup = parallel if arithmetic is None else arithmetic
    t = (rated_work(case) if name == KERNEL_RATE else work["flops"]) / (rate * 1e9 * speedup)
    # A kernel's own rate comes from its whole serial time, row costs included.
    row_s = (ceil.get("host_python_row_s")
             if case["impl"] in GIL_HOLDING and name != KERNEL_RATE else None)
    if row_s is not None:
        # The interpreter's cost of each row around the arithmetic: at k=2, most of the time.
        t += case["n"] * row_s / speedup
    if case["impl"] in MEMORY_SENSITIVE:
        one = ceil.get("host_copy_1t_gbps")
        all_cores = ceil.get("host_copy_all_gbps")
        if one is None:
            notes.append("no memory bandwidth figure: memory term left out")
        else:
            bw = one * parallel
            if all_cores is not None:
                bw = min(bw, all_cores)
            elif parallel > 1:
                notes.append("no all-core copy figure: assumed bandwidth scales with workers")
            t = max(t, (work["bytes_in"] + work["bytes_out"]) / (bw * 1e9))
    return t


def chunks_per_worker(data: dict, n: int) -> int:
    """How many chunks one worker takes at size n (`--chunks-per-worker`; the pools never make
    more chunks than rows)."""
    asked = (data["sweep"].get("settings") or {}).get("chunks_per_worker") or 1
    return max(1, min(int(asked), n))


def tasks(data: dict, case: dict) -> int:
    """How many tasks a pool's run hands out: chunks per worker times the workers, never more
    than the rows."""
    if not rowwise(data):
        return 1
    return max(1, min(chunks_per_worker(data, case["n"]) * case["workers"], case["n"]))


def dispatch_s(pool: BackendTraits, count: int, ceil: Ceilings) -> float | None:
    """What handing out one run's `count` tasks (all at once) and collecting them costs: one
    round trip, and for each further task what it adds to a fan-out, or a full round trip where
    that was not measured. None without the round trip."""
    round_trip = ceil.get(pool.dispatch_s)
    if round_trip is None:
        return None
    extra = ceil.get(pool.dispatch_extra_s)
    return round_trip + (count - 1) * (round_trip if extra is None else extra)


def thread_speedup(case: dict, ceil: Ceilings, shares_gil: bool,
                   notes: list | None = None) -> float | None:
    """How many times one thread's speed a thread variant's arithmetic runs at on its count:
    from the measured serialized share where the run has it, else by the implementation's name
    (1 for one that holds the GIL). None for backends whose workers do not share the caller's
    interpreter (`shares_gil`): they run `parallel` at once."""
    if not shares_gil:
        return None
    notes = notes if notes is not None else []
    share = ceil.share(case)
    if share is not None:
        if case["workers"] > 1:
            notes.append(f"serialized {share.share:.0%} of its time (measured on "
                         f"{'/'.join(map(str, share.workers))} threads at n={share.n})")
        return 1.0 / share.factor(case["workers"])
    if case["impl"] in GIL_HOLDING:
        notes.append("holds the GIL (assumed: no multi-thread pair to measure it): no "
                     "parallel gain on threads")
        return 1.0
    return None


def _predict_host(data, case, ceil: Ceilings) -> Prediction:
    notes: list[str] = []
    t = traits(data, case)
    workers = case["workers"]
    parallel = min(workers, cores(data))
    arithmetic = thread_speedup(case, ceil, t.shares_gil, notes)
    if not rowwise(data):
        parallel, arithmetic = 1, None
        notes.append("sees whole arrays: one worker runs it")
    if workers > cores(data):
        notes.append(f"{workers} workers on {cores(data)} cores: oversubscribed")
    # Every chunk pays the implementation's fixed cost; chunks run side by side, and a worker
    # with several (--chunks-per-worker) pays it for each in turn.
    per_worker = math.ceil(tasks(data, case) / workers) if t.dispatch_s else 1
    compute = (_host_compute(case, ceil, parallel, notes, arithmetic)
               + ceil.fixed_s(case) * per_worker)
    ph = {phases.TRANSFER_IN: 0.0, phases.COMPUTE: compute, phases.TRANSFER_OUT: 0.0}
    if t.dispatch_s:
        ph[t.dispatch_phase] += dispatch_s(t, tasks(data, case), ceil)
        if ceil.get(t.dispatch_extra_s) is None and tasks(data, case) > 1:
            notes.append("fan-out not measured: each task priced at a full round trip")
    work = case["work"]
    transfer = t.transfer(case.get("variant"))
    if transfer == PICKLE:
        # Each task's message at the rate for its size.
        for name, nbytes in ((phases.TRANSFER_IN, work["bytes_in"]),
                             (phases.TRANSFER_OUT, work["bytes_out"])):
            ph[name] += nbytes / (ceil.pickle_gbps(nbytes / tasks(data, case)) * 1e9)
    elif transfer == SHM:
        cp = ceil.get("host_copy_1t_gbps") * 1e9
        ph[phases.TRANSFER_IN] += 2 * work["bytes_in"] / cp
        ph[phases.TRANSFER_OUT] += 2 * work["bytes_out"] / cp
    elif transfer == SCATTER:
        # Scatterv and Gatherv on one machine copy every byte once (read + write): rank 0's own
        # chunk between its full and its local buffer, the others' by the library's single-copy
        # shared-memory path for large messages (a library that stages them copies twice).
        cp = ceil.get("host_copy_1t_gbps") * 1e9
        ph[phases.TRANSFER_IN] += 2 * work["bytes_in"] / cp
        ph[phases.TRANSFER_OUT] += 2 * work["bytes_out"] / cp
        notes.append("ranks on this machine: scatter and gather copy every byte once")
    return Prediction(ph, sum(ph.values()), needed(data, case), tuple(notes))


def _predict_gpu(data, case, ceil: Ceilings) -> Prediction:
    work = case["work"]
    h2d, d2h = (ceil.get(n) * 1e9 for n in GPU_LINK[gpu_memory(case)])
    latency = ceil.get("copy_latency_s")
    t = traits(data, case)
    launch = ceil.get(t.launch_s)
    own = ceil.kernel_rates.get((tuple(sorted(case["params"].items())), case["impl"]))
    rate = own[0] if own else ceil.get("fma_gflops")
    kernel = max((work["bytes_in"] + work["bytes_out"]) / (ceil.get("d2d_gbps") * 1e9),
                 (rated_work(case) if own else work["flops"]) / (rate * 1e9))
    ph = {phases.TRANSFER_IN: latency + work["bytes_in"] / h2d,
          phases.COMPUTE: launch + kernel,
          phases.TRANSFER_OUT: latency + work["bytes_out"] / d2h}
    notes = []
    # The host waits once at the end: what a synchronized launch costs beyond a queued one.
    sync, queued = ceil.get(t.launch_sync_s), ceil.get(t.launch_queued_s)
    if sync is not None and queued is not None and sync > queued:
        ph[phases.TRANSFER_OUT] += sync - queued
    if streamed(case):
        # Overlapped copies and kernels: the slowest stage bounds the whole, and the two copy
        # directions at once are bound by what the link carries both ways together.
        both = ceil.get("bidir_pinned_gbps")
        copies = (work["bytes_in"] + work["bytes_out"]) / (both * 1e9) if both else 0.0
        wall = max(*ph.values(), copies) + latency + launch
        notes.append("streamed: the slowest stage bounds the run")
    else:
        wall = sum(ph.values())
    return Prediction(ph, wall, needed(data, case), tuple(notes))


def _has_rule(data: dict, case: dict) -> bool:
    """Whether the rules above price this case's backend: the reference, a pool with a dispatch
    figure, ranks that scatter and gather on this machine, or a GPU."""
    t = traits(data, case)
    if t.remote_setting and (data["sweep"].get("settings") or {}).get(t.remote_setting):
        # Workers spread over machines move data over a network the model has not measured.
        return False
    return (t.reference or bool(t.dispatch_s) or SCATTER in t.moves_data
            or _is_gpu(data, case))


def predict(data: dict, case: dict, ceil: Ceilings) -> Verdict:
    needs = needed(data, case)
    if (tuple(sorted(case["params"].items())), case["impl"]) in ceil.kernel_rates:
        # The kernel's own rate stands in for the multiply-add figure.
        needs = tuple(n for n in needs if n not in (*IMPL_RATE.values(), "fma_gflops"))
    missing = tuple(n for n in needs if ceil.get(n) is None)
    key = case_key(case)
    anchor = key in ceil.anchors
    if missing or not _has_rule(data, case):
        return Verdict(key, None, _wall(case), missing or ("a rule for " + case["backend"],),
                       anchor)
    rule = _predict_gpu if _is_gpu(data, case) else _predict_host
    return Verdict(key, rule(data, case, ceil), _wall(case), (), anchor)


def predict_all(data: dict, ceil: Ceilings) -> dict[tuple, Verdict]:
    return {case_key(c): predict(data, c, ceil) for c in _ok(data)}


@dataclasses.dataclass(frozen=True)
class Accuracy:
    predicted: int
    scored: int        # predicted and not an anchor
    within: int
    far: int
    anchors: int
    unpredicted: int
    worst: Verdict | None


def accuracy(verdicts: dict[tuple, Verdict]) -> Accuracy:
    predicted = [v for v in verdicts.values() if v.prediction is not None]
    scored = [v for v in predicted if not v.anchor]
    # A prediction of no time at all has no ratio (a zero-FLOP kernel on free dispatch).
    worst = max((v for v in scored if v.ratio is not None),
                key=lambda v: abs(math.log(v.ratio)), default=None)
    return Accuracy(len(predicted), len(scored), sum(v.within for v in scored),
                    sum(v.far for v in scored), len(predicted) - len(scored),
                    len(verdicts) - len(predicted), worst)


def gap_phase(case: dict, verdict: Verdict,
              device: bool = False) -> tuple[str, float, float] | None:
    """The phase holding most of the gap between measured and predicted: (phase, meas, pred)."""
    if verdict.prediction is None:
        return None
    best = None
    for name, pred in verdict.prediction.phases_s.items():
        meas = _phase(case, name, device)
        if best is None or abs(meas - pred) > abs(best[1] - best[2]):
            best = (name, meas, pred)
    return best
