"""What a sweep means: pure functions of a results dict (as saved), no measuring, no printing.

Each finding is a `Finding(topic, text, numbers)`: a sentence a user can act on and the figures
behind it, so reports can render it and tests can check it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from gpukit import phases

BASELINE = "serial/numpy"


@dataclasses.dataclass(frozen=True)
class Finding:
    topic: str
    text: str
    numbers: dict


def params_key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def ok_cases(data: dict) -> list[dict]:
    return [c for c in data["cases"] if c.get("status") == "ok"]


def wall(case: dict) -> float:
    return case["summary"]["wall_s"]["median"]


def phase(case: dict, name: str) -> float:
    return case["summary"]["phases_s"][name]["median"]


def is_gpu(case: dict, data: dict) -> bool:
    return bool(data["backends"].get(case["backend"], {}).get("gpu"))


def index(data: dict) -> dict[tuple, dict]:
    """(params, label, workers, n) -> case, for the cases that ran."""
    return {(params_key(c["params"]), c["label"], c["workers"], c["n"]): c for c in ok_cases(data)}


def baseline(data: dict, case: dict) -> dict | None:
    return index(data).get((params_key(case["params"]), BASELINE, 1, case["n"]))


def speedup_vs_baseline(idx: dict, case: dict) -> float | None:
    base = idx.get((params_key(case["params"]), BASELINE, 1, case["n"]))
    if base is None:
        return None
    return wall(base) / wall(case)


def throughput(case: dict) -> dict[str, float]:
    t = wall(case)
    work = case["work"]
    return {"gbps": (work["bytes_in"] + work["bytes_out"]) / t / 1e9, "gflops": work["flops"] / t / 1e9}


def transfer_share(case: dict) -> float:
    moved = phase(case, phases.TRANSFER_IN) + phase(case, phases.TRANSFER_OUT)
    total = moved + phase(case, phases.COMPUTE)
    return moved / total if total > 0 else 0.0


def crossover(sizes: Iterable[int], wins: dict[int, bool]) -> int | None:
    """Smallest measured n from which `wins` holds at every larger measured n; None if it loses
    at the largest. (Between that n and the one below it the change happened; issue-level
    interpolation belongs to a richer model.)"""
    sizes = sorted(n for n in sizes if n in wins)
    if not sizes or not wins[sizes[-1]]:
        return None
    first = sizes[-1]
    for n in reversed(sizes):
        if not wins[n]:
            break
        first = n
    return first


def fmt_n(n: int) -> str:
    if n > 0 and n & (n - 1) == 0 and n >= 1024:
        return f"2^{n.bit_length() - 1}"
    return str(n)


def _series(idx, pkey, label, workers):
    return {n: c for (p, l, w, n), c in idx.items() if p == pkey and l == label and w == workers}


def findings(data: dict) -> list[Finding]:
    idx = index(data)
    out: list[Finding] = []
    for pset in data["sweep"]["param_sets"]:
        pkey = params_key(pset)
        ptxt = params_text(pset)
        out.extend(_threads_findings(idx, pkey, ptxt))
        out.extend(_process_findings(idx, pkey, ptxt))
        out.extend(_gpu_findings(data, idx, pkey, ptxt))
    return out


def _max_workers(idx, pkey, label):
    ws = [w for (p, l, w, _n) in idx if p == pkey and l == label]
    return max(ws) if ws else None


def _threads_findings(idx, pkey, ptxt):
    found = []
    for impl in ("python", "numpy"):
        label = f"threads/{impl}"
        w = _max_workers(idx, pkey, label)
        serial = _series(idx, pkey, f"serial/{impl}", 1)
        threads = _series(idx, pkey, label, w) if w else {}
        common = sorted(set(serial) & set(threads))
        if not common:
            continue
        n = common[-1]
        speedup = wall(serial[n]) / wall(threads[n])
        why = ("the GIL lets one thread run at a time" if impl == "python"
               else "NumPy releases the GIL inside each ufunc")
        text = (f"[{ptxt}] {label} on {w} threads: {speedup:.2f}x serial/{impl} at n={fmt_n(n)} "
                f"({why})")
        numbers = {"impl": impl, "workers": w, "n": n, "speedup": speedup}
        if impl == "numpy":
            wins = {m: wall(threads[m]) < wall(serial[m]) for m in common}
            cross = crossover(common, wins)
            numbers["crossover_n"] = cross
            text += ("; threads win from n=" + fmt_n(cross) + " up" if cross is not None
                     else "; threads never won within the sweep")
        found.append(Finding("threads", text + ".", numbers))
    return found


def _process_findings(idx, pkey, ptxt):
    found = []
    serial = _series(idx, pkey, BASELINE, 1)
    parts = []
    numbers = {}
    for transfer in ("pickle", "shm"):
        label = f"processes/numpy/{transfer}"
        w = _max_workers(idx, pkey, label)
        if w is None:
            continue
        series = _series(idx, pkey, label, w)
        common = sorted(set(series) & set(serial))
        if not common:
            continue
        n = common[-1]
        speedup = wall(serial[n]) / wall(series[n])
        share = transfer_share(series[n])
        wins = {m: wall(series[m]) < wall(serial[m]) for m in common}
        cross = crossover(common, wins)
        numbers[transfer] = {"workers": w, "n": n, "speedup": speedup, "transfer_share": share,
                             "crossover_n": cross}
        parts.append(f"{transfer}: {speedup:.2f}x serial/numpy at n={fmt_n(n)} on {w} processes, "
                     f"{share:.0%} of it moving data"
                     + (f", ahead from n={fmt_n(cross)}" if cross is not None
                        else ", never ahead within the sweep"))
    if parts:
        found.append(Finding("processes", f"[{ptxt}] processes/numpy " + "; ".join(parts) + ".",
                             numbers))
    return found


def _gpu_findings(data, idx, pkey, ptxt):
    cpu_best: dict[int, dict] = {}
    gpu_best: dict[int, dict] = {}
    cpu_compute: dict[int, dict] = {}
    gpu_compute: dict[int, dict] = {}
    for (p, _l, _w, n), c in idx.items():
        if p != pkey:
            continue
        best, comp = (gpu_best, gpu_compute) if is_gpu(c, data) else (cpu_best, cpu_compute)
        if n not in best or wall(c) < wall(best[n]):
            best[n] = c
        if n not in comp or phase(c, phases.COMPUTE) < phase(comp[n], phases.COMPUTE):
            comp[n] = c
    common = sorted(set(cpu_best) & set(gpu_best))
    if not common:
        return []
    end_to_end = crossover(common, {n: wall(gpu_best[n]) < wall(cpu_best[n]) for n in common})
    compute = crossover(common, {n: phase(gpu_compute[n], phases.COMPUTE)
                                 < phase(cpu_compute[n], phases.COMPUTE) for n in common})
    n = common[-1]
    g, c = gpu_best[n], cpu_best[n]
    text = (f"[{ptxt}] GPU vs best CPU: end to end the GPU wins from "
            + (f"n={fmt_n(end_to_end)}" if end_to_end is not None else "no size in the sweep")
            + ", on compute alone from "
            + (f"n={fmt_n(compute)}" if compute is not None else "no size in the sweep")
            + f"; at n={fmt_n(n)} {g['label']} takes {wall(g) * 1e3:.3g} ms "
            f"({transfer_share(g):.0%} transfers) vs {c['label']}x{c['workers']} "
            f"{wall(c) * 1e3:.3g} ms.")
    return [Finding("gpu", text, {"end_to_end_crossover_n": end_to_end,
                                  "compute_crossover_n": compute, "n": n,
                                  "gpu_label": g["label"], "gpu_wall_s": wall(g),
                                  "gpu_transfer_share": transfer_share(g),
                                  "cpu_label": c["label"], "cpu_workers": c["workers"],
                                  "cpu_wall_s": wall(c)})]
