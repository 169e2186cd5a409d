"""The limit each case runs into (GIL, interpreter, dispatch, transfer, launch, memory, compute),
held against the machine's ceilings, in words a user can act on."""

from __future__ import annotations

import dataclasses

from gpukit import phases, records
from gpukit.analysis import model
from gpukit.analysis.cases import (device_phase, index, intensity, is_gpu, params_key,
                                   phase, run_phases, series, wall)
from gpukit.units import fmt_mib, fmt_s
from gpukit.limits import host

# What `gpukit limits` measures the host ceilings on: memory by copying this many bytes (read
# and written), beyond every cache (its quick plan copies less); a core's NumPy rate on blocks
# of float32 points, x and the accumulator, of this many bytes.
COPY_BYTES = {False: 2 * host.FULL.copy_bytes, True: 2 * host.QUICK.copy_bytes}
RATE_BLOCK_BYTES = 2 * 4 * host.FULL.numpy_block
# Without the machine's cache sizes (results from before gpukit recorded them): data this many
# times smaller than the copy `limits` measures is taken to stay in cache.
CACHE_FRACTION = 8
# The regimes a figure above its ceiling is in, as a table cell names them.
IN_CACHE = "in cache"
CEILING_LOW = "ceiling low"
# A phase or cost "dominates" above this share of a case's time.
DOMINANT_SHARE = 0.5
# Threads with a GIL-holding implementation "do not scale" below this speedup over one thread:
# a gain no larger than the noise a "fastest" tie allows (cases.MIN_CHANGE). Above it, a gain
# the GIL should not allow is said to be one, not called GIL-bound.
GIL_SPEEDUP = 1.1


@dataclasses.dataclass(frozen=True)
class Limit:
    dominant: str            # the phase holding most of the time
    kind: str                # GIL, interpreter, dispatch, transfer, launch, memory, compute
    short: str               # for a table cell
    text: str                # a sentence with its numbers and what to do about it
    percent: float | None = None   # of the ceiling it is held against, where one is known
    ceiling: str = ""        # that ceiling's figure name
    # Where the percentage rounds above 100: the case's regime, which the ceiling was not
    # measured in ("in cache", "2 at once"), or CEILING_LOW where the regimes are the same.
    regime: str | None = None


def _pct(value: float, ceiling: float | None) -> float | None:
    return 100.0 * value / ceiling if ceiling else None


def _of(percent: float | None, ceiling: float | None, unit: str, name: str, ceil) -> str:
    if percent is None:
        if not name:
            return "(no ceiling for this path)"
        return f"(no {name} ceiling to hold it against: run `gpukit limits`)"
    if name == model.KERNEL_RATE:
        return f"({percent:.0f}% of {ceiling:.3g} {unit}, {name} in this run)"
    src = "" if ceil.sources.get(name) == model.LIMITS_SOURCE else ", the best this run reached"
    return f"({percent:.0f}% of {ceiling:.3g} {unit}{src})"


def limit(data: dict, case: dict, ceil: model.Ceilings, idx: dict | None = None) -> Limit:
    idx = idx if idx is not None else index(data)
    ph = run_phases(case, data)
    total = sum(ph.values()) or wall(case)
    dominant = max(ph, key=ph.get)
    rule = _gpu_limit if is_gpu(case, data) else _host_limit
    lim = rule(data, case, ceil, idx, ph, total, dominant)
    if lim.percent is None or round(lim.percent) <= 100:
        return lim
    tag, why = over_ceiling(data, case, lim.ceiling, ceil)
    return dataclasses.replace(lim, regime=tag, short=f"{lim.short} {tag}",
                               text=f"{lim.text}. Above 100%: {why}")


def footprint(case: dict) -> int:
    """The bytes one run reads and writes: what stays in cache between repetitions, or not."""
    return case["work"]["bytes_in"] + case["work"]["bytes_out"]


def over_ceiling(data: dict, case: dict, name: str, ceil: model.Ceilings) -> tuple[str, str]:
    """Why a case ran above the ceiling it is held against: (the regime's tag, a sentence).

    Either the case runs in a regime the ceiling was not measured in (its data stays in a cache
    that the ceiling's does not fit; several workers move data where the ceiling is one
    stream's), or the regimes are the same and the ceiling was measured low."""
    caches = data["machine"].get("caches") or {}
    l2, l3 = caches.get("l2_bytes"), caches.get("l3_bytes")
    size, workers = footprint(case), case["workers"]
    if name == "host_copy_1t_gbps":
        copy = COPY_BYTES[ceil.rough]
        if (size <= l3) if l3 else (size * CACHE_FRACTION <= copy):
            where = f"the {fmt_mib(l3)} L3 cache" if l3 else "cache"
            return IN_CACHE, (f"in cache: its {fmt_mib(size)} stay in {where} between repetitions, "
                              f"while the ceiling is memory's, measured copying {fmt_mib(copy)}, "
                              f"beyond every cache; so it can pass that ceiling")
    if name in model.IMPL_RATE.values() and l2 and size / workers <= l2 < RATE_BLOCK_BYTES:
        return IN_CACHE, (f"in cache: its {fmt_mib(size / workers)} a worker stay in the "
                          f"{fmt_mib(l2)} L2 cache, while `gpukit limits` rates a core on "
                          f"{fmt_mib(RATE_BLOCK_BYTES)} blocks, which do not fit there")
    if workers > 1 and name == "pickle_gbps":
        # Shared memory is not among them: the parent makes those copies alone.
        return f"{workers} at once", (f"{workers} workers at once: the ceiling is one stream's "
                                      f"(one worker's round trip), and the workers unpickle and "
                                      f"pickle their chunks side by side")
    if name == model.KERNEL_RATE:
        return CEILING_LOW, ("ceiling low: this size ran faster per FLOP than the kernel's own "
                             "rate, fitted through its serial runs at the smallest and largest "
                             "size")
    if ceil.sources.get(name) != model.LIMITS_SOURCE:
        return CEILING_LOW, (f"ceiling low: it is the best this run reached on one worker "
                             f"({ceil.sources.get(name, 'derived')}), a lower bound on the "
                             f"machine's; `gpukit limits` measures the machine's own")
    rough = ", and rough: from `gpukit limits --quick`" if ceil.rough else ""
    return CEILING_LOW, (f"ceiling low: this case runs as the ceiling was measured, so the "
                         f"ceiling came out low (`gpukit limits` keeps the best of its timed "
                         f"runs, and on a busy machine other work can cut them all{rough}); "
                         f"run `gpukit limits --refresh` on a quiet machine")


def _gpu_limit(data, case, ceil, idx, ph, total, dominant) -> Limit:
    work = case["work"]
    latency = ceil.get("copy_latency_s")
    launch = ceil.get(model.traits(data, case).launch_s)
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
                     f"at {gbps:.3g} GB/s {against}; {advice}", pct, h2d_name)
    return _roofline_limit(case, ceil, dominant, device_phase(case, phases.COMPUTE),
                           ceil.get("d2d_gbps"), "d2d_gbps", ceil.get("fma_gflops"), "fma_gflops",
                           "the GPU")


def _host_limit(data, case, ceil, idx, ph, total, dominant) -> Limit:
    work = case["work"]
    pkey = params_key(case["params"])
    workers = case["workers"]
    impl = case["impl"]
    pool = model.traits(data, case)
    share = ceil.share(case)
    # Measured where the run has one thread beside more; else judged by the implementation. A
    # NumPy variant's serialized share is measured at the largest size, where its threads wait
    # on the memory they share rather than on the GIL: it does not make small sizes GIL-bound.
    measured = share is not None and impl not in model.MEMORY_SENSITIVE
    holds = share.share >= 0.5 if measured else impl in model.GIL_HOLDING
    if holds and pool.shares_gil and workers > 1:
        reference = records.reference_backend(data)
        one = series(idx, pkey, case["label"], 1).get(case["n"]) or \
            series(idx, pkey, f"{reference}/{impl}", 1).get(case["n"])
        if one is not None:
            sp = wall(one) / wall(case)
            if sp < GIL_SPEEDUP:
                why = (f"the {impl} loop holds the GIL" if share is None else
                       f"the {impl} loop holds the GIL {min(share.share, 1.0):.0%} of its time "
                       f"(measured)")
                return Limit(dominant, "GIL", "GIL",
                             f"GIL-bound: {workers} threads run {sp:.2f}x one, because {why}; "
                             f"use processes or NumPy")
    if pool.dispatch_s:
        count = model.tasks(data, case)
        cost = model.dispatch_s(pool, count, ceil)
        if cost is not None and cost / wall(case) > DOMINANT_SHARE:
            # The cost comes from `limits`, measured on another day: it can exceed this wall.
            share = cost / wall(case)
            part = "nearly all" if share >= 0.9 else f"about {share:.0%}"
            return Limit(dominant, "dispatch", "dispatch",
                         f"dispatch-bound: handing out and collecting {count} task"
                         f"{'s' * (count != 1)} costs about {fmt_s(cost)}, {part} of its "
                         f"{fmt_s(wall(case))}; run serially at this size, or give each task "
                         f"more work")
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
        if transfer == "pickle":
            # The rate for this case's messages: pickling slows per byte as they grow.
            cap = ceil.pickle_gbps(work["bytes_in"] / model.tasks(data, case))
        pct = _pct(gbps, cap)
        short = f"{transfer or 'transfer'}" + (f" {pct:.0f}%" if pct else "")
        return Limit(dominant, "transfer", short,
                     f"transfer-bound ({how}): {moved / total:.0%} of the time moving data at "
                     f"{gbps:.3g} GB/s {_of(pct, cap, 'GB/s', name, ceil)}; {advice}", pct, name)
    parallel = min(workers, model.cores(data))
    rate, rate_name = ceil.rate(case)
    # On threads, the arithmetic runs as many times one thread's speed as the measured
    # serialized share allows (or none faster for a GIL-holding kind, where unmeasured).
    arithmetic = model.thread_speedup(case, ceil, pool.shares_gil)
    if impl not in model.MEMORY_SENSITIVE:
        gflops = work["flops"] / phase(case, phases.COMPUTE) / 1e9
        effective = parallel if arithmetic is None else arithmetic
        cap = rate * effective if rate else None
        pct = _pct(gflops, cap)
        # NumPy's rate for this kernel where the run has it, not polyval's multiply-adds.
        numpy_rate = ceil.rate({**case, "impl": "numpy"})[0]
        vs = (f"; NumPy runs {numpy_rate / (gflops / effective):.0f}x faster per core here"
              if numpy_rate and gflops > 0 else "; vectorize it (NumPy)")
        return Limit(dominant, "interpreter", "interpreter",
                     f"interpreter-bound: the pure-Python loop runs at {gflops:.3g} GFLOP/s "
                     f"{_of(pct, cap, 'GFLOP/s', rate_name, ceil)}{vs}", pct, rate_name)
    fixed, compute = ceil.fixed_s(case), phase(case, phases.COMPUTE)
    if compute > 0 and fixed / compute > DOMINANT_SHARE:
        # A small problem: a roofline percentage would blame memory for what is call overhead.
        return Limit(dominant, "overhead", "overhead",
                     f"overhead-bound: about {fmt_s(fixed)} of its {fmt_s(compute)} of compute "
                     f"is the {impl} implementation's fixed cost per call, the same at any n "
                     f"(serial at the smallest size shows it); more rows per call come nearly "
                     f"free")
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
                     f"memory-bound on {where}: {gbps:.3g} GB/s "
                     f"{_of(pct, bw, 'GB/s', bw_name, ceil)}"
                     f"; more FLOPs per byte would come free", pct, bw_name)
    pct = _pct(gflops, rate)
    return Limit(dominant, "compute", f"compute {pct:.0f}%" if pct is not None else "compute",
                 f"compute-bound on {where}: {gflops:.3g} GFLOP/s "
                 f"{_of(pct, rate, 'GFLOP/s', rate_name, ceil)}", pct, rate_name)


def limits(data: dict, ceil: model.Ceilings) -> dict[tuple, Limit]:
    idx = index(data)
    return {key: limit(data, c, ceil, idx) for key, c in idx.items()}

