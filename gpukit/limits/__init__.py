"""`gpukit limits`: measure this machine's ceilings, once, and keep them per machine.

`measure_all` runs the host measurements (gpukit.limits.host) and, where a GPU can be opened,
the GPU ones (gpukit.limits.gpu), then stores them with gpukit.ceilings.save. A measurement
that fails does not stop the others: its figures go under `missing` with the reason, as the
whole GPU part does on a machine without one. The `*_text` and `*_rows` functions turn the
result into text for the command; nothing here prints.

Only the standard library is imported at the top: process-pool workers import this package to
reach gpukit.limits.host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from collections.abc import Callable

from gpukit import ceilings
from gpukit.units import fmt_bytes, fmt_gbps, fmt_s

# progress(label, step_index, step_count) is called as each step starts.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Step:
    label: str
    names: tuple[str, ...]                 # the figures it fills: each gets the reason if it fails
    run: Callable[[], tuple[dict, dict]]   # -> (figures, curves)


def _figures_only(fn, *args) -> Callable[[], tuple[dict, dict]]:
    return lambda: (fn(*args), {})


def host_steps(quick: bool, cores: int) -> list[Step]:
    from gpukit.limits import host
    plan = host.QUICK if quick else host.FULL
    steps = [
        # Processes first, before this process starts any thread of its own: forking a
        # threaded process is what Python warns about.
        Step("process pool start (fork)", ("pool_start_fork_s",),
             _figures_only(host.measure_pool_start, "fork", plan, cores)),
        Step("first process pool start (forkserver)", ("pool_start_forkserver_first_s",),
             _figures_only(host.measure_first_forkserver_pool, cores)),
        Step("process pool start (forkserver)", ("pool_start_forkserver_s",),
             _figures_only(host.measure_pool_start, "forkserver", plan, cores)),
        Step("process pool start (spawn)", ("pool_start_spawn_s",),
             _figures_only(host.measure_pool_start, "spawn", plan, cores)),
        Step("process pool dispatch and pickling",
             ("process_dispatch_s", "process_dispatch_extra_s", "pickle_gbps"),
             lambda: host.measure_process_pool(plan, cores)),
        Step("thread start and dispatch",
             ("thread_start_s", "thread_dispatch_s", "thread_dispatch_extra_s"),
             _figures_only(host.measure_threads, plan, cores)),
        Step("host memory copy", ("host_copy_1t_gbps", "host_copy_all_gbps"),
             _figures_only(host.measure_copy, plan, cores)),
        Step("NumPy multiply-add rate", ("host_numpy_1t_gflops",),
             _figures_only(host.measure_numpy_rate, plan)),
        Step("pure-Python multiply-add rate and row cost",
             ("host_python_1t_gflops", "host_python_row_s"),
             _figures_only(host.measure_python_rate, plan)),
    ]
    return steps


def gpu_steps(session, plan) -> list[Step]:
    """The GPU steps on an open gpu.Session; they reach the session only when run."""
    from gpukit.limits import gpu
    return [
        Step("host<->device copies over sizes",
             ("h2d_pinned_gbps", "d2h_pinned_gbps", "h2d_pageable_gbps", "d2h_pageable_gbps"),
             lambda: session.measure_transfers()),
        Step("4 KiB copy latency", ("copy_latency_s",), lambda: session.measure_latency()),
        Step("H2D and D2H at once", ("bidir_pinned_gbps", "bidir_speedup"),
             lambda: session.measure_bidirectional()),
        Step("device-to-device copy", ("d2d_gbps",), lambda: session.measure_d2d()),
        *(Step(f"{name} launch", tuple(f"launch_{lib}{kind}_s" for kind in gpu.LAUNCH_KINDS),
               lambda lib=lib: session.measure_launch(lib))
          for lib, name in zip(gpu.LIBRARIES, ("CuPy", "PyCUDA"))),
        Step("float32 FMA rate", ("fma_gflops",), lambda: session.measure_fma()),
    ]


def reason_of(exc: BaseException) -> str:
    from gpukit.errors import GpukitError
    return str(exc) if isinstance(exc, GpukitError) else f"{type(exc).__name__}: {exc}"


def run_steps(steps: list[Step], figures: dict, curves: dict, missing: dict,
              progress: Progress | None = None, first: int = 0, total: int | None = None) -> None:
    """Run each step; what one cannot measure goes to `missing`, and the others still run."""
    total = total if total is not None else first + len(steps)
    for i, step in enumerate(steps, start=first):
        if progress:
            progress(step.label, i, total)
        try:
            got, got_curves = step.run()
        except Exception as exc:  # reported per figure, never dropped silently
            for name in step.names:
                missing[name] = reason_of(exc)
            continue
        figures.update(got)
        curves.update(got_curves)


def reusable(cached: dict | None, quick: bool) -> bool:
    """A cached measurement serves a later run unless it was a quick one and this run is not."""
    if cached is None:
        return False
    return quick or not cached.get("settings", {}).get("quick", False)


def measure_all(machine: dict | None = None, refresh: bool = False,
                progress: Progress | None = None, quick: bool = False) -> dict:
    """This machine's ceilings: from its cache file, or measured now and stored there.

    Returns the stored dict (format, version, machine, figures, curves, missing, settings) plus
    `path` (the cache file), `cached` (whether it was reused rather than measured) and, where
    a damaged cache file was set aside, `damaged_cache`: why.
    """
    from gpukit import machine as machine_facts
    from gpukit.errors import BackendUnavailable
    from gpukit.limits import gpu

    facts = dict(machine) if machine is not None else machine_facts.facts()
    missing: dict[str, str] = {}
    try:
        facts["gpu"] = gpu.probe()
    except BackendUnavailable as exc:
        facts.pop("gpu", None)
        missing["gpu"] = str(exc)
    path = ceilings.cache_path(facts)
    damaged = None
    if not refresh:
        try:
            cached = ceilings.load(path=path)
        except ceilings.Damaged as exc:
            cached, damaged = None, f"{exc}; ignored, measured again"
        if reusable(cached, quick):
            return {**cached, "path": str(path), "cached": True}

    t0 = time.perf_counter()
    figures: dict[str, float] = {}
    curves: dict[str, dict] = {}
    steps = host_steps(quick, facts.get("cores") or 1)
    has_gpu = "gpu" in facts
    total = len(steps) + (len(gpu_steps(None, None)) if has_gpu else 0)
    run_steps(steps, figures, curves, missing, progress, 0, total)
    if has_gpu:
        plan = gpu.QUICK if quick else gpu.FULL
        try:
            session = gpu.Session(plan, facts.get("memory_available_bytes"))
        except Exception as exc:
            for name in gpu.FIGURES:
                missing[name] = reason_of(exc)
        else:
            try:
                run_steps(gpu_steps(session, plan), figures, curves, missing, progress,
                          len(steps), total)
            finally:
                session.close()
    settings = {"quick": quick, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "wall_s": round(time.perf_counter() - t0, 3)}
    ceilings.save(facts, figures, curves, missing, path=path, settings=settings)
    data = ceilings.load(path=path) or {}
    return {**data, "path": str(path), "cached": False, "damaged_cache": damaged}


# -- text ----------------------------------------------------------------------------------------


def value_text(name: str, value: float) -> str:
    """A figure with its unit, read off the name's suffix."""
    if name.endswith("_gbps"):
        return fmt_gbps(value)
    if name.endswith("_gflops"):
        return f"{value / 1000:.3g} TFLOP/s" if value >= 1000 else f"{value:.3g} GFLOP/s"
    if name.endswith("_speedup"):
        return f"{value:.2f}x"
    if name.endswith("_s"):
        return fmt_s(value)
    return f"{value:.4g}"


def figure_rows(data: dict) -> list[tuple[str, str, str]]:
    """(name, what it is, value with unit) for every figure measured, in FIGURES' order."""
    figures = data.get("figures", {})
    order = [n for n in ceilings.FIGURES if n in figures] + \
        sorted(n for n in figures if n not in ceilings.FIGURES)
    return [(n, ceilings.FIGURES.get(n, ""), value_text(n, figures[n])) for n in order]


TRANSFER_COLUMNS = (("h2d_pinned", "H2D pinned"), ("h2d_pageable", "H2D pageable"),
                    ("d2h_pinned", "D2H pinned"), ("d2h_pageable", "D2H pageable"))


def transfer_rows(curves: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the transfer curves: per size, each kind's time and bandwidth.

    Small sizes show the latency (the time hardly changes), large ones the bandwidth. Times are
    the device's (CUDA events); the host clock's are in the JSON beside them.
    """
    present = [(key, title) for key, title in TRANSFER_COLUMNS if key in curves]
    if not present:
        return [], []
    sizes = curves[present[0][0]]["sizes_bytes"]
    header = ["size"] + [title for _, title in present]
    rows = []
    for i, n in enumerate(sizes):
        row = [fmt_bytes(n)]
        for key, _ in present:
            c = curves[key]
            row.append(f"{fmt_s(c['event_s'][i])}  {fmt_gbps(c['gbps'][i])}"
                       if i < len(c["sizes_bytes"]) else "-")
        rows.append(row)
    return header, rows


def missing_lines(data: dict) -> list[str]:
    return [f"{'GPU' if name == 'gpu' else name}: not measured: {reason}"
            for name, reason in data.get("missing", {}).items()]
