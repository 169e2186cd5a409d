"""Hold `gpukit limits` against reference ceilings measured by hand on the same card model.

Runs `python -m gpukit limits --refresh --json OUT` (as a user runs it), then, where REFERENCES
holds figures for this card's model, prints each figure beside its reference with the ratio and
flags any outside +-5% (gpukit's own limits must land within 5% of figures measured with plain
CuPy/NumPy calls). A card with no reference of its own model gets its figures alone, with no
verdicts: another card's ceilings say nothing about this one. Exit status 0 when none is
flagged (or there is nothing to hold them against), 1 when some are, 3 when the GPU part could
not be measured at all.

    python3 bench/limits_gpu_check.py [--out PATH] [--tolerance 0.05]
    python3 bench/limits_gpu_check.py --from bench/results/limits-<card>.json   # measure nothing

Without --out the JSON lands in bench/results/limits-<card>.json (the card's name as
bench/gpu_checks.sh writes it, e.g. NVIDIA-H200).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MiB, GiB = 1024 ** 2, 1024 ** 3
# Per card model (the device name CUDA reports): where and when the figures were measured, and
# (label, where the figure is, the reference value or (low, high) range, unit). A figure is a
# name in `figures`, or ("curve", curve name, size in bytes) for one point of a transfer curve.
REFERENCES = {
    "NVIDIA H100 80GB HBM3": ("plain CuPy/NumPy calls on the H100 test machine, 2026-11-25", [
        ("H2D pinned, 1 GiB", "h2d_pinned_gbps", 54.9, "GB/s"),
        ("D2H pinned, 1 GiB", "d2h_pinned_gbps", 55.1, "GB/s"),
        ("H2D pageable, 16 MiB", ("curve", "h2d_pageable", 16 * MiB), 12.4, "GB/s"),
        ("H2D pageable, 256 MiB", ("curve", "h2d_pageable", 256 * MiB), 9.0, "GB/s"),
        ("H2D pageable, 1 GiB", "h2d_pageable_gbps", 7.5, "GB/s"),
        ("D2H pageable, 256 MiB", ("curve", "d2h_pageable", 256 * MiB), 11.1, "GB/s"),
        ("D2H pageable, 1 GiB", "d2h_pageable_gbps", 11.3, "GB/s"),
        ("4 KiB copy, either way", "copy_latency_s", (7e-6, 11e-6), "us"),
        ("H2D + D2H at once, 256 MiB each", "bidir_pinned_gbps", 86.6, "GB/s"),
        ("  at once vs one after the other", "bidir_speedup", 1.65, "x"),
        ("device-to-device copy, 1 GiB", "d2d_gbps", 2900.0, "GB/s"),
        ("CuPy launch, queued", "launch_cupy_s", 4.2e-6, "us"),
        ("CuPy launch, with synchronize", "launch_cupy_sync_s", 10.0e-6, "us"),
        ("PyCUDA launch, prepared call", "launch_pycuda_s", 5.5e-6, "us"),
        ("float32 FMA rate", "fma_gflops", 61000.0, "GFLOP/s"),
        ("NumPy copy, 1 thread (512 MiB)", "host_copy_1t_gbps", 22.0, "GB/s"),
        ("NumPy copy, all cores (512 MiB)", "host_copy_all_gbps", 78.0, "GB/s"),
        ("pool start, fork", "pool_start_fork_s", 0.11, "s"),
        # The reference does not say whether its forkserver pool was a program's first; a
        # plain script's one pool is, so the first is held against it.
        ("pool start, forkserver (first)", "pool_start_forkserver_first_s", 0.71, "s"),
        ("pool start, spawn", "pool_start_spawn_s", 0.79, "s"),
        ("thread start + join", "thread_start_s", 87e-6, "us"),
    ]),
}
SCALE = {"us": 1e-6, "s": 1.0, "GB/s": 1.0, "GFLOP/s": 1.0, "x": 1.0}


def measured(data: dict, where) -> float | None:
    if isinstance(where, str):
        return data.get("figures", {}).get(where)
    _, name, nbytes = where
    curve = data.get("curves", {}).get(name)
    if not curve or nbytes not in curve["sizes_bytes"]:
        return None
    return curve["gbps"][curve["sizes_bytes"].index(nbytes)]


def why_missing(data: dict, where) -> str:
    name = where if isinstance(where, str) else f"{where[1]}_gbps"
    missing = data.get("missing", {})
    host = name.startswith(("host_", "pool_", "thread_"))
    return missing.get(name) or (not host and missing.get("gpu")) or "not in the results"


def num(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def compare(data: dict, reference: list, tolerance: float) -> tuple[list[list[str]], int]:
    """Rows of label, measured, reference, ratio, verdict; and how many are flagged."""
    rows, flagged = [], 0
    for label, where, ref, unit in reference:
        value = measured(data, where)
        scale = SCALE[unit]
        ref_text = (f"{num(ref[0] / scale)}-{num(ref[1] / scale)}" if isinstance(ref, tuple)
                    else num(ref / scale)) + f" {unit}"
        if value is None:
            rows.append([label, "-", ref_text, "-", f"MISSING: {why_missing(data, where)}"])
            flagged += 1
            continue
        lo, hi = ref if isinstance(ref, tuple) else (ref, ref)
        # A range is met anywhere inside it; the ratio is to its nearer end.
        nearest = min(max(value, lo), hi)
        ratio = value / nearest
        ok = 1 - tolerance <= ratio <= 1 + tolerance
        flagged += not ok
        rows.append([label, f"{num(value / scale)} {unit}", ref_text, f"{ratio:.3f}",
                     "ok" if ok else f"OUTSIDE +-{tolerance:.0%}"])
    return rows, flagged


def print_table(rows: list[list[str]]) -> None:
    header = ["figure", "gpukit limits", "reference", "ratio", ""]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for row in [header] + rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row[:4], widths))) + "  " + row[4])


def card_slug(data: dict) -> str:
    """The card's name as bench/gpu_checks.sh spells it in file names (NVIDIA-H200)."""
    device = (data.get("machine", {}).get("gpu") or {}).get("device", "no-gpu")
    return re.sub(r"[^A-Za-z0-9]", "-", device).rstrip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="where limits writes its JSON "
                                      "(default: bench/results/limits-<card>.json)")
    parser.add_argument("--from", dest="source", help="check this saved limits JSON instead")
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args(argv)

    if args.source:
        path = Path(args.source)
    else:
        path = Path(args.out) if args.out else ROOT / "bench" / "results" / "limits-latest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run([sys.executable, "-m", "gpukit", "limits", "--refresh",
                               "--json", str(path)], cwd=ROOT, env=env)
        if proc.returncode != 0:
            print(f"error: gpukit limits exited with status {proc.returncode}", file=sys.stderr)
            return proc.returncode
        if not args.out:
            named = path.with_name(f"limits-{card_slug(json.loads(path.read_text()))}.json")
            path = path.replace(named)
    data = json.loads(path.read_text())
    gpu = (data.get("machine", {}).get("gpu") or {}).get("device")
    print()
    print(f"gpukit limits on {gpu or 'no GPU'} ({data.get('settings', {}).get('measured_at')}); "
          f"results in {path}")
    if not gpu:
        print(f"error: no GPU figures: {data.get('missing', {}).get('gpu')}", file=sys.stderr)
        return 3
    if gpu not in REFERENCES:
        print(f"no reference ceilings for a {gpu} (only for: {', '.join(REFERENCES)}): the "
              f"figures alone, no verdicts")
        for name, value in sorted(data.get("figures", {}).items()):
            print(f"  {name:<32} {num(value)}")
        for name, reason in sorted(data.get("missing", {}).items()):
            print(f"  {name:<32} not measured: {reason}")
        return 0
    source, reference = REFERENCES[gpu]
    print(f"against {source}")
    rows, flagged = compare(data, reference, args.tolerance)
    print_table(rows)
    print(f"{flagged} of {len(rows)} figures outside +-{args.tolerance:.0%} or missing")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
