"""The GPU targets of BENCHMARKS.md, measured through gpukit's own CuPy and PyCUDA backends on
this card.

    python bench/gpu_bench.py                  # the targets
    python bench/gpu_bench.py --quick          # a smoke test at small sizes (no verdicts)
    python bench/gpu_bench.py --budget-s 110   # steps that would start later are not run

Writes bench/results/gpu-bench-<card>.json (the card's name from the device, as
bench/gpu_checks.sh spells it) and prints a table, each target PASS or FAIL with its numbers:

- polyval k=1, n=2^26: kernel GB/s (8 bytes per point / compute-phase event time) >= 85% of the
  device-to-device copy ceiling; k=4096: GFLOP/s >= 90% of the FMA ceiling; CuPy and PyCUDA
  within 5% of each other on both (same machine code);
- pinned transfers of 256 MiB and 1 GiB (the pinned one-stream variant's transfer_in and
  transfer_out phases): >= 95% of the H2D / D2H pinned ceiling;
- streamed vs one-stream pinned, end to end (host wall clock, median), k=2, n=2^26: >= 1.5x;
- gpukit's kernel time (compute phase) within 5% of cupyx.profiler.benchmark's GPU time for the
  same launch, n=2^24, k=64.

Ceilings come from `gpukit limits` when it has stored them for this machine (not --quick ones),
else they are measured here through gpukit.limits.gpu, as limits measures them: a 512 MiB
device-to-device copy (bytes read + written), an 8-chain FMA kernel (kernels/limits.cu), copies
between pinned host memory and the device at the same size as the gpukit figure. Every figure
is the median of its repetitions (CUDA events, after a warm-up run); every configuration's
output is checked against the float64 reference first (k=4096 at a small n, where the reference
is quick). Nothing here needs pytest. A step that fails
is recorded with its error and the others go on; a step that would start after --budget-s is
recorded as not run; the JSON is written however the run ends (Ctrl-C included).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import re
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpukit import backends, ceilings, kernels, machine, phases  # noqa: E402
from gpukit.backends import cuda_common as cc  # noqa: E402

MiB, GiB = 2 ** 20, 2 ** 30
FORMAT, FORMAT_VERSION = "gpukit-gpu-bench", 1
GPU_BACKENDS = ("cupy", "pycuda")


@dataclasses.dataclass(frozen=True)
class Plan:
    n_kernel: int = 1 << 26         # polyval against the copy and FMA ceilings
    k_memory: int = 1
    k_fma: int = 4096
    n_check_fma: int = 1 << 16      # where k=4096's float64 reference is quick
    transfer_rows: tuple[int, ...] = (1 << 26, 1 << 28)  # 256 MiB and 1 GiB of float32 x
    n_stream: int = 1 << 26
    k_stream: int = 2
    n_profiler: int = 1 << 24
    k_profiler: int = 64
    reps: int = 10
    d2d_bytes: int = 512 * MiB
    fma_iters: int = 65536          # milliseconds a launch on a data-center GPU
    compile_cold: bool = True


FULL = Plan()
# Small enough that the host fakes' emulated kernels finish too (rehearsals without a GPU).
QUICK = Plan(n_kernel=1 << 16, k_fma=64, n_check_fma=1 << 10, transfer_rows=(1 << 16,),
             n_stream=1 << 16, n_profiler=1 << 14, reps=3, d2d_bytes=64 * MiB, fma_iters=4096,
             compile_cold=False)

TARGETS = {"kernel_vs_d2d": 0.85, "kernel_vs_fma": 0.90, "cupy_vs_pycuda": 0.05,
           "pinned_vs_ceiling": 0.95, "streamed_speedup": 1.5, "vs_cupyx_benchmark": 0.05}


def card_slug(name: str) -> str:
    """'NVIDIA H200' -> 'NVIDIA-H200' (as bench/gpu_checks.sh names it)."""
    return re.sub(r"[^A-Za-z0-9]", "-", name).rstrip("-") or "no-gpu"


# -- ceilings ---------------------------------------------------------------------------------


class Ceilings:
    """Stored `gpukit limits` figures for this machine, else measured here on demand."""

    def __init__(self, device_name: str, plan: Plan):
        self.plan = plan
        facts = machine.facts()
        facts["gpu"] = {"device": device_name}
        stored = ceilings.load(facts)
        self.stored = {}
        self.note = "none stored for this machine: measured here"
        if stored and not (stored.get("settings") or {}).get("quick"):
            self.stored = stored.get("figures") or {}
            self.note = f"gpukit limits, {ceilings.cache_path(facts)}"
        elif stored:
            self.note = "stored ones are --quick figures: measured here instead"
        self.inline: dict[str, float] = {}
        self._session = None

    def get(self, name: str, measure, *args) -> tuple[float, str]:
        """(value, source) of figure `name`; `measure(*args)` when it is not stored."""
        if self.stored.get(name):
            return float(self.stored[name]), "limits"
        key = name + repr(args)
        if key not in self.inline:
            self.inline[key] = measure(*args)
        return self.inline[key], "inline"

    def session(self):
        """A gpukit limits session sized for this plan's figures, opened once."""
        if self._session is None:
            from gpukit.limits import gpu
            sizes = tuple(sorted({4 * n for n in self.plan.transfer_rows}))
            self._session = gpu.Session(gpu.GpuPlan(
                sizes=sizes, large_reps=5, mid_reps=5, warmup=2, d2d_bytes=self.plan.d2d_bytes,
                d2d_reps=10, fma_iters=self.plan.fma_iters, fma_reps=5,
                bidir_bytes=min(sizes)))
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def d2d_gbps(self) -> float:
        return self.session().measure_d2d()[0]["d2d_gbps"]

    def fma_gflops(self) -> float:
        return self.session().measure_fma()[0]["fma_gflops"]

    def pinned_gbps(self, direction: str, nbytes: int) -> float:
        session = self.session()
        with session.dev.active():
            for _ in range(2):
                session.time_copy(direction, "pinned", nbytes)
            times = [session.time_copy(direction, "pinned", nbytes)[0] for _ in range(5)]
        return nbytes / statistics.median(times) / 1e9


# -- running gpukit's backends ------------------------------------------------------------------


class Inputs:
    """Inputs and their float64 reference by (n, k), one problem at a time, so both backends
    and every variant share them (a 1 GiB x is made once)."""

    def __init__(self, kernel):
        self.kernel, self._key, self._inputs, self._reference = kernel, None, None, None

    def _load(self, n: int, k: int) -> None:
        if self._key != (n, k):
            self._inputs = self._reference = None  # free the last problem first
            self._inputs = self.kernel.make_inputs(n, self.kernel.resolve_params({"k": k}))
            self._key = (n, k)

    def get(self, n: int, k: int):
        self._load(n, k)
        return self._inputs

    def reference(self, n: int, k: int):
        self._load(n, k)
        if self._reference is None:
            self._reference = self.kernel.reference(self._inputs,
                                                    self.kernel.resolve_params({"k": k}))
        return self._reference


def variant(cls, kind: str):
    kernel = kernels.load("polyval")
    for v in cls.variants(kernel):
        if (cc.is_streamed(v) if kind == "streamed"
                else v.option("memory") == kind and not cc.is_streamed(v)):
            return v
    raise LookupError(f"{cls.name} has no {kind} variant")


def measure(name: str, kind: str, n: int, k: int, reps: int, plan: Plan, data: Inputs,
            check: bool = True, settings: dict | None = None):
    """Median-able runs of one backend variant at (n, k), after a checked warm-up run."""
    polyval = kernels.load("polyval")
    cls = backends.get(name)
    settings = {"compute_only": False, "compile_cold": plan.compile_cold, **(settings or {})}
    session = cls(variant(cls, kind), 1, settings)
    try:
        startup = session.open()
        params = polyval.resolve_params({"k": k})
        inputs = data.get(n, k)
        prepared = session.prepare(polyval, params, inputs)
        out, _ = session.run()
        if check:
            result = polyval.check(out, data.reference(n, k), inputs, params)
            if not result.ok:
                raise AssertionError(f"{name}/{kind} n={n} k={k} disagrees with the reference: "
                                     f"{result}")
        del out
        runs = [session.run()[1] for _ in range(reps)]
        return runs, {"open": startup.to_json(), "prepare": prepared.to_json()}
    finally:
        session.close()


def check_only(name: str, kind: str, n: int, k: int, plan: Plan, data: Inputs) -> None:
    measure(name, kind, n, k, 0, plan, data)


def median(values) -> float:
    return float(statistics.median(values))


def device_phase(runs, phase) -> float:
    return median(r.device_s[phase] for r in runs)


# -- the figures --------------------------------------------------------------------------------


class Report:
    def __init__(self, quick: bool, budget_s: float | None = None):
        self.rows: list[dict] = []
        self.errors: list[dict] = []
        self.not_run: list[str] = []
        self.details: dict = {}
        self.quick = quick
        self.budget_s = budget_s
        self.t0 = time.perf_counter()

    def add(self, figure: str, measured: float, unit: str, target: str, ceiling=None,
            ratio=None, passed=None, note: str = "") -> None:
        self.rows.append({"figure": figure, "measured": measured, "unit": unit,
                          "target": target, "ceiling": ceiling, "ratio": ratio,
                          "pass": None if self.quick else passed, "note": note})

    def step(self, label: str, fn) -> None:
        t0 = time.perf_counter()
        if self.budget_s is not None and t0 - self.t0 > self.budget_s:
            self.not_run.append(label)
            print(f"-- {label}: NOT RUN, past the budget of {self.budget_s:g} s", flush=True)
            return
        print(f"-- {label}", flush=True)
        try:
            fn()
        except Exception as exc:  # one step failing leaves the others to run
            self.errors.append({"step": label, "error": f"{type(exc).__name__}: {exc}",
                                "traceback": traceback.format_exc()})
            print(f"   FAILED: {type(exc).__name__}: {exc}", flush=True)
        print(f"   {time.perf_counter() - t0:.1f} s", flush=True)


def kernel_figures(report: Report, plan: Plan, data: Inputs, ceil: Ceilings) -> None:
    d2d, d2d_src = ceil.get("d2d_gbps", ceil.d2d_gbps)
    fma, fma_src = ceil.get("fma_gflops", ceil.fma_gflops)
    n = plan.n_kernel
    rates = {}
    for name in GPU_BACKENDS:
        runs, info = measure(name, "pinned", n, plan.k_memory, plan.reps, plan, data)
        gbps = 8 * n / device_phase(runs, phases.COMPUTE) / 1e9
        rates[name, "memory"] = gbps
        report.details[f"{name}_k{plan.k_memory}"] = info
        report.add(f"{name} polyval k={plan.k_memory} n=2^{n.bit_length() - 1} kernel",
                   gbps, "GB/s", f">= {TARGETS['kernel_vs_d2d']:.0%} of D2D copy", d2d,
                   gbps / d2d, gbps >= TARGETS["kernel_vs_d2d"] * d2d, f"ceiling: {d2d_src}")
        # The pinned one-stream runs at n_kernel also give the 256 MiB transfer figures.
        if n in plan.transfer_rows:
            transfer_rows(report, name, n, runs, ceil)
    for name in GPU_BACKENDS:
        check_only(name, "pinned", plan.n_check_fma, plan.k_fma, plan, data)
    for name in GPU_BACKENDS:
        runs, info = measure(name, "pinned", n, plan.k_fma, plan.reps, plan, data, check=False)
        gflops = 2 * plan.k_fma * n / device_phase(runs, phases.COMPUTE) / 1e9
        rates[name, "fma"] = gflops
        report.details[f"{name}_k{plan.k_fma}"] = info
        report.add(f"{name} polyval k={plan.k_fma} n=2^{n.bit_length() - 1} kernel",
                   gflops, "GFLOP/s", f">= {TARGETS['kernel_vs_fma']:.0%} of FMA rate", fma,
                   gflops / fma, gflops >= TARGETS["kernel_vs_fma"] * fma,
                   f"ceiling: {fma_src} (8-chain FMA kernel)")
    for what, unit in (("memory", "GB/s"), ("fma", "GFLOP/s")):
        ratio = rates["pycuda", what] / rates["cupy", what]
        k = plan.k_memory if what == "memory" else plan.k_fma
        report.add(f"PyCUDA / CuPy kernel rate, k={k}", ratio, "x",
                   f"within {TARGETS['cupy_vs_pycuda']:.0%}", None, ratio,
                   abs(ratio - 1) <= TARGETS["cupy_vs_pycuda"],
                   f"cupy {rates['cupy', what]:.4g}, pycuda {rates['pycuda', what]:.4g} {unit}")


def transfer_rows(report: Report, name: str, n: int, runs, ceil: Ceilings) -> None:
    nbytes = 4 * n  # float32 x in, float32 y out (polyval's c adds (k+1) * 4 bytes to H2D)
    for direction, phase in (("h2d", phases.TRANSFER_IN), ("d2h", phases.TRANSFER_OUT)):
        moved = nbytes + (8 if direction == "h2d" else 0)
        gbps = moved / device_phase(runs, phase) / 1e9
        ceiling, src = ceil.get(f"{direction}_pinned_gbps", ceil.pinned_gbps, direction, nbytes)
        report.add(f"{name} pinned {direction.upper()} {cc.size_text(nbytes)}", gbps, "GB/s",
                   f">= {TARGETS['pinned_vs_ceiling']:.0%} of pinned ceiling", ceiling,
                   gbps / ceiling, gbps >= TARGETS["pinned_vs_ceiling"] * ceiling,
                   f"ceiling: {src}")


def transfer_figures(report: Report, plan: Plan, data: Inputs, ceil: Ceilings) -> None:
    for n in plan.transfer_rows:
        if n == plan.n_kernel:
            continue  # measured with the kernel figures
        for name in GPU_BACKENDS:
            runs, _ = measure(name, "pinned", n, 1, max(3, plan.reps // 2), plan, data,
                              check=False)
            transfer_rows(report, name, n, runs, ceil)


def streamed_figures(report: Report, plan: Plan, data: Inputs) -> None:
    n, k = plan.n_stream, plan.k_stream
    for name in GPU_BACKENDS:
        one, _ = measure(name, "pinned", n, k, plan.reps, plan, data)
        streamed, info = measure(name, "streamed", n, k, plan.reps, plan, data)
        wall_one, wall_streamed = median(r.wall_s for r in one), median(r.wall_s for r in streamed)
        speedup = wall_one / wall_streamed
        extra = streamed[len(streamed) // 2].extra
        report.details[f"{name}_streamed"] = {**info, "a_run": extra}
        report.add(f"{name} streamed vs one stream, pinned, k={k} n=2^{n.bit_length() - 1}",
                   speedup, "x", f">= {TARGETS['streamed_speedup']}x end to end", None, speedup,
                   speedup >= TARGETS["streamed_speedup"],
                   f"wall {wall_one * 1e3:.2f} -> {wall_streamed * 1e3:.2f} ms; "
                   f"{extra['chunks']} chunks on {extra['streams']} streams; overlap hid "
                   f"{median(r.extra['overlap_hidden_share'] for r in streamed):.0%} of "
                   f"{median(r.extra['serial_s'] for r in streamed) * 1e3:.2f} ms")


def profiler_figure(report: Report, plan: Plan, data: Inputs) -> None:
    import cupy as cp
    from cupyx.profiler import benchmark

    from gpukit.backends.cupy_backend import NVRTC_OPTIONS
    polyval = kernels.load("polyval")
    n, k = plan.n_profiler, plan.k_profiler
    runs, _ = measure("cupy", "pinned", n, k, max(plan.reps, 20), plan, data)
    gpukit_s = device_phase(runs, phases.COMPUTE)
    params = polyval.resolve_params({"k": k})
    inputs = data.get(n, k)
    function = cp.RawModule(code=polyval.cuda_source(), options=NVRTC_OPTIONS).get_function(
        "polyval")
    x, c = cp.asarray(inputs.split["x"]), cp.asarray(inputs.whole["c"])
    y = cp.empty(n, dtype=cp.float32)
    launch = polyval.cuda_launch(n, params)
    args = (x, c, y, np.int64(n), np.int32(k))
    result = benchmark(lambda: function((launch.grid,), (launch.block,), args),
                       n_repeat=100, n_warmup=10)
    bench_s = float(np.median(result.gpu_times))
    ratio = gpukit_s / bench_s
    report.add(f"gpukit kernel time / cupyx.profiler.benchmark, k={k} n=2^{n.bit_length() - 1}",
               ratio, "x", f"within {TARGETS['vs_cupyx_benchmark']:.0%}", None, ratio,
               abs(ratio - 1) <= TARGETS["vs_cupyx_benchmark"],
               f"gpukit {gpukit_s * 1e6:.1f} us, benchmark {bench_s * 1e6:.1f} us")
    del x, c, y
    cp.get_default_memory_pool().free_all_blocks()


# -- output -------------------------------------------------------------------------------------


def fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table(report: Report) -> list[str]:
    lines = [f"{'figure':<58} {'measured':>10} {'unit':<8} {'ceiling':>9} {'ratio':>7}  "
             f"result  target; note"]
    for row in report.rows:
        verdict = {True: "PASS", False: "FAIL", None: "-"}[row["pass"]]
        lines.append(f"{row['figure']:<58} {fmt(row['measured']):>10} {row['unit']:<8} "
                     f"{fmt(row['ceiling']):>9} {fmt(row['ratio']):>7}  {verdict:<6}  "
                     f"{row['target']}; {row['note']}")
    for err in report.errors:
        lines.append(f"ERROR in {err['step']}: {err['error']}")
    for label in report.not_run:
        lines.append(f"NOT RUN (past the budget): {label}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a 10-second smoke test at small sizes; no PASS/FAIL verdicts")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                        help="folder for gpu-bench-<card>.json (default bench/results)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no step after this many seconds (default: no limit)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL

    from gpukit.errors import BackendUnavailable
    from gpukit.limits import gpu
    try:
        name = gpu.probe()["device"]
    except BackendUnavailable as exc:
        print(f"error: no GPU: {exc}", file=sys.stderr)
        return 3
    report = Report(args.quick, args.budget_s)
    data = Inputs(kernels.load("polyval"))
    ceil = Ceilings(name, plan)
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    path = args.out / f"gpu-bench-{card_slug(name)}{'-quick' if args.quick else ''}.json"
    machine_facts = machine.facts()

    def save(complete: bool) -> None:
        """The results so far, written after every step: a run cut short, even by SIGKILL,
        keeps the steps it finished."""
        result = {
            "format": FORMAT, "version": FORMAT_VERSION,  # version 1: the first
            "date": started.isoformat(timespec="seconds"), "card": name,
            "quick": args.quick, "plan": dataclasses.asdict(plan), "targets": TARGETS,
            "elapsed_s": time.perf_counter() - t0, "machine": machine_facts,
            "complete": complete,
            "ceilings": {"source": ceil.note, "stored": ceil.stored, "measured_here": ceil.inline},
            "figures": report.rows, "errors": report.errors, "not_run": report.not_run,
            "details": report.details,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
        tmp.replace(path)

    steps = [("polyval kernel vs copy and FMA ceilings, CuPy and PyCUDA",
              lambda: kernel_figures(report, plan, data, ceil)),
             ("pinned transfers vs ceilings", lambda: transfer_figures(report, plan, data, ceil)),
             ("streamed vs one stream", lambda: streamed_figures(report, plan, data)),
             ("kernel time vs cupyx.profiler.benchmark",
              lambda: profiler_figure(report, plan, data))]
    complete = False
    try:
        save(complete)
        for label, fn in steps:
            report.step(label, fn)
            save(complete)
        complete = True
    except KeyboardInterrupt:
        report.errors.append({"step": "all", "error": "interrupted (SIGINT or Ctrl-C)",
                              "traceback": ""})
    finally:
        ceil.close()
        save(complete)
        print()
        print(f"{name}, {started:%Y-%m-%d}, {'quick smoke test' if args.quick else 'targets'}; "
              f"ceilings: {ceil.note}")
        print("\n".join(table(report)))
        print(f"written: {path} ({time.perf_counter() - t0:.0f} s)")
    failed = any(row["pass"] is False for row in report.rows)
    return 1 if report.errors or report.not_run or failed else 0


if __name__ == "__main__":
    sys.exit(main())
