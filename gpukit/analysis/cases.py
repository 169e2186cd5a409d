"""The vocabulary of a saved sweep: cases by key, their times, phases and work, and how sizes,
times and variants are written in findings and tables."""

from __future__ import annotations

import math

from gpukit import phases, records
from gpukit.analysis import model
from gpukit.units import fmt_n

# Smaller relative differences are noise: `diff --min-change` by default, and the gap under which
# "fastest" calls two variants tied. As asv's and pyperf's comparisons do, a change must be both
# statistically significant and this large to count.
MIN_CHANGE = 0.10


def params_key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def case_text(key: tuple, data: dict | None = None) -> str:
    """'[k=2] threads/numpy x2 at n=2^20' for a case key; no brackets for a parameterless
    kernel, no worker count for serial and GPU variants."""
    p, label, w, n = key
    ptxt = f"[{params_text(dict(p))}] " if p else ""
    return f"{ptxt}{variant_name(label, w, data)} at n={fmt_n(n)}"


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


def baseline_labels(data: dict) -> tuple[str, ...]:
    """The variants every speedup is measured against, in order of preference: the reference
    backend's NumPy, or its pure Python for a kernel without NumPy (serial/numpy, then
    serial/python, for the built-in backends)."""
    reference = records.reference_backend(data)
    return (f"{reference}/numpy", f"{reference}/python") if reference else ()


def baseline(data: dict, case: dict) -> dict | None:
    return _baseline(index(data), case, baseline_labels(data))


def _baseline(idx: dict, case: dict, labels: tuple[str, ...]) -> dict | None:
    """The first of `labels` that ran at the case's size and parameters."""
    key = params_key(case["params"])
    for label in labels:
        found = idx.get((key, label, 1, case["n"]))
        if found is not None:
            return found
    return None


def speedup_vs_baseline(idx: dict, case: dict, data: dict) -> float | None:
    base = _baseline(idx, case, baseline_labels(data))
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


def series(idx: dict, pkey: tuple, label: str, workers: int) -> dict[int, dict]:
    """n -> case for one line of a time-vs-n plot."""
    return {n: c for (p, l, w, n), c in idx.items() if p == pkey and l == label and w == workers}


def labels_workers(idx: dict, pkey: tuple) -> list[tuple[str, int]]:
    return sorted({(l, w) for (p, l, w, _n) in idx if p == pkey})


def max_workers(idx: dict, pkey: tuple, label: str) -> int | None:
    ws = [w for (p, l, w, _n) in idx if p == pkey and l == label]
    return max(ws) if ws else None



def variant_name(label: str, workers: int, data: dict | None = None) -> str:
    """'threads/numpy x2'; the worker count of a parallel backend always shows (x1 too), that
    of serial and GPU variants never."""
    backend = label.split("/", 1)[0]
    parallel = (data["backends"].get(backend, {}).get("parallel") if data else workers > 1)
    return label + (f" x{workers}" if parallel else "")


def key_order(key):
    """Case keys by parameters, then size, then variant: the order tables list them in."""
    p, label, w, n = key
    return (p, n, label, w)
