"""TEST DATA, not measurements: build results dicts and cases by hand for the analysis tests.

`with_gpu(data)` takes a real CPU results dict (tests/data/cpu-small.json, measured on the
2-core development machine) and adds CuPy cases whose phases are computed from figures
measured by hand with plain CuPy calls on an NVIDIA H100 80GB HBM3 (2026-11-25), with a few
percent of deterministic jitter. Nothing here ran on a GPU; the machine's GPU facts say
"synthetic" so that no report could pass them off as measured.
"""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path

from gpukit import phases
from gpukit.timing import describe

DATA = Path(__file__).parent / "data"
CPU_RESULTS = DATA / "cpu-small.json"

# Measured by hand on an NVIDIA H100 80GB HBM3, 2026-11-25 (pageable bandwidths at 16-256 MiB).
H100 = {
    "h2d_pageable_gbps": 9.0, "d2h_pageable_gbps": 11.1,
    "h2d_pinned_gbps": 54.9, "d2h_pinned_gbps": 55.1,
    "copy_latency_s": 9e-6, "d2d_gbps": 2900.0, "fma_gflops": 61000.0,
    "launch_cupy_s": 4.2e-6, "launch_cupy_sync_s": 10e-6,
    "launch_pycuda_s": 5.5e-6,  # PyCUDA's prepared call, the one gpukit launches with
}
HOST_SYNC_S = 12e-6  # what the host adds around the device's work: enqueue and synchronize


def load_cpu() -> dict:
    return json.loads(CPU_RESULTS.read_text())


def make_case(label: str, n: int, phases_s: dict[str, float], params: dict | None = None,
              workers: int = 1, flops: float | None = None, bytes_in: int | None = None,
              bytes_out: int | None = None, device: bool = False, reps: int = 8,
              jitter: float = 0.0, seed: int = 0, session: int | None = None) -> dict:
    """A case record as the runner writes it, with `reps` runs around the given phases."""
    params = params or {"k": 2}
    backend, impl, *opts = label.split("/")
    options = {}
    if opts:
        options = {("memory" if backend in ("cupy", "pycuda") else "transfer"): opts[0]}
    k = params.get("k", 2)
    rng = random.Random(seed)
    runs = []
    for _ in range(reps):
        scale = 1.0 + jitter * (2 * rng.random() - 1)
        ph = {name: phases_s.get(name, 0.0) * scale for name in phases.RUN_PHASES}
        run = {"phases_s": ph, "wall_s": sum(ph.values()) + (HOST_SYNC_S if device else 0.0)}
        if device:
            run["device_s"] = dict(ph)
        runs.append(run)
    summary = {"wall_s": describe([r["wall_s"] for r in runs]),
               "phases_s": {p: describe([r["phases_s"][p] for r in runs])
                            for p in phases.RUN_PHASES}}
    if device:
        summary["device_s"] = {p: describe([r["device_s"][p] for r in runs])
                               for p in phases.RUN_PHASES}
    return {
        "kernel": "polyval", "params": dict(params), "n": n,
        "variant": {"backend": backend, "impl": impl, "options": options, "label": label},
        "label": label, "backend": backend, "impl": impl, "workers": workers,
        "work": {"flops": flops if flops is not None else 2.0 * k * n,
                 "bytes_in": bytes_in if bytes_in is not None else 4 * n + 4 * (k + 1),
                 "bytes_out": bytes_out if bytes_out is not None else 4 * n},
        "status": "ok", "reason": None, "session": session,
        "prepare": {"steps_s": {}, "total_s": 0.0, "facts": {}},
        "runs": runs, "summary": summary,
    }


def rescaled(data: dict, factor_of) -> dict:
    """A copy of a results dict with every repetition of each case that ran multiplied by
    `factor_of(case)` (wall time and phases alike) and the summaries recomputed: the same run
    made again under other conditions, or with slower code."""
    data = copy.deepcopy(data)
    for case in data["cases"]:
        if case.get("status") != "ok":
            continue
        factor = factor_of(case)
        for run in case["runs"]:
            run["wall_s"] *= factor
            run["phases_s"] = {k: v * factor for k, v in run["phases_s"].items()}
        case["summary"]["wall_s"] = describe([r["wall_s"] for r in case["runs"]])
        for p in case["summary"]["phases_s"]:
            case["summary"]["phases_s"][p] = describe([r["phases_s"][p] for r in case["runs"]])
    return data


def run_to_run_noise(within: float, seed: int = 0, extremes: int = 3):
    """`factor_of` for `rescaled`: each case moves by a factor drawn log-uniformly within
    +-`within` (x1.15 .. x1/1.15 for 0.15), as a rerun of the same code on a busy machine does;
    the first `extremes` cases drawn move by the full x(1 + within) and the next as many by its
    inverse, so the noise reaches its bound."""
    rng = random.Random(seed)
    bound = math.log1p(within)
    seen = []

    def factor_of(case: dict) -> float:
        seen.append(case)
        i = len(seen)
        if i <= extremes:
            return 1.0 + within
        if i <= 2 * extremes:
            return 1.0 / (1.0 + within)
        return math.exp(rng.uniform(-bound, bound))

    return factor_of


def gpu_phases(n: int, k: int, memory: str, figures: dict = H100) -> dict[str, float]:
    bytes_in, bytes_out = 4 * n + 4 * (k + 1), 4 * n
    kernel = max((bytes_in + bytes_out) / (figures["d2d_gbps"] * 1e9),
                 2.0 * k * n / (figures["fma_gflops"] * 1e9))
    return {phases.TRANSFER_IN: figures["copy_latency_s"]
            + bytes_in / (figures[f"h2d_{memory}_gbps"] * 1e9),
            phases.COMPUTE: figures["launch_cupy_s"] + kernel,
            phases.TRANSFER_OUT: figures["copy_latency_s"]
            + bytes_out / (figures[f"d2h_{memory}_gbps"] * 1e9)}


def with_gpu(data: dict | None = None) -> dict:
    """A copy of a CPU results dict with synthetic cupy/cuda/{pageable,pinned} cases added."""
    data = copy.deepcopy(data if data is not None else load_cpu())
    facts = {"device": "NVIDIA H100 80GB HBM3 (synthetic test data)", "synthetic": True}
    data["machine"]["gpu"] = facts
    data["note"] = "synthetic GPU cases added for tests (tests/synthetic.py)"
    data["backends"]["cupy"] = {"summary": "CuPy (synthetic)", "gpu": True, "parallel": False,
                                "available": True, "facts": facts,
                                "variants": ["cupy/cuda/pageable", "cupy/cuda/pinned"]}
    sid = max((s["id"] for s in data["sessions"]), default=-1)
    for i, memory in enumerate(("pageable", "pinned")):
        sid += 1
        data["sessions"].append({"id": sid, "variant": {"backend": "cupy", "impl": "cuda",
                                 "options": {"memory": memory}, "label": f"cupy/cuda/{memory}"},
                                 "workers": 1, "startup": {"steps_s": {"context": 0.25},
                                                           "total_s": 0.25, "facts": {}},
                                 "error": None})
        for pset in data["sweep"]["param_sets"]:
            for n in data["sweep"]["sizes"]:
                k = pset["k"]
                data["cases"].append(make_case(
                    f"cupy/cuda/{memory}", n, gpu_phases(n, k, memory), params=pset,
                    device=True, jitter=0.03, seed=n + k + i, session=sid))
    data["sweep"]["backends"] = list(data["sweep"]["backends"]) + ["cupy"]
    return data


def h100_ceilings() -> dict:
    """A ceilings file's dict with the H100 GPU figures (host figures left out on purpose)."""
    return {"format": "gpukit-ceilings", "version": 1, "machine": {}, "figures": dict(H100),
            "curves": {}, "missing": {}}
