"""Analysis and model: pure functions of results dicts, checked on hand-made cases, on a real CPU
run (tests/data/cpu-small.json) and on synthetic GPU cases (tests/synthetic.py, test data)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

import synthetic
from gpukit import analysis, phases, records, units
from gpukit.analysis import model
from gpukit.reporting import tables
from gpukit.analysis import Crossover, crossover

IN, COMPUTE, OUT = phases.TRANSFER_IN, phases.COMPUTE, phases.TRANSFER_OUT
BASELINE = (Path(__file__).resolve().parent.parent / "bench" / "results"
            / "compare-polyval-dev-2core-epyc.json")


def results_with(cases, cores=2, backends=None) -> dict:
    """A minimal results dict around hand-made cases."""
    names = backends or {"serial": False, "threads": False, "processes": False, "cupy": True,
                         "pycuda": True}
    return {"format": "gpukit-results", "version": 1,
            "machine": {"cores": cores, "cpu": "test", "python": "3", "gil_enabled": True,
                        "numpy": "2", "hostname": "test"},
            "sweep": {"kernel": "polyval", "param_sets": [{"k": 2}], "sizes": [],
                      "workers": [1, 2]},
            "backends": {n: {"gpu": gpu, "parallel": n in ("threads", "processes"),
                             "available": True} for n, gpu in names.items()},
            "sessions": [], "cases": cases}


# -- crossovers ----------------------------------------------------------------------------------


def test_crossover_interpolates_on_log_n_between_the_bracketing_sizes():
    # b loses 2x at 2^10 and wins 2x at 2^12: log(b/a) crosses zero half way, at 2^11.
    x = crossover({2**10: 1.0, 2**12: 1.0}, {2**10: 2.0, 2**12: 0.5})
    assert x.status == "interpolated" and (x.below, x.above) == (2**10, 2**12)
    assert x.n == pytest.approx(2**11)
    assert "interpolated" in x.text() and "2^10" in x.text() and "2^12" in x.text()


def test_a_crossover_of_cases_needs_a_win_beyond_the_noise():
    sizes = (2**14, 2**16, 2**18, 2**20)
    serial = {n: synthetic.make_case("serial/numpy", n, {COMPUTE: 1e-3 * n / 2**14}) for n in sizes}
    # threads 2x slower, 10% slower, then 5% and 4% faster: ties, as the fastest finding has it
    factors = (2.0, 1.1, 1 / 1.05, 1 / 1.04)
    threads = {n: synthetic.make_case("threads/numpy", n, {COMPUTE: 1e-3 * n / 2**14 * f},
                                      workers=2) for n, f in zip(sizes, factors)}
    assert crossover(analysis.walls(serial), analysis.walls(threads)).status == "interpolated"
    assert analysis.crossover_of_cases(serial, threads).status == "never"
    # 1.5x faster at the last two sizes is a win: from between 2^16 and 2^18.
    for n in sizes[2:]:
        threads[n] = synthetic.make_case("threads/numpy", n, {COMPUTE: 1e-3 * n / 2**14 / 1.5},
                                         workers=2)
    x = analysis.crossover_of_cases(serial, threads)
    assert x.status == "interpolated" and (x.below, x.above) == (2**16, 2**18)


def test_crossover_weights_by_the_size_of_the_gap():
    # 4x behind, then 2x ahead: log ratio 2 -> -1 crosses two thirds of the way on log n.
    x = crossover({2**10: 1.0, 2**16: 1.0}, {2**10: 4.0, 2**16: 0.5})
    assert math.log2(x.n) == pytest.approx(10 + 6 * 2 / 3)


def test_crossover_takes_the_last_change_and_the_edge_cases():
    a = {1: 1.0, 2: 1.0, 4: 1.0, 8: 1.0}
    # wins at 1, loses at 2 and 4, wins from 8: the crossover is between 4 and 8
    x = crossover(a, {1: 0.5, 2: 2.0, 4: 2.0, 8: 0.5})
    assert (x.below, x.above) == (4, 8)
    assert crossover(a, {n: 0.5 for n in a}) == Crossover("from_start", 1.0, None, 1)
    lost_last = crossover(a, {1: 0.5, 2: 0.5, 4: 0.5, 8: 2.0})
    assert lost_last.status == "never" and lost_last.won_at == (1, 2, 4)
    assert lost_last.text() == "only at n=1, 2, 4, not at the largest size"
    assert crossover(a, {n: 2.0 for n in a}).text() == "at no size in the sweep"
    assert crossover(a, {16: 1.0}).status == "no_data"


def test_fmt_n_est_says_an_interpolated_size_plainly():
    assert units.fmt_n_est(2**17) == "2^17"
    assert units.fmt_n_est(2**17.3).startswith("2^17.3 (about 161k")


# -- dominant phase and limit --------------------------------------------------------------------


def classify(case, others=(), ceilings=None, backends=None):
    data = results_with([case, *others], backends=backends)
    ceil = model.Ceilings(ceilings or {}, {k: model.LIMITS_SOURCE for k in ceilings or {}}, {})
    return analysis.limit(data, case, ceil)


def test_a_small_numpy_case_is_overhead_bound_not_memory_bound():
    # Serial NumPy at 2^10 takes 5 us where the rates alone say well under 1 us: NumPy's fixed
    # cost per call, which the model derives from the smallest size. At 2^12 it is still most
    # of the time; at 2^22 the roofline speaks again.
    cases = [synthetic.make_case("serial/numpy", n, {COMPUTE: t}, params={"k": 2})
             for n, t in ((2**10, 5e-6), (2**12, 6e-6), (2**22, 1.2e-3))]
    data = results_with(cases)
    an = analysis.analyze(data, {"figures": {"host_copy_1t_gbps": 30.0, "host_copy_all_gbps": 40.0,
                                             "host_numpy_1t_gflops": 10.0}})
    small = an.limits[model.case_key(cases[1])]
    assert small.kind == "overhead" and small.short == "overhead"
    assert "fixed cost per call" in small.text
    assert an.limits[model.case_key(cases[2])].kind in ("memory", "compute")


def test_pickle_transfer_bound_with_percent_of_ceiling():
    case = synthetic.make_case("processes/numpy/pickle", 2**20,
                               {IN: 6e-3, COMPUTE: 1e-3, OUT: 3e-3}, workers=2)
    lim = classify(case, ceilings={"pickle_gbps": 1.0, "process_dispatch_s": 1e-4})
    assert (lim.kind, lim.dominant) == ("transfer", IN)
    gbps = (4 * 2**20 + 12 + 4 * 2**20) / 9e-3 / 1e9
    assert lim.percent == pytest.approx(100 * gbps)
    assert "pickling" in lim.text and "shared memory" in lim.text


def test_gil_bound_threads_need_a_one_thread_reference():
    two = synthetic.make_case("threads/python", 2**16, {COMPUTE: 0.10}, workers=2)
    one = synthetic.make_case("threads/python", 2**16, {COMPUTE: 0.11}, workers=1)
    lim = classify(two, [one])
    assert lim.kind == "GIL" and "1.10x" in lim.text


def test_dispatch_bound_when_pool_overhead_dominates():
    case = synthetic.make_case("threads/numpy", 2**10, {COMPUTE: 60e-6}, workers=2)
    lim = classify(case, ceilings={"thread_dispatch_s": 25e-6, "host_numpy_1t_gflops": 10.0})
    assert lim.kind == "dispatch"
    assert "2 tasks costs about 50 us, about 83% of its 60 us" in lim.text
    # Measured on another day, the round trips can cost more than this run took in all.
    lim = classify(case, ceilings={"thread_dispatch_s": 40e-6, "host_numpy_1t_gflops": 10.0})
    assert "costs about 80 us, nearly all of its 60 us" in lim.text


def test_memory_vs_compute_bound_by_intensity_against_the_ridge():
    ceilings = {"host_numpy_1t_gflops": 10.0, "host_copy_1t_gbps": 20.0}   # ridge 0.5 FLOP/byte
    low = synthetic.make_case("serial/numpy", 2**20, {COMPUTE: 1e-3}, params={"k": 1})
    high = synthetic.make_case("serial/numpy", 2**20, {COMPUTE: 1e-2}, params={"k": 64})
    assert classify(low, ceilings=ceilings).kind == "memory"
    lim = classify(high, ceilings=ceilings)
    assert lim.kind == "compute"
    assert lim.percent == pytest.approx(100 * (2 * 64 * 2**20 / 1e-2 / 1e9) / 10.0)


def test_a_case_above_its_ceiling_names_its_regime():
    ceilings = {"host_numpy_1t_gflops": 10.0, "host_copy_1t_gbps": 20.0}
    # k=1 at 2^16: 8 bytes a point in 10 us is 52 GB/s, well above a 20 GB/s copy out of cache;
    # its 512 KiB stay in cache between repetitions.
    fast = synthetic.make_case("serial/numpy", 2**16, {COMPUTE: 10e-6}, params={"k": 1})
    lim = classify(fast, ceilings=ceilings)
    assert lim.kind == "memory" and lim.percent > 200
    assert lim.regime == "in cache" and lim.short.endswith("% in cache")
    assert "stay in cache between repetitions" in lim.text and "beyond every cache" in lim.text
    usual = synthetic.make_case("serial/numpy", 2**20, {COMPUTE: 1e-3}, params={"k": 1})
    assert classify(usual, ceilings=ceilings).regime is None
    # A compute rate above its ceiling: 128 MiB cannot stay in cache, and the loop is the one
    # `limits` times: the same regime, so the ceiling came out low.
    big = synthetic.make_case("serial/numpy", 2**24, {COMPUTE: 0.15}, params={"k": 64})
    lim = classify(big, ceilings=ceilings)
    assert lim.kind == "compute" and lim.percent > 130
    assert lim.regime == "ceiling low" and "gpukit limits --refresh" in lim.text
    assert "in cache" not in lim.text


def test_the_machines_caches_say_which_cache_a_case_stays_in():
    caches = {"l1d_bytes": 48 * 2**10, "l2_bytes": 2**20, "l3_bytes": 32 * 2**20}
    ceilings = {"host_numpy_1t_gflops": 10.0, "host_copy_1t_gbps": 20.0}
    # k=64 at 2^16: 512 KiB, in L2, where `limits` rates a core on 2 MiB blocks (in L3 here).
    small = synthetic.make_case("serial/numpy", 2**16, {COMPUTE: 0.6e-3}, params={"k": 64})
    data = results_with([small])
    data["machine"]["caches"] = caches
    ceil = model.Ceilings(ceilings, dict.fromkeys(ceilings, model.LIMITS_SOURCE), {})
    lim = analysis.limit(data, small, ceil)
    assert lim.kind == "compute" and lim.percent > 100
    assert lim.regime == "in cache" and "1 MiB L2 cache" in lim.text
    # 64 MiB moved at 2^23: beyond the 32 MiB L3, so above the memory ceiling it is not cache.
    big = synthetic.make_case("serial/numpy", 2**23, {COMPUTE: 2e-3}, params={"k": 1})
    data = results_with([big])
    data["machine"]["caches"] = caches
    assert analysis.limit(data, big, ceil).regime == "ceiling low"


def test_pickling_above_its_one_stream_ceiling_on_two_workers():
    case = synthetic.make_case("processes/numpy/pickle", 2**20, {IN: 3e-3, COMPUTE: 1e-3,
                                                                 OUT: 2e-3}, workers=2)
    lim = classify(case, ceilings={"pickle_gbps": 1.0, "process_dispatch_s": 1e-4})
    assert lim.percent > 100 and lim.regime == "2 at once"
    assert "one stream's" in lim.text


def test_no_figure_of_the_committed_baseline_passes_its_ceiling_unnamed():
    data = json.loads(BASELINE.read_text())
    an = analysis.analyze(data)
    over = [lim for lim in an.limits.values()
            if lim.percent is not None and round(lim.percent) > 100]
    assert over  # the 2-core run has them: pickling at 171%, NumPy at 129% of its rate
    for lim in over:
        assert lim.regime and lim.short.endswith(lim.regime), lim
        assert "Above 100%: " in lim.text
    for finding in an.findings:
        if finding.topic != "scaling":
            continue
        for label, s in finding.numbers.items():
            for w, e in zip(s["workers"], s["efficiency"]):
                if round(100 * e) > 100:
                    assert w in s["above_100"], (label, w, e)


def test_efficiency_above_100_percent_names_why():
    caches = {"l2_bytes": 2**20, "l3_bytes": 32 * 2**20}
    n = 2**17  # 1 MiB moved: half of it a worker fits the 1 MiB L2, the whole does not
    cases = [synthetic.make_case("processes/numpy/shm", n, {COMPUTE: 1.0}, workers=1),
             synthetic.make_case("processes/numpy/shm", n, {COMPUTE: 0.4}, workers=2)]
    data = results_with(cases)
    [f] = [f for f in analysis.analyze(data).findings if f.topic == "scaling"]
    assert "2: 125% one slow" in f.text and "where one worker ran slow" in f.text
    data["machine"]["caches"] = caches
    [f] = [f for f in analysis.analyze(data).findings if f.topic == "scaling"]
    assert "2: 125% in cache" in f.text and "fits its core's L2 cache" in f.text
    assert f.numbers["processes/numpy/shm"]["above_100"] == {2: "in cache"}


def test_without_ceilings_the_limit_says_which_it_lacks():
    lim = classify(synthetic.make_case("serial/numpy", 2**20, {COMPUTE: 1e-3}))
    assert lim.percent is None and "gpukit limits" in lim.text


def test_gpu_launch_and_transfer_bound():
    small = synthetic.make_case("cupy/cuda/pinned", 2**10, synthetic.gpu_phases(2**10, 2, "pinned"),
                                device=True)
    large = synthetic.make_case("cupy/cuda/pageable", 2**24,
                                synthetic.gpu_phases(2**24, 2, "pageable"), device=True)
    assert classify(small, ceilings=synthetic.H100).kind == "launch"
    lim = classify(large, ceilings=synthetic.H100)
    assert lim.kind == "transfer" and "pinned host memory" in lim.text
    assert 90 < lim.percent < 110


def test_failed_cases_come_first_in_the_findings_by_variant_and_first_size():
    n = 2**12
    ok = synthetic.make_case("serial/python", n, {COMPUTE: 4e-3})
    failed = [dict(synthetic.make_case("serial/numpy", m, {COMPUTE: 1e-4}), status="failed",
                   reason=f"kernel x, numpy implementation on serial/numpy x1: boom at {m}")
              for m in (2**14, n)]
    found = analysis.analyze(results_with([ok, *failed])).findings
    assert found[0].topic == "failed" and found[0].numbers["failed"] == 2
    assert "[k=2] serial/numpy from n=2^12 (boom at 4096)" in found[0].text


def test_scaling_calls_gil_holding_threads_gil_bound_and_explains_superlinear_efficiency():
    n = 2**16
    cases = [synthetic.make_case("threads/python", n, {COMPUTE: 1.0}, workers=1),
             synthetic.make_case("threads/python", n, {COMPUTE: 0.95}, workers=2),
             synthetic.make_case("processes/numpy/shm", n, {COMPUTE: 1.0}, workers=1),
             synthetic.make_case("processes/numpy/shm", n, {COMPUTE: 0.4}, workers=2)]
    found = [f for f in analysis.analyze(results_with(cases)).findings if f.topic == "scaling"]
    assert "threads/python 1.05x on 2 at n=2^16, GIL-bound, no real gain" in found[0].text
    assert "efficiency above 100%" in found[0].text  # 2.5x on 2 processes
    # A pure-Python loop that gains 1.47x, or 1.21x, on 2 threads against one releases the
    # GIL for part of its time (a sleep, I/O, a C call): measured, not called impossible.
    for t, shown, says in ((0.68, "1.47x", "releases the GIL for about 64% of its time"),
                           (0.826, "1.21x", "holds the GIL about 65% of its time")):
        cases[1] = synthetic.make_case("threads/python", n, {COMPUTE: t}, workers=2)
        serial = synthetic.make_case("serial/python", n, {COMPUTE: 1.0})
        found = {f.topic: f for f in analysis.analyze(results_with(cases + [serial])).findings}
        assert f"threads/python {shown} on 2 at n=2^16, still gaining at 2" \
            in found["scaling"].text
        text = found["threads"].text
        assert says in text
        assert "more than the GIL should allow" not in text


def test_gil_findings_do_not_judge_from_one_thread_or_from_assumed_scaling():
    n = 2**16
    serial = synthetic.make_case("serial/python", n, {COMPUTE: 1.0})
    # One thread only: nothing can be said of the GIL.
    one = synthetic.make_case("threads/python", n, {COMPUTE: 1.01}, workers=1)
    [f] = [f for f in analysis.analyze(results_with([serial, one])).findings
           if f.topic == "threads"]
    assert "one thread only: run more threads to see the GIL" in f.text
    assert "GIL-bound" not in f.text
    # 2 and 4 threads, no one-thread run: the measured gain (1.02 -> 1.03 s) is no gain, whatever
    # perfect scaling from 2 would assume.
    cases = [serial] + [synthetic.make_case("threads/python", n, {COMPUTE: t}, workers=w)
                        for w, t in ((2, 1.02), (4, 1.03))]
    found = {f.topic: f for f in analysis.analyze(results_with(cases)).findings}
    assert "GIL-bound" in found["threads"].text
    assert "GIL-bound, no real gain" in found["scaling"].text
    assert "where no one-worker run exists" in found["scaling"].text


def test_threads_finding_says_when_one_pool_thread_already_differs_from_serial():
    n = 2**16
    cases = [synthetic.make_case("serial/numpy", n, {COMPUTE: 4e-3}),
             synthetic.make_case("threads/numpy", n, {COMPUTE: 1e-3}, workers=1),
             synthetic.make_case("threads/numpy", n, {COMPUTE: 0.8e-3}, workers=2)]
    found = [f for f in analysis.analyze(results_with(cases)).findings if f.topic == "threads"]
    assert found[0].numbers["one_thread_vs_serial"] == pytest.approx(4.0)
    assert "One pool thread alone already runs 4.00x serial" in found[0].text
    cases[1] = synthetic.make_case("threads/numpy", n, {COMPUTE: 3.9e-3}, workers=1)
    found = [f for f in analysis.analyze(results_with(cases)).findings if f.topic == "threads"]
    assert "One pool thread" not in found[0].text


NO_FIGURES = {"figures": {}, "missing": {}}


def test_threads_finding_blames_the_chunks_not_the_thread_with_several_chunks_per_worker():
    # --chunks-per-worker 4: one pool thread makes 4 calls where serial makes 1, each paying
    # the implementation's per-call costs (mandelbrot's NumPy loop runs max_iter steps a chunk).
    n = 2**16
    cases = [synthetic.make_case("serial/numpy", n, {COMPUTE: 0.55e-3}),
             synthetic.make_case("threads/numpy", n, {COMPUTE: 1e-3}, workers=1),
             synthetic.make_case("threads/numpy", n, {COMPUTE: 0.6e-3}, workers=2)]
    data = results_with(cases)
    data["sweep"]["settings"] = {"chunks_per_worker": 4}
    # No pool round trip measured: the dispatch explanation does not apply.
    [f] = [f for f in analysis.analyze(data, NO_FIGURES).findings if f.topic == "threads"]
    assert "One pool thread alone already runs 0.55x serial" in f.text
    assert "with --chunks-per-worker 4 it works through 4 chunks" in f.text
    assert "per-call costs" in f.text and f.numbers["one_thread_chunks"] == 4
    assert "is the pool thread, not the number of threads" not in f.text
    # One chunk per worker: the same work on another thread, as before.
    data["sweep"]["settings"] = {"chunks_per_worker": 1}
    [f] = [f for f in analysis.analyze(data, NO_FIGURES).findings if f.topic == "threads"]
    assert "is the pool thread, not the number of threads" in f.text and "chunks" not in f.text


def test_threads_finding_blames_the_pools_round_trip_when_it_is_most_of_the_gap():
    n = 2**12
    cases = [synthetic.make_case("serial/numpy", n, {COMPUTE: 10e-6}),
             synthetic.make_case("threads/numpy", n, {COMPUTE: 60e-6}, workers=1),
             synthetic.make_case("threads/numpy", n, {COMPUTE: 50e-6}, workers=2)]
    data = results_with(cases)
    slow_pool = {"figures": {"thread_dispatch_s": 40e-6}}
    found = [f for f in analysis.analyze(data, slow_pool).findings if f.topic == "threads"]
    assert found[0].numbers["one_thread_gap_is_dispatch"] is True
    assert "the pool's round trip per task (40 us" in found[0].text
    assert "page faults" not in found[0].text
    # A round trip far below the gap explains little of it: the other cause is named.
    fast_pool = {"figures": {"thread_dispatch_s": 5e-6}}
    found = [f for f in analysis.analyze(data, fast_pool).findings if f.topic == "threads"]
    assert "one_thread_gap_is_dispatch" not in found[0].numbers
    assert "page faults" in found[0].text and "--default-malloc" in found[0].text
    # With the allocator held steady by gpukit, page faults are not the likely cause.
    data["machine"]["malloc"] = {"allocator": "glibc 2.36", "thresholds_fixed": True}
    found = [f for f in analysis.analyze(data, fast_pool).findings if f.topic == "threads"]
    assert "may pay page faults" not in found[0].text
    assert "gpukit held the allocator steady, so it is not page faults" in found[0].text


def test_case_text_leaves_out_what_says_nothing():
    assert analysis.case_text(((("k", 2),), "threads/numpy", 2, 2**20)) == \
        "[k=2] threads/numpy x2 at n=2^20"
    assert analysis.case_text(((), "serial/numpy", 1, 1000)) == "serial/numpy at n=1000"


def test_speedups_are_against_serial_numpy_or_serial_python_for_a_kernel_without_numpy():
    n = 2**12
    py = [synthetic.make_case("serial/python", n, {COMPUTE: 4e-3}),
          synthetic.make_case("threads/python", n, {COMPUTE: 2e-3}, workers=2)]
    data = results_with(py)
    idx = analysis.index(data)
    assert analysis.speedup_vs_baseline(idx, py[1], data) == pytest.approx(2.0)
    both = [*py, synthetic.make_case("serial/numpy", n, {COMPUTE: 1e-3})]
    data = results_with(both)
    idx = analysis.index(data)
    assert analysis.speedup_vs_baseline(idx, py[1], data) == pytest.approx(0.5)


def test_mpi_finding_says_whether_splitting_pays_and_what_moving_data_costs():
    n = 2**22
    cases = [synthetic.make_case("serial/numpy", n, {COMPUTE: 10e-3}),
             synthetic.make_case("mpi/numpy", n, {IN: 1e-3, COMPUTE: 10e-3, OUT: 1e-3}, workers=1),
             synthetic.make_case("mpi/numpy", n, {IN: 1.5e-3, COMPUTE: 5e-3, OUT: 1.5e-3},
                                 workers=2)]
    data = results_with(cases, backends={"serial": False, "mpi": False})
    found = [f for f in analysis.analyze(data).findings if f.topic == "mpi"]
    assert len(found) == 1
    assert found[0].numbers["ranks"][2]["speedup"] == pytest.approx(10 / 8)
    assert found[0].numbers["ranks"][2]["transfer_share"] == pytest.approx(3 / 8)
    assert "2: 1.25x (38% scatter and gather)" in found[0].text
    assert "splitting pays, most on 2 ranks" in found[0].text


# -- the model -----------------------------------------------------------------------------------

FIGS = {"host_numpy_1t_gflops": 10.0, "host_python_1t_gflops": 0.05, "host_copy_1t_gbps": 20.0,
        "host_copy_all_gbps": 30.0, "thread_dispatch_s": 20e-6, "process_dispatch_s": 200e-6,
        "pickle_gbps": 0.5}


def predict(case, figures=FIGS, cores=2):
    data = results_with([case], cores=cores)
    ceil = model.Ceilings(dict(figures), {k: model.LIMITS_SOURCE for k in figures}, {})
    return model.predict(data, case, ceil)


def test_model_serial_takes_the_larger_of_memory_and_flops():
    n = 2**20
    low = predict(synthetic.make_case("serial/numpy", n, {COMPUTE: 1e-3}, params={"k": 1}))
    assert low.prediction.wall_s == pytest.approx((8 * n + 8) / 20e9)       # memory
    high = predict(synthetic.make_case("serial/numpy", n, {COMPUTE: 1e-2}, params={"k": 64}))
    assert high.prediction.wall_s == pytest.approx(2 * 64 * n / 10e9)        # FLOPs
    assert high.ratio == pytest.approx(1e-2 / (2 * 64 * n / 10e9))


def test_model_prices_each_pure_python_row_where_the_ceilings_have_the_figure():
    n = 2**16
    case = synthetic.make_case("serial/python", n, {COMPUTE: 1e-2}, params={"k": 2})
    plain = predict(case).prediction.phases_s[COMPUTE]
    assert plain == pytest.approx(4 * n / 0.05e9)
    rows = predict(case, {**FIGS, "host_python_row_s": 50e-9}).prediction.phases_s[COMPUTE]
    assert rows == pytest.approx(4 * n / 0.05e9 + n * 50e-9)


def test_model_threads_scale_numpy_but_not_the_gil():
    n = 2**20
    numpy = predict(synthetic.make_case("threads/numpy", n, {COMPUTE: 1e-2}, params={"k": 64},
                                        workers=4))
    # 4 workers on 2 cores: twice the rate, four dispatches
    assert numpy.prediction.phases_s[COMPUTE] == pytest.approx(2 * 64 * n / 20e9 + 4 * 20e-6)
    assert any("oversubscribed" in note for note in numpy.prediction.notes)
    python = predict(synthetic.make_case("threads/python", n, {COMPUTE: 1.0}, workers=2))
    assert python.prediction.wall_s == pytest.approx(4 * n / 0.05e9 + 2 * 20e-6)


def test_model_prices_a_fan_out_as_one_round_trip_plus_each_further_tasks_share():
    n = 2**20
    case = synthetic.make_case("processes/numpy/shm", n, {COMPUTE: 1e-3}, workers=8)
    figures = {**FIGS, "process_dispatch_extra_s": 30e-6}
    shm_in = (2 * (4 * n + 12) / 20e9)
    fanned = predict(case, figures, cores=8).prediction
    assert fanned.phases_s[IN] == pytest.approx(200e-6 + 7 * 30e-6 + shm_in)
    assert not any("fan-out" in note for note in fanned.notes)
    # Without the fan-out figure (ceilings from an older gpukit), a full round trip per task,
    # and the prediction says so.
    plain = predict(case, FIGS, cores=8).prediction
    assert plain.phases_s[IN] == pytest.approx(8 * 200e-6 + shm_in)
    assert any("fan-out not measured" in note for note in plain.notes)
    # A fan-out that adds nothing is a figure like any other, not a missing one.
    ceil = model.resolve(results_with([case], cores=8),
                         {"figures": {**FIGS, "process_dispatch_extra_s": 0.0}}, derive=False)
    pool = records.backend_traits(results_with([case]), "processes")
    assert model.dispatch_s(pool, 8, ceil) == pytest.approx(200e-6)


def test_model_rates_a_kernel_that_is_not_multiply_adds_by_its_own_serial_run():
    # 1 GFLOP/s from serial's two sizes (fixed 1 ms + FLOPs / rate), far below the 10 GFLOP/s
    # multiply-add figure that would predict every case 10x too fast.
    n1, n2 = 2**16, 2**20
    cases = [synthetic.make_case("serial/numpy", n, {COMPUTE: 1e-3 + 100.0 * n / 1e9},
                                 flops=100.0 * n, params={}) for n in (n1, n2)]
    threads = synthetic.make_case("threads/numpy", n2, {COMPUTE: 53e-3}, flops=100.0 * n2,
                                  params={}, workers=2)
    data = results_with(cases + [threads])
    data["sweep"].update(kernel="blackscholes", kernel_multiply_add=False, param_sets=[{}])
    ceil = model.resolve(data, {"figures": FIGS})
    rate, name = ceil.rate(threads)
    assert name == model.KERNEL_RATE and rate == pytest.approx(1.0)
    assert model.case_key(cases[1]) in ceil.anchors
    v = model.predict(data, threads, ceil)
    # the fixed cost, half the FLOPs at 1 GFLOP/s, and two tasks' round trips
    assert v.prediction.phases_s[COMPUTE] == pytest.approx(1e-3 + 100.0 * n2 / 2 / 1e9 + 40e-6)
    found = analysis.analyze(data, {"figures": FIGS}).findings[-1]
    assert "the kernel's arithmetic rated by its own runs, not as multiply-adds (numpy 1 GFLOP/s)" \
        in found.text
    # polyval (and results from before the sweep said) keep limits' multiply-add rate.
    data["sweep"].update(kernel="polyval")
    del data["sweep"]["kernel_multiply_add"]
    assert model.resolve(data, {"figures": FIGS}).rate(threads)[1] == "host_numpy_1t_gflops"


def test_a_kernel_rated_by_its_own_python_run_pays_no_row_cost_on_top():
    # Serial pure Python: 50 us + 1 us a row. Its own rate already holds the row cost, so the
    # stored per-row figure must not be added again (it made n=4096 1.58x too slow).
    cases = [synthetic.make_case("serial/python", n, {COMPUTE: 50e-6 + 1e-6 * n},
                                 flops=10.0 * n, params={}) for n in (1024, 4096, 16384)]
    data = results_with(cases)
    data["sweep"].update(kernel="mine", kernel_multiply_add=False, param_sets=[{}])
    ceil = model.resolve(data, {"figures": {**FIGS, "host_python_row_s": 0.6e-6}})
    v = model.predict(data, cases[1], ceil)
    assert not v.anchor and v.ratio == pytest.approx(1.0, rel=0.02)
    assert ceil.fixed_s(cases[0]) == pytest.approx(50e-6, rel=0.02)


def test_each_chunk_of_a_worker_pays_the_implementations_fixed_cost():
    # Serial at two sizes: 1 ms fixed + 1 ms per 2^16 rows; 4 chunks a worker pay 4 ms of it.
    cases = [synthetic.make_case("serial/numpy", n, {COMPUTE: 1e-3 + 1e-3 * n / 2**16},
                                 flops=1.0 * n, params={}) for n in (2**16, 2**20)]
    threads = synthetic.make_case("threads/numpy", 2**20, {COMPUTE: 20e-3}, flops=1.0 * 2**20,
                                  params={}, workers=2)
    data = results_with(cases + [threads])
    data["sweep"].update(kernel="mine", kernel_multiply_add=False, param_sets=[{}],
                         settings={"chunks_per_worker": 4})
    ceil = model.resolve(data, {"figures": FIGS})
    p = model.predict(data, threads, ceil).prediction.phases_s
    assert p[COMPUTE] == pytest.approx(4 * 1e-3 + 16e-3 / 2 + 20e-6 + 7 * 20e-6, rel=1e-3)


def test_the_model_counts_every_chunk_a_task_with_several_chunks_per_worker():
    n = 2**24
    case = synthetic.make_case("processes/numpy/pickle", n, {COMPUTE: 1e-3}, workers=2)
    curve = {"sizes_bytes": [2**20, 2**23, 2**26], "gbps": [1.0, 1.0, 0.25]}
    stored = {"figures": {**FIGS, "process_dispatch_extra_s": 50e-6}, "curves": {"pickle": curve}}
    data = results_with([case])
    data["sweep"]["settings"] = {"chunks_per_worker": 8}
    assert model.tasks(data, case) == 16
    p = model.predict(data, case, model.resolve(data, stored, derive=False)).prediction.phases_s
    # 16 tasks: one round trip and 15 fan-out shares; 4 MiB messages at 1 GB/s, not 32 MiB ones
    assert p[IN] == pytest.approx(200e-6 + 15 * 50e-6 + (4 * n + 12) / 1e9)


def test_a_gpu_kernel_that_is_not_multiply_adds_is_rated_by_its_own_device_time():
    data = synthetic.with_gpu()
    data["sweep"].update(kernel="mandelbrot", kernel_multiply_add=False)
    ceil = model.resolve(data, synthetic.h100_ceilings())
    assert ((("k", 64),), "cuda") in ceil.kernel_rates
    verdicts = model.predict_all(data, ceil)
    gpu = [v for k, v in verdicts.items() if k[1].startswith("cupy/") and not v.anchor]
    assert gpu and all(v.prediction is not None for v in gpu)
    # The synthetic device times follow the card's figures, so its own rate predicts them.
    assert sum(v.within for v in gpu) >= 0.9 * len(gpu)


def test_pickling_is_priced_at_the_rate_for_each_tasks_message_size():
    curve = {"sizes_bytes": [2**20, 2**22, 2**26], "gbps": [1.0, 2.0, 0.5]}
    ceil = model.Ceilings({"pickle_gbps": 0.5}, {"pickle_gbps": model.LIMITS_SOURCE}, {},
                          curves={"pickle": curve})
    assert ceil.pickle_gbps(2**19) == 1.0 and ceil.pickle_gbps(2**27) == 0.5
    assert ceil.pickle_gbps(2**21) == pytest.approx(2 ** 0.5)     # half way on log size
    # A figure the run derived has no curve behind it.
    derived = model.Ceilings({"pickle_gbps": 0.7}, {"pickle_gbps": "this run"}, {},
                             curves={"pickle": curve})
    assert derived.pickle_gbps(2**21) == 0.7
    n = 2**22
    case = synthetic.make_case("processes/numpy/pickle", n, {COMPUTE: 1e-3}, workers=2)
    data = results_with([case])
    stored = {"figures": FIGS, "curves": {"pickle": curve}}
    p = model.predict(data, case, model.resolve(data, stored, derive=False)).prediction.phases_s
    # two 8 MiB messages, a quarter of the way on log size from 4 MiB (2 GB/s) to 64 MiB
    assert p[OUT] == pytest.approx(4 * n / (2 * 0.25 ** 0.25 * 1e9))


def test_model_processes_pickle_and_shared_memory_transfers():
    n = 2**20
    pickle = predict(synthetic.make_case("processes/numpy/pickle", n, {COMPUTE: 1e-3}, workers=2))
    p = pickle.prediction.phases_s
    assert p[IN] == pytest.approx(2 * 200e-6 + (4 * n + 12) / 0.5e9)
    assert p[OUT] == pytest.approx(4 * n / 0.5e9)
    shm = predict(synthetic.make_case("processes/numpy/shm", n, {COMPUTE: 1e-3}, workers=2))
    assert shm.prediction.phases_s[OUT] == pytest.approx(2 * 4 * n / 20e9)   # read + write


def test_model_mpi_ranks_on_one_machine_scatter_and_gather_through_shared_memory():
    n = 2**20
    case = synthetic.make_case("mpi/numpy", n, {COMPUTE: 1e-3}, params={"k": 64}, workers=4)
    data = results_with([case], cores=4, backends={"serial": False, "mpi": False})
    ceil = model.Ceilings(dict(FIGS), {k: model.LIMITS_SOURCE for k in FIGS}, {})
    p = model.predict(data, case, ceil).prediction.phases_s
    # every byte copied once, read + write: rank 0's own chunk too (one rank still copies)
    assert p[IN] == pytest.approx(2 * (4 * n + 4 * 65) / 20e9)
    assert p[OUT] == pytest.approx(2 * 4 * n / 20e9)
    assert p[COMPUTE] == pytest.approx(2 * 64 * n / 40e9)  # four ranks at the NumPy rate
    # Across machines (a host file), the network is not measured: no prediction.
    data["sweep"]["settings"] = {"mpi_hostfile": "hosts.txt"}
    assert model.predict(data, case, ceil).prediction is None


def test_model_gpu_link_launch_and_kernel():
    n = 2**24
    v = predict(synthetic.make_case("cupy/cuda/pinned", n, synthetic.gpu_phases(n, 2, "pinned"),
                                    device=True), synthetic.H100)
    ph = v.prediction.phases_s
    assert ph[IN] == pytest.approx(9e-6 + (4 * n + 12) / 54.9e9)
    assert ph[COMPUTE] == pytest.approx(4.2e-6 + (8 * n + 12) / 2900e9)
    assert ph[OUT] == pytest.approx(9e-6 + 4 * n / 55.1e9 + (10e-6 - 4.2e-6))
    assert v.within


def test_model_bounds_a_streamed_case_by_both_copy_directions_at_once():
    n = 2**26
    case = synthetic.make_case("cupy/cuda/pinned", n, synthetic.gpu_phases(n, 2, "pinned"),
                               device=True)
    case["variant"]["options"]["streams"] = "streamed"
    one_way = predict(case, synthetic.H100).prediction.wall_s
    both = predict(case, {**synthetic.H100, "bidir_pinned_gbps": 86.6}).prediction.wall_s
    # H2D alone at 54.9 GB/s is the slowest stage; both directions together at 86.6 GB/s are slower.
    assert one_way == pytest.approx(9e-6 + (4 * n + 12) / 54.9e9 + 9e-6 + 4.2e-6)
    assert both == pytest.approx((8 * n + 12) / 86.6e9 + 9e-6 + 4.2e-6)


def test_derived_link_bandwidth_comes_from_the_largest_size_not_the_latency_case():
    # Without stored ceilings the model derives the link from the run; the latency comes from the
    # smallest size, where phase minus latency is about nothing: bytes over that was 80x too fast.
    ceil = model.resolve(synthetic.with_gpu(), None)
    for name in ("h2d_pinned_gbps", "d2h_pinned_gbps", "h2d_pageable_gbps", "d2h_pageable_gbps"):
        assert ceil.get(name) == pytest.approx(synthetic.H100[name], rel=0.1), name


def test_model_accuracy_survives_a_prediction_of_no_time():
    case = synthetic.make_case("threads/python", 2**10, {COMPUTE: 1e-4}, flops=0.0, workers=2)
    data = results_with([case])
    stored = {"figures": {"host_python_1t_gflops": 0.05, "thread_dispatch_s": 0.0}}
    an = analysis.analyze(data, stored)
    assert an.findings[-1].topic == "model"


def test_model_takes_pycudas_prepared_launch_and_its_own_synchronize_cost():
    n = 2**24
    figures = {**synthetic.H100, "launch_pycuda_sync_s": 12e-6}
    v = predict(synthetic.make_case("pycuda/cuda/pinned", n, synthetic.gpu_phases(n, 2, "pinned"),
                                    device=True), figures)
    ph = v.prediction.phases_s
    assert ph[COMPUTE] == pytest.approx(5.5e-6 + (8 * n + 12) / 2900e9)  # prepared_async_call
    assert ph[OUT] == pytest.approx(9e-6 + 4 * n / 55.1e9 + (12e-6 - 5.5e-6))


def test_model_names_the_figures_it_lacks():
    v = predict(synthetic.make_case("processes/numpy/pickle", 2**20, {COMPUTE: 1e-3}),
                {"host_numpy_1t_gflops": 10.0})
    assert v.prediction is None and set(v.needs) == {"process_dispatch_s", "pickle_gbps"}


def test_resolve_prefers_stored_figures_derives_the_rest_and_lists_what_it_lacks():
    data = synthetic.load_cpu()
    stored = {"figures": {"host_numpy_1t_gflops": 12.0}, "missing": {}}
    ceil = model.resolve(data, stored)
    assert ceil.sources["host_numpy_1t_gflops"] == model.LIMITS_SOURCE
    assert ceil.sources["pickle_gbps"].startswith("this run: processes/numpy/pickle x1")
    assert "host_copy_all_gbps" in ceil.lacking
    assert not any(name in ceil.lacking for name in synthetic.H100)   # no GPU case, no GPU need
    bare = model.resolve(data, None, derive=False)
    assert bare.values == {} and "pickle_gbps" in bare.lacking


def test_findings_on_a_real_cpu_run_have_numbers():
    data = synthetic.load_cpu()
    an = analysis.analyze(data, {"figures": {}, "missing": {}})
    topics = [f.topic for f in an.findings]
    assert topics.count("fastest") == 2 and topics[-1] == "model"
    assert {"threads", "processes", "scaling"} <= set(topics)
    lines = tables.finding_lines(data, an)
    assert lines[0].startswith("1. [k=2] fastest:")
    model_numbers = an.findings[-1].numbers
    assert model_numbers["scored"] + model_numbers["anchors"] == model_numbers["predicted"]
    assert model_numbers["lacking"] == ["host_copy_all_gbps"]


# -- synthetic GPU data ----------------------------------------------------------------------------


def test_gpu_findings_on_synthetic_h100_cases():
    data = synthetic.with_gpu()
    an = analysis.analyze(data, synthetic.h100_ceilings())
    gpu = {tuple(sorted(f.numbers)): f for f in an.findings if f.topic == "gpu"}
    assert len(gpu) >= 1
    k2, k64 = [f for f in an.findings if f.topic == "gpu"]
    # k=2: the GPU loses end to end at 2^14 and wins at 2^18 (interpolated between them); its
    # kernel alone beats the CPU from the smallest size.
    e2e = k2.numbers["end_to_end"]
    assert e2e["status"] == "interpolated" and (e2e["below"], e2e["above"]) == (2**14, 2**18)
    assert 2**14 < k2.numbers["end_to_end_crossover_n"] < 2**18
    assert k2.numbers["compute"]["status"] == "from_start"
    assert "interpolated on log n" in k2.text
    # k=64: 128 FLOPs per point, the GPU wins everywhere
    assert k64.numbers["end_to_end"]["status"] == "from_start"
    # every synthetic GPU case is predicted from the H100 figures, within 25%
    gpu_verdicts = [v for k, v in an.verdicts.items() if k[1].startswith("cupy/")]
    assert len(gpu_verdicts) == 12 and all(v.prediction is not None for v in gpu_verdicts)
    assert all(v.within for v in gpu_verdicts if v.key[3] >= 2**14)
    lim = an.limits[((("k", 2),), "cupy/cuda/pageable", 1, 2**18)]
    assert lim.kind == "transfer" and lim.dominant == IN
    fastest = [f for f in an.findings if f.topic == "fastest"][0]
    assert fastest.numbers["winners"][-1]["label"] == "cupy/cuda/pinned"


def test_roofline_and_case_rows_take_gpu_cases():
    data = synthetic.with_gpu()
    an = analysis.analyze(data, synthetic.h100_ceilings())
    rows = [r for r in tables.case_rows(data, an) if r["backend"] == "cupy"]
    assert rows and all(r["limit"] for r in rows)
    assert all(r["measured_over_predicted"] != "" for r in rows)


# -- noise tests for diff --------------------------------------------------------------------------


def test_mann_whitney_exact_and_approximate():
    # Complete separation of 5 and 5 runs: exact two-sided p = 2 / C(10, 5).
    assert analysis.mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert analysis.mann_whitney_p([1, 2, 3], [1.5, 2.5, 3.5]) > 0.5
    rng = random.Random(3)
    a = [rng.gauss(1.0, 0.05) for _ in range(60)]
    assert analysis.mann_whitney_p(a, [v * 1.2 for v in a]) < 1e-6


def test_mann_whitney_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(7)
    for n1, n2, exact in ((6, 9, True), (25, 30, False)):
        a = [rng.gauss(0, 1) for _ in range(n1)]
        b = [rng.gauss(0.7, 1) for _ in range(n2)]
        ref = stats.mannwhitneyu(a, b, alternative="two-sided",
                                 method="exact" if exact else "asymptotic").pvalue
        assert analysis.mann_whitney_p(a, b) == pytest.approx(ref, rel=1e-9)


def tight_run(labels=("serial/numpy", "serial/python", "threads/numpy", "processes/numpy/shm"),
              sizes=tuple(2**e for e in range(10, 22, 2)), jitter=0.01) -> dict:
    """One run of hand-made cases whose 8 repetitions agree within +-`jitter`."""
    cases = [synthetic.make_case(label, n, {COMPUTE: 1e-4 + 1e-9 * n * (i + 1)}, reps=8,
                                 jitter=jitter, seed=j)
             for i, label in enumerate(labels) for j, n in enumerate(sizes)]
    return results_with(cases)


def test_run_to_run_noise_of_15_percent_is_not_a_change():
    # Tight repetitions within each run, but every case moves by up to +-15% from one run to the
    # next (six of them by the full amount), as the same code does on a busy machine.
    a = tight_run()
    b = synthetic.rescaled(a, synthetic.run_to_run_noise(0.15))
    d = analysis.diff(a, b)
    moved = [c for c in d.changes if abs(math.log(c.ratio)) > math.log(1.12)]
    assert len(moved) >= 6
    assert all(c.significant for c in moved)       # the rank test alone would call them changes
    assert [c.key for c in d.changes if c.beyond_noise] == []
    assert {c.bar_from for c in moved} == {"run-to-run"}
    assert 0.15 < d.run_bar < 0.6


def test_a_2x_slowdown_stands_out_of_the_run_to_run_noise():
    a = tight_run()
    noise = synthetic.run_to_run_noise(0.15)
    b = synthetic.rescaled(a, lambda c: noise(c) * (2.0 if c["label"] == "serial/python" else 1.0))
    d = analysis.diff(a, b)
    assert {c.key[1] for c in d.changes if c.beyond_noise} == {"serial/python"}
    assert all(c.verdict == "slower" for c in d.changes if c.key[1] == "serial/python")


def test_a_change_inside_the_min_change_or_a_cases_spread_is_noise():
    a = tight_run()
    key = ((("k", 2),), "serial/numpy", 1, 2**14)
    b = synthetic.rescaled(a, lambda c: 1.08 if model.case_key(c) == key else 1.0)
    [c] = [c for c in analysis.diff(a, b).changes if c.key == key]
    assert c.significant and not c.beyond_noise and c.bar_from == "min change"
    [c] = [c for c in analysis.diff(a, b, min_change=0.05).changes if c.key == key]
    assert c.beyond_noise and c.verdict == "slower"
    # 25% slower, but B's repetitions spread by about 40%: within that case's noise
    wide = tight_run(jitter=0.4)
    b = synthetic.rescaled(wide, lambda c: 1.25 if model.case_key(c) == key else 1.0)
    [c] = [c for c in analysis.diff(wide, b).changes if c.key == key]
    assert c.bar_from == "spread" and c.bar > 0.25 and not c.beyond_noise


def test_a_change_that_moves_every_case_alike_is_not_taken_for_noise():
    a = tight_run()
    d = analysis.diff(a, synthetic.rescaled(a, lambda c: 1.3))
    assert d.run_noise == pytest.approx(0.0, abs=1e-9)
    assert all(c.verdict == "slower" for c in d.changes)


def test_run_to_run_needs_enough_cases():
    assert analysis.run_to_run([0.1] * (analysis.RUN_NOISE_MIN_CASES - 1)) is None
    assert analysis.run_to_run([0.0, 0.1] * 8) == pytest.approx(1.4826 * 0.05)


# -- fastest: no switch on a gap inside the noise --------------------------------------------------


def two_variants(gaps: list[float], jitter: float) -> dict:
    """serial/numpy and threads/numpy x2 at 2^16.., threads taking `gaps[i]` times as long at the
    i-th size. Both share each size's noise pattern (the same seed), so the ratio of their
    medians is exactly the gap and their relative spread about `jitter`."""
    cases = []
    for i, gap in enumerate(gaps):
        n = 2 ** (16 + i)
        cases.append(synthetic.make_case("serial/numpy", n, {COMPUTE: 1e-9 * n}, reps=9,
                                         jitter=jitter, seed=i))
        cases.append(synthetic.make_case("threads/numpy", n, {COMPUTE: 1e-9 * n * gap}, reps=9,
                                         workers=2, jitter=jitter, seed=i))
    return results_with(cases)


def fastest(data: dict) -> analysis.Finding:
    [f] = [f for f in analysis.all_findings(data, {"figures": {}, "missing": {}})
           if f.topic == "fastest"]
    return f


@pytest.mark.parametrize("jitter", [0.14, 0.01])
def test_fastest_does_not_flip_on_a_gap_inside_the_noise(jitter):
    # threads 6% ahead at every other size: inside a 14% spread, and under the 10% minimum
    gaps = [1.06, 0.94, 1.06, 0.94, 0.94, 1.06, 0.94, 1.06, 0.94]
    data = two_variants(gaps, jitter)
    f = fastest(data)
    assert [(w["label"], w["workers"]) for w in f.numbers["winners"]] == [("serial/numpy", 1)]
    assert f.numbers["switches"] == []
    tied = f.numbers["winners"][0]["tied"]
    assert tied[0]["label"] == "threads/numpy" and len(tied[0]["n"]) == gaps.count(0.94)
    assert "serial/numpy at every size" in f.text and "tied with threads/numpy x2" in f.text


def test_fastest_switches_once_a_variant_wins_beyond_the_noise():
    # threads 6% behind, 6% ahead (tied), then 2x ahead from 2^19 on: one switch, where it won
    data = two_variants([1.06, 0.94, 1.06, 0.5, 0.5, 0.5], jitter=0.05)
    f = fastest(data)
    assert [w["label"] for w in f.numbers["winners"]] == ["serial/numpy", "threads/numpy"]
    [switch] = f.numbers["switches"]
    assert switch["measured_n"] == 2**19 and 2**18 < switch["n"] < 2**19
    assert "threads/numpy x2 from n≈2^18.1" in f.text


def test_fastest_leaves_out_the_size_an_interrupted_run_stopped_inside():
    # serial wins at every size; at the last, only threads ran before the interrupt
    data = two_variants([1.5, 1.5, 1.5], jitter=0.01)
    last = max(c["n"] for c in data["cases"])
    data["cases"] = [c for c in data["cases"]
                     if not (c["n"] == last and c["label"] == "serial/numpy")]
    data.update(complete=False, note="interrupted")
    f = fastest(data)
    assert [w["label"] for w in f.numbers["winners"]] == ["serial/numpy"]
    assert f"left out, where the interrupted run stopped: n={units.fmt_n(last)}" in f.text
    # The same data from a complete run: serial ended there, threads is fastest at that size.
    data["complete"] = True
    assert [w["label"] for w in fastest(data).numbers["winners"]] == ["serial/numpy",
                                                                      "threads/numpy"]


def test_quick_ceilings_are_called_rough():
    data = synthetic.load_cpu()
    stored = {"figures": {"host_numpy_1t_gflops": 12.0}, "missing": {}, "settings": {"quick": True}}
    an = analysis.analyze(data, stored)
    assert an.ceilings.rough and "--quick (rough" in an.findings[-1].text
    assert "host_numpy_1t_gflops = 12 GFLOP/s (limits --quick: rough)" \
        in tables.ceiling_lines(data, an)


def _mpi_then_serial(failed_reason="mpi/numpy x2: ranks hung past 1 s"):
    """mpi x2 twice as fast as serial at 2^20; at 2^22 its case failed (a timeout, say)."""
    cases = []
    for n in (2**20, 2**22):
        cases.append(synthetic.make_case("serial/numpy", n, {COMPUTE: 1e-8 * n}, reps=5))
        cases.append(synthetic.make_case("mpi/numpy", n, {COMPUTE: 0.5e-8 * n}, reps=5,
                                         workers=2))
    cases[-1].update(status="failed", reason=failed_reason)
    backends = {"serial": False, "mpi": False}
    data = results_with(cases, backends=backends)
    data["backends"]["mpi"]["parallel"] = True
    return data


def test_fastest_leaves_out_a_size_where_a_case_failed_instead_of_calling_a_crossover():
    f = fastest(_mpi_then_serial())
    assert [w["label"] for w in f.numbers["winners"]] == ["mpi/numpy"]
    assert f.numbers["switches"] == []
    assert "serial/numpy from" not in f.text
    assert "mpi/numpy x2 at every size compared (n=2^20)" in f.text
    assert "left out, where a case failed: n=2^22 (mpi/numpy x2)" in f.text
    # Sizes after a failure, which the runner skips because a smaller one failed, are as
    # unknown as the failed one.
    data = _mpi_then_serial()
    for n in (2**24,):
        data["cases"].append(synthetic.make_case("serial/numpy", n, {COMPUTE: 1e-8 * n}, reps=5))
        data["cases"].append(dict(synthetic.make_case("mpi/numpy", n, {COMPUTE: 0.0}, workers=2),
                                  status="skipped", reason="a smaller size failed"))
    assert "left out, where a case failed: n=2^22, 2^24 (mpi/numpy x2)" in fastest(data).text


def test_fastest_takes_a_case_skipped_by_the_run_limit_as_slower_and_one_never_run_as_absent():
    data = _mpi_then_serial()
    data["cases"][-1].update(status="skipped", reason="skipped: predicted 3 s per run from "
                                                      "n=1048576 > limit 0.25 s")
    f = fastest(data)
    assert [w["label"] for w in f.numbers["winners"]] == ["mpi/numpy", "serial/numpy"]
    assert "left out" not in f.text
    # But if what ran there took longer than the limit too, the cut one may have been faster.
    data["sweep"]["run_limit_s"] = 0.01   # serial at 2^22 took 42 ms
    f = fastest(data)
    assert [w["label"] for w in f.numbers["winners"]] == ["mpi/numpy"]
    assert ("left out, where the run limit stopped other variants and what ran took longer "
            "than the limit: n=2^22") in f.text
    # A variant that failed wherever it was tried hides no crossover, but is named.
    data = _mpi_then_serial()
    for c in data["cases"]:
        if c["label"] == "mpi/numpy":
            c.update(status="failed", reason="session did not start: no mpiexec")
    f = fastest(data)
    assert "serial/numpy at every size" in f.text
    assert "mpi/numpy x2 failed wherever it was tried" in f.text
    # Serial failed where mpi alone ran: left out, and the mpi finding has no size to compare.
    data = _mpi_then_serial()
    data["cases"][0].update(status="failed", reason="boom")
    data["cases"][-1].update(status="ok")
    found = {f.topic: f for f in analysis.all_findings(data, {"figures": {}, "missing": {}})}
    assert "left out, where a case failed: n=2^20 (serial/numpy)" in found["fastest"].text
    assert "mpi/numpy x2 at every size compared (n=2^22)" in found["fastest"].text
