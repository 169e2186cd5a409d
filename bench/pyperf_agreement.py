"""Do gpukit's CPU timings agree with pyperf's for the same call?

For every size and parameter set of polyval's default sweep, the serial NumPy implementation is
timed two ways, back to back, in pairs that alternate which goes first:

- gpukit: `python -m gpukit compare --backends serial --impls numpy` at that size and k, as a
  user runs it; the figure is the case's median wall time over its repetitions (one call each);
- pyperf: `python -m pyperf timeit` around the same function on the same inputs (made by the
  kernel's own `make_inputs`, with gpukit's malloc thresholds), in 10 worker processes of 10
  values each, with loops calibrated to at least 1 ms a value; the figure is pyperf's median.
  Values that short let pyperf's median, like gpukit's, pass over a value in which another
  process took the core (pyperf's default of 100 ms a value would hold every such pause).

A pair's ratio is gpukit / pyperf; the verdict takes the median over the pairs, which must lie
within 5% of 1 at every size. Each pair waits for a quiet machine first and records the load
before and after, since other work moves both figures.

A second section, `placement`, times the same call in one process on several copies of the same
arrays, interleaved: how much the speed of a call depends on where in memory its arrays happen
to sit (which one gpukit process sees once per problem, and pyperf averages over its worker
processes).

    python bench/pyperf_agreement.py                 # about 10 minutes on a quiet 2-core machine
    python bench/pyperf_agreement.py --pairs 1 --sizes 2^10,2^16 --k 64   # a smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOLERANCE = 0.05
PYPERF_PROCESSES, PYPERF_VALUES, PYPERF_MIN_TIME_S = 10, 10, 0.001

# What pyperf's workers run before timing: the kernel's inputs and a reused output, with the
# allocator held as gpukit holds it.
PYPERF_SETUP = """\
import sys; sys.path.insert(0, {root!r})
from gpukit import allocator; allocator.steady()
from gpukit.kernels import load
kernel = load('polyval'); params = {params!r}
inputs = kernel.make_inputs({n}, params)
split, whole = inputs.split, inputs.whole
out = kernel.alloc_outputs({n}, params)
impl = kernel.host_impls()['numpy']
"""
PYPERF_STMT = "impl(split, whole, out, params)"


def load_now() -> dict:
    from gpukit import machine
    return machine.load()


def wait_for_quiet(max_share: float, timeout_s: float, sample_s: float = 3.0) -> float:
    """Wait until other work takes less than `max_share` of the machine's CPU time over a few
    seconds (or `timeout_s` has gone by); return the seconds waited. The load average would
    lag a minute behind."""
    from gpukit.analysis.noise import others_share
    t0 = time.perf_counter()
    while True:
        before = load_now()
        time.sleep(sample_s)
        share = others_share(before, load_now())
        waited = time.perf_counter() - t0
        if share is None or share < max_share or waited >= timeout_s:
            return waited


def gpukit_time(k: int, n: int, work: Path) -> float | None:
    """Median wall seconds of gpukit's serial/numpy case at (k, n), from a compare run."""
    path = work / "gpukit.json"
    cmd = [sys.executable, "-m", "gpukit", "compare", "--backends", "serial", "--impls", "numpy",
           "--workers", "1", "--no-limits", "--no-progress", "-o", str(path),
           "--sizes", str(n), "--param", f"k={k}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                   cwd=ROOT)
    data = json.loads(path.read_text())
    ok = [c for c in data["cases"] if c["status"] == "ok"]
    return ok[0]["summary"]["wall_s"]["median"] if ok else None


def pyperf_time(k: int, n: int, work: Path, fast: bool) -> float:
    """pyperf's median seconds per call of the same implementation on the same inputs."""
    path = work / f"pyperf-{k}-{n}.json"
    path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pyperf", "timeit", "--quiet", "-o", str(path),
           "--processes", str(PYPERF_PROCESSES // (2 if fast else 1)),
           "--values", str(PYPERF_VALUES), "--min-time", str(PYPERF_MIN_TIME_S),
           "--name", f"polyval k={k} n={n}", "-s", PYPERF_SETUP.format(root=str(ROOT),
                                                                      params={"k": k}, n=n),
           PYPERF_STMT]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    import pyperf
    return pyperf.Benchmark.load(str(path)).median()


def placement(sizes, param_sets, copies: int, rounds: int) -> list[dict]:
    """Per (k, n): each copy's median time over the rounds, relative to the copies' median."""
    import numpy as np

    from gpukit import allocator
    from gpukit.kernels import load
    allocator.steady()
    kernel = load("polyval")
    impl = kernel.host_impls()["numpy"]
    rows = []
    for params in param_sets:
        for n in sizes:
            inputs = kernel.make_inputs(n, params)
            whole = inputs.whole
            arrays, spacers = [], []
            for i in range(copies):
                arrays.append(({"x": inputs.split["x"].copy()}, kernel.alloc_outputs(n, params)))
                # Odd-sized spacers, so that the copies do not all sit alike in the heap.
                spacers.append(np.ones(37 * 1024 * (i + 1), np.uint8))
            reps = max(3, min(50, int(0.02 / max(_once(impl, arrays[0], whole, params), 1e-6))))
            per_copy = [[] for _ in arrays]
            for _ in range(rounds):
                for i, (split, out) in enumerate(arrays):
                    times = []
                    for _ in range(reps):
                        times.append(_once(impl, (split, out), whole, params))
                    per_copy[i].append(statistics.median(times))
            medians = [statistics.median(t) for t in per_copy]
            mid = statistics.median(medians)
            rows.append({"k": params["k"], "n": n, "copy_median_s": medians,
                         "fastest_rel": min(medians) / mid, "slowest_rel": max(medians) / mid})
    return rows


def _once(impl, arrays, whole, params) -> float:
    split, out = arrays
    t0 = time.perf_counter()
    impl(split, whole, out, params)
    return time.perf_counter() - t0


def parse_sizes(text: str) -> list[int]:
    from gpukit.commands import parse_sizes as parse
    return list(parse(text))


def main(argv=None) -> int:
    from gpukit import machine
    from gpukit.analysis.noise import others_share
    from gpukit.kernels import load

    kernel = load("polyval")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=5, help="interleaved pairs of runs (5)")
    p.add_argument("--sizes", help="sizes (default: polyval's default sweep)")
    p.add_argument("--k", help="comma list of k (default: the default sweep's, 2 and 64)")
    p.add_argument("--fast", action="store_true", help="half as many pyperf worker processes")
    p.add_argument("--copies", type=int, default=6, help="array copies in the placement check")
    p.add_argument("--quiet-share", type=float, default=0.3, metavar="SHARE",
                   help="before each pair, wait until other work takes less than this share of "
                        "the machine's CPU time (default 0.3; 1 waits never)")
    p.add_argument("--max-wait-s", type=float, default=300.0,
                   help="wait at most this long for a quiet machine before a pair (300)")
    p.add_argument("--name", default="dev-2core-epyc", help="machine name for the results file")
    p.add_argument("-o", "--output", help="results JSON (default: "
                   "bench/results/pyperf-agreement-NAME.json)")
    args = p.parse_args(argv)
    sizes = parse_sizes(args.sizes) if args.sizes else list(kernel.default_sizes)
    param_sets = ([{"k": int(k)} for k in args.k.split(",")] if args.k
                  else [dict(ps) for ps in kernel.default_param_sets])
    output = Path(args.output or ROOT / "bench" / "results" /
                  f"pyperf-agreement-{args.name}.json")

    result = {
        "benchmark": "pyperf-agreement",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine_name": args.name,
        "machine": machine.facts(),
        "pyperf": __import__("pyperf").__version__,
        "tolerance": TOLERANCE,
        "pyperf_settings": {"processes": PYPERF_PROCESSES // (2 if args.fast else 1),
                            "values": PYPERF_VALUES, "min_time_s": PYPERF_MIN_TIME_S},
        "summary": [],
        "placement": None,
        "pairs": [],
    }
    pairs = result["pairs"]
    with tempfile.TemporaryDirectory(prefix="gpukit-pyperf-") as tmp:
        work = Path(tmp)
        for i in range(args.pairs):
            waited = wait_for_quiet(args.quiet_share, args.max_wait_s) \
                if args.quiet_share < 1 else 0.0
            before = load_now()
            t0 = time.perf_counter()
            cases = []
            for params in param_sets:
                for n in sizes:
                    k = params["k"]
                    # Back to back, so both see the same machine; which goes first alternates.
                    if (i + len(cases)) % 2 == 0:
                        gk = gpukit_time(k, n, work)
                        pp = pyperf_time(k, n, work, args.fast)
                    else:
                        pp = pyperf_time(k, n, work, args.fast)
                        gk = gpukit_time(k, n, work)
                    cases.append({"k": k, "n": n, "gpukit_s": gk, "pyperf_s": pp,
                                  "ratio": gk / pp if gk else None})
            after = load_now()
            pair = {"load_before": before, "load_after": after,
                    "waited_for_quiet_s": waited, "wall_s": time.perf_counter() - t0,
                    "others_share": others_share(before, after), "cases": cases}
            pairs.append(pair)
            share = pair["others_share"]
            print(f"pair {i + 1}/{args.pairs}: {pair['wall_s']:.0f} s after {waited:.0f} s "
                  f"waiting, load {before['loadavg'][0]:.2f} -> {after['loadavg'][0]:.2f}, "
                  f"others {'?' if share is None else f'{share:.0%}'}; gpukit/pyperf: "
                  + " ".join(f"{c['ratio']:.3f}" if c["ratio"] else "-" for c in pair["cases"]),
                  flush=True)
            # Saved after every pair: an interrupted run keeps what it measured.
            result["summary"] = summarize(pairs, param_sets, sizes)
            save(result, output)

    print("placement check (one process, copies of the same arrays)...", flush=True)
    result["placement"] = placement(sizes, param_sets, args.copies, rounds=9)
    save(result, output)
    summary = result["summary"]
    print(f"\n{'k':>3} {'n':>9} {'gpukit':>10} {'pyperf':>10} {'ratio':>6} "
          f"{'range':>13}  placement (fastest..slowest copy)")
    place = {(r["k"], r["n"]): r for r in result["placement"]}
    for row in summary:
        r = place[(row["k"], row["n"])]
        ratio = row["median_ratio"]
        print(f"{row['k']:>3} {row['n']:>9} {_us(row['gpukit_median_s'])} "
              f"{_us(row['pyperf_median_s'])} "
              f"{ratio:6.3f} {row['min_ratio']:6.3f}..{row['max_ratio']:5.3f}  "
              f"{r['fastest_rel']:.3f}..{r['slowest_rel']:.3f}"
              f"{'' if row['agrees'] else '  OFF BY MORE THAN 5%'}" if ratio else
              f"{row['k']:>3} {row['n']:>9}  gpukit did not time it")
    bad = [row for row in summary if not row["agrees"]]
    print(f"\n{len(summary) - len(bad)} of {len(summary)} within {TOLERANCE:.0%}; "
          f"written to {output}")
    return 1 if bad else 0


def summarize(pairs, param_sets, sizes) -> list[dict]:
    """Per (k, n): both harnesses' medians over the pairs and the median of the pairs' ratios."""
    summary = []
    for params in param_sets:
        for n in sizes:
            cases = [c for pair in pairs for c in pair["cases"]
                     if c["k"] == params["k"] and c["n"] == n]
            ratios = [c["ratio"] for c in cases if c["ratio"]]
            gk = [c["gpukit_s"] for c in cases if c["gpukit_s"]]
            median = statistics.median(ratios) if ratios else None
            summary.append({"k": params["k"], "n": n, "pairs": len(ratios),
                            "gpukit_median_s": statistics.median(gk) if gk else None,
                            "pyperf_median_s": statistics.median(c["pyperf_s"] for c in cases),
                            "median_ratio": median, "min_ratio": min(ratios, default=None),
                            "max_ratio": max(ratios, default=None),
                            "agrees": median is not None and abs(median - 1) <= TOLERANCE})
    return summary


def save(result: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(output)


def _us(seconds) -> str:
    return f"{seconds * 1e6:8.1f}us" if seconds else f"{'-':>10}"


if __name__ == "__main__":
    sys.exit(main())
