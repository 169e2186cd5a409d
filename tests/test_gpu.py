"""The CuPy and PyCUDA backends on a real GPU, through the kernel and backend APIs directly.

Every test here carries the `gpu` marker and skips, with the backend's own reason, where the
backend cannot run (no library, no driver, no device). The benchmark targets (streamed speedup,
pinned copies against the ceilings) are bench/gpu_bench.py's, not timed tests; the two timing
agreements here (gpukit's kernel time against cupyx.profiler.benchmark's, CuPy's against
PyCUDA's) are about measuring right, and hold on any card.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from gpukit import backends, kernels, phases
from gpukit.backends import cuda_common as cc
from gpukit.backends.cuda_common import MEMORY_KINDS
from gpukit.errors import BackendUnavailable, UsageError

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parent.parent

GPU_BACKENDS = ("cupy", "pycuda")
# The variants by name: the two memory kinds on one stream, and pinned chunks on several.
KINDS = (*MEMORY_KINDS, cc.STREAMED)


def backend_class(name):
    cls = backends.get(name)
    try:
        cls.check_available()
    except BackendUnavailable as exc:
        pytest.skip(f"{name}: {exc}")
    return cls


def open_session(name, kind, settings=None):
    """A session of backend `name`: kind is pageable, pinned (one stream) or streamed."""
    cls = backend_class(name)
    variant = next(v for v in cls.variants(kernels.load("polyval"))
                   if (cc.is_streamed(v) if kind == cc.STREAMED
                       else v.option("memory") == kind and not cc.is_streamed(v)))
    session = cls(variant, 1, settings)
    return session, session.open()


@pytest.fixture
def polyval():
    return kernels.load("polyval")


@pytest.fixture(scope="module", params=[(b, m) for b in GPU_BACKENDS for m in KINDS],
                ids=lambda p: "-".join(p))
def session(request):
    """One open session per backend variant, shared by the tests of this module."""
    name, kind = request.param
    session, _startup = open_session(name, kind)
    yield session
    session.close()


def solve(session, kernel, n, k, seed=0):
    params = kernel.resolve_params({"k": k})
    inputs = kernel.make_inputs(n, params, seed=seed)
    session.prepare(kernel, params, inputs)
    try:
        out, timing = session.run()
        out = {name: a.copy() for name, a in out.items()}
    finally:
        session.release()
    return params, inputs, out, timing


@pytest.mark.parametrize("k", [1, 7, 300])
@pytest.mark.parametrize("n", [1, 3, 1000, 4097])
def test_matches_reference(session, polyval, n, k):
    params, inputs, out, _timing = solve(session, polyval, n, k, seed=n + k)
    check = polyval.check(out, polyval.reference(inputs, params), inputs, params)
    assert check.ok, check


OTHER_KERNELS = {"blackscholes": {}, "mandelbrot": {"max_iter": 200}, "nbody": {}}


@pytest.mark.parametrize("name", [*OTHER_KERNELS, "examples/my_kernel.py:Saxpy"])
def test_every_kernel_matches_its_reference(session, name):
    # The other kernels' shapes of work: two outputs (blackscholes), int32 output (mandelbrot),
    # a whole input that is also the split one (nbody: never streamed), a user's CUDA string.
    spec = str(ROOT / name) if name.startswith("examples/") else name
    kernel = kernels.load(spec)
    if cc.is_streamed(session.variant) and not cc.chunkable(kernel):
        pytest.skip(f"{kernel.name} has no streamed variant")
    params = kernel.resolve_params(OTHER_KERNELS.get(name, {}))
    for n in (1, 1001):
        inputs = kernel.make_inputs(n, params, seed=n)
        session.prepare(kernel, params, inputs)
        try:
            out = {k: a.copy() for k, a in session.run()[0].items()}
        finally:
            session.release()
        check = kernel.check(out, kernel.reference(inputs, params), inputs, params)
        assert check.ok, (n, check)


def test_repeated_runs_give_the_same_result(session, polyval):
    params = polyval.resolve_params({"k": 33})
    inputs = polyval.make_inputs(50_001, params, seed=5)
    session.prepare(polyval, params, inputs)
    try:
        first = session.run()[0]["y"].copy()
        again = session.run()[0]["y"]
    finally:
        session.release()
    assert np.array_equal(first.view(np.uint32), again.view(np.uint32))


def test_phase_timings(session, polyval):
    # n = 2^24, k = 256: 64 MiB each way and about 8.6 GFLOP, so every phase takes far longer
    # than a launch on any current card, and the streamed variant cuts x into 8 chunks.
    n, k = 1 << 24, 256
    params = polyval.resolve_params({"k": k})
    inputs = polyval.make_inputs(n, params, seed=1)
    prepared = session.prepare(polyval, params, inputs)
    try:
        timings = [session.run()[1] for _ in range(3)]
    finally:
        session.release()
    l2_bytes = session.device.l2_bytes()
    device_bytes = prepared.facts["device_bytes"]
    for t in timings:
        assert set(t.phases_s) == set(phases.RUN_PHASES)
        assert t.device_s == t.phases_s
        if cc.is_streamed(session.variant):
            extra = t.extra
            assert all(v >= 0 for v in t.phases_s.values()), t.phases_s
            assert math.isclose(sum(t.phases_s.values()), extra["end_to_end_s"], rel_tol=1e-9)
            assert math.isclose(extra["host_enqueue_s"] + extra["host_wait_s"], t.wall_s,
                                rel_tol=1e-9, abs_tol=1e-9)
            assert extra["chunks"] == 8  # 64 MiB of x in 8 MiB chunks
        else:
            assert all(v > 0 for v in t.phases_s.values()), t.phases_s
            host = t.extra["host_phases_s"]
            assert set(host) == set(phases.RUN_PHASES)
            assert math.isclose(sum(host.values()), t.wall_s, rel_tol=1e-9, abs_tol=1e-9)
            assert "held_replay" not in t.extra  # milliseconds of device time: nothing to hold
        # The events lie inside the host's window: allow a little for two clocks.
        assert t.wall_s >= 0.95 * sum(t.phases_s.values()) - 20e-6, t
        assert t.extra["launch_bound"] is False
        assert 0 < t.extra["empty_launch_s"] < t.device_s[phases.COMPUTE] / 10
        # Compute-only runs exactly where the problem could sit in L2 (this card's own size).
        small = device_bytes <= cc.COMPUTE_ONLY_MAX_L2 * l2_bytes
        assert ("compute_only_runs_s" in t.extra) == small, (device_bytes, l2_bytes)


def test_small_one_stream_runs_report_what_the_device_spent(polyval):
    # A 4 KiB problem: the GPU does each step in microseconds, faster than Python issues the
    # next, so the held replay's phases are what the device spent and the unheld ones more.
    params = polyval.resolve_params({"k": 2})
    for name in GPU_BACKENDS:
        session, _ = open_session(name, "pinned")
        try:
            session.prepare(polyval, params, polyval.make_inputs(1024, params))
            timing = [session.run()[1] for _ in range(3)][-1]  # the first runs warm the calls
        finally:
            session.close()
        extra = timing.extra
        assert extra["held_replay"]["queue_full"] is True, extra
        assert sum(timing.phases_s.values()) <= sum(extra["unheld_phases_s"].values()) * 1.05
        assert all(v > 0 for v in timing.phases_s.values())


def test_cupy_and_pycuda_agree_bitwise(polyval):
    # The same source built by NVRTC and by nvcc: the same instructions, so the same bits.
    results = {}
    for name in GPU_BACKENDS:
        session, _ = open_session(name, "pageable")
        try:
            for k in (1, 300):
                results[name, k] = solve(session, polyval, 100_003, k, seed=9)[2]["y"]
        finally:
            session.close()
    for k in (1, 300):
        a, b = results["cupy", k], results["pycuda", k]
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), \
            f"k={k}: {np.count_nonzero(a.view(np.uint32) != b.view(np.uint32))} points differ"


@pytest.mark.parametrize("memory", KINDS)
@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_startup_steps_and_facts(polyval, name, memory):
    session, startup = open_session(name, memory)
    try:
        assert set(startup.steps_s) == {"context"} and startup.steps_s["context"] > 0
        # Created once before any session (open_session asks check_available first).
        assert startup.facts["cuda_context_s"] > 0
        assert startup.facts["cuda_context_by"] in GPU_BACKENDS
        params = polyval.resolve_params({"k": 4})
        inputs = polyval.make_inputs(10_000, params)
        first = session.prepare(polyval, params, inputs)
        session.release()
        second = session.prepare(polyval, params, inputs)
        session.release()
    finally:
        session.close()
    expected = {"compile", "alloc", "first_launch"} | ({"pin"} if memory != "pageable" else set())
    assert set(first.steps_s) == expected
    assert set(second.steps_s) == expected - {"compile", "first_launch"}
    assert first.facts["compile_cache"] in ("hit", "miss", "unknown", "disabled")
    assert first.facts["registers"] > 0
    assert first.facts["local_bytes"] == 0  # nothing spilled
    assert first.facts["device_bytes"] == 4 * 10_000 * 2 + 4 * 5
    # Cold (no cache) and warm (cache hit) compiles, measured once per process.
    assert first.facts["compile_cold_s"] > 0 and first.facts["compile_warm_s"] > 0
    assert first.facts["compile_figures"] in ("measured in this session",
                                              "from earlier in this process")
    assert first.facts["compile_warm_cache"] in ("hit", "disabled")
    assert 0 < first.facts["empty_launch_s"] < 1e-3
    assert 0 < first.facts["empty_launch_host_s"] < 1e-3
    assert 0 < first.facts["launch_to_launch_s"] <= 1.5 * first.facts["empty_launch_s"]
    assert first.facts["empty_launch_queue_full"] is True
    assert first.facts["l2_flush_bytes"] == cc.FLUSH_L2_MULTIPLE * startup.facts["l2_bytes"]


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_check_available_reports_the_device(name):
    facts = backend_class(name).check_available()
    for key in ("device", "compute_capability", "driver", "runtime", "memory_bytes"):
        assert facts[key], key


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_pageable_runs_return_new_arrays_and_pinned_runs_reuse_theirs(polyval, name):
    for memory in MEMORY_KINDS:
        session, _ = open_session(name, memory)
        try:
            params = polyval.resolve_params({"k": 2})
            session.prepare(polyval, params, polyval.make_inputs(1000, params))
            a, b = session.run()[0]["y"], session.run()[0]["y"]
            assert (a is b) == (memory == "pinned")
        finally:
            session.close()


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_refuses_a_problem_larger_than_free_memory(polyval, name, monkeypatch):
    session, _ = open_session(name, "pageable")
    try:
        if name == "cupy":
            import cupy
            total = cupy.cuda.runtime.memGetInfo()[1]
            monkeypatch.setattr(cupy.cuda.runtime, "memGetInfo", lambda: (1024, total))
        else:
            import pycuda.driver as cuda
            total = cuda.Device(0).total_memory()
            monkeypatch.setattr(cuda, "mem_get_info", lambda: (1024, total))
        params = polyval.resolve_params({"k": 2})
        # 800 kB: far more than the 1 kB "free" (plus whatever CuPy's pool holds after release).
        with pytest.raises(UsageError, match="of GPU memory but only"):
            session.prepare(polyval, params, polyval.make_inputs(100_000, params))
    finally:
        session.close()


def test_pycuda_leaves_the_threads_context_as_it_found_it(polyval):
    backend_class("pycuda")
    cupy = pytest.importorskip("cupy")
    backend_class("cupy")
    cupy.cuda.Device(0).use()
    before = cupy.cuda.driver.ctxGetCurrent()
    session, _ = open_session("pycuda", "pinned")
    try:
        solve(session, polyval, 1000, 3)
        assert cupy.cuda.driver.ctxGetCurrent() == before
    finally:
        session.close()
    assert cupy.cuda.driver.ctxGetCurrent() == before
    # CuPy still works in the context PyCUDA shared.
    assert int(cupy.arange(10).sum()) == 45


# The polyval kernel against this GPU's own ceilings, both measured here with CuPy: a
# device-to-device cudaMemcpy (bytes read + written) and a float32 FMA kernel with 8 independent
# chains per thread (as in shared/CEILINGS.md). Targets: >= 85% of copy bandwidth at k=1 and
# >= 90% of the FMA rate at k=4096, at n = 2**26.

FMA_PEAK_SOURCE = r"""
extern "C" __global__ void fma_peak(float* out, int iterations) {
    float a[8];
    for (int j = 0; j < 8; ++j) a[j] = threadIdx.x * 1e-7f + j;
#pragma unroll 16
    for (int i = 0; i < iterations; ++i) {
#pragma unroll
        for (int j = 0; j < 8; ++j) a[j] = __fmaf_ieee_rn(a[j], 0.999f, 1e-3f);
    }
    float s = 0.0f;
    for (int j = 0; j < 8; ++j) s += a[j];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}
"""


def best_event_time_s(cupy, enqueue, repeats=5):
    stream = cupy.cuda.Stream()
    times = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        with stream:
            start.record(stream)
            enqueue(stream)
            end.record(stream)
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) * 1e-3)
    return min(times)


def polyval_compute_s(kernel, k, n, repeats=3):
    session, _ = open_session("cupy", "pinned")
    try:
        params = kernel.resolve_params({"k": k})
        session.prepare(kernel, params, kernel.make_inputs(n, params))
        return min(session.run()[1].phases_s[phases.COMPUTE] for _ in range(repeats))
    finally:
        session.close()


def test_polyval_kernel_reaches_its_ceilings(polyval):
    backend_class("cupy")
    import cupy
    n = 1 << 26

    half_gib = 1 << 29
    src, dst = cupy.empty(half_gib, dtype=cupy.uint8), cupy.empty(half_gib, dtype=cupy.uint8)
    copy_s = best_event_time_s(cupy, lambda s: cupy.cuda.runtime.memcpyAsync(
        dst.data.ptr, src.data.ptr, half_gib, cupy.cuda.runtime.memcpyDeviceToDevice, s.ptr))
    src = dst = None  # 1 GiB back before the polyval runs
    cupy.get_default_memory_pool().free_all_blocks()
    copy_bps = 2 * half_gib / copy_s

    props = cupy.cuda.runtime.getDeviceProperties(0)
    blocks, threads, iterations = props["multiProcessorCount"] * 8, 256, 1 << 14
    fma = cupy.RawKernel(FMA_PEAK_SOURCE, "fma_peak")
    out = cupy.empty(blocks * threads, dtype=cupy.float32)
    fma_s = best_event_time_s(cupy, lambda s: fma((blocks,), (threads,),
                                                  (out, np.int32(iterations))))
    fma_flops = 2 * 8 * iterations * blocks * threads / fma_s

    memory_bps = 8 * n / polyval_compute_s(polyval, 1, n)
    compute_flops = 2 * 4096 * n / polyval_compute_s(polyval, 4096, n)
    report = (f"k=1: {memory_bps / 1e12:.2f} TB/s of copy {copy_bps / 1e12:.2f} TB/s "
              f"({memory_bps / copy_bps:.0%}); k=4096: {compute_flops / 1e12:.1f} TFLOP/s "
              f"of FMA {fma_flops / 1e12:.1f} TFLOP/s ({compute_flops / fma_flops:.0%})")
    print(report)
    assert memory_bps >= 0.85 * copy_bps, report
    assert compute_flops >= 0.90 * fma_flops, report


# -- the streamed variant, small problems, and timing agreement ---------------------------


@pytest.mark.parametrize("n, chunks, align", [
    (1, 3, None), (4097, 3, None), (100_003, 7, None), (100_003, 7, 1), (1_000_001, 64, 3),
    (3_000_017, None, None)])
@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_streamed_matches_reference_at_odd_sizes_and_chunk_counts(polyval, name, n, chunks, align):
    # align 1 and 3: chunk starts off the 16-byte grid, so the kernel takes its scalar path on
    # offset pointers; the default keeps them on 256 bytes.
    settings = {"streams": 4}
    if chunks is not None:
        settings["stream_chunks"] = chunks
    if align is not None:
        settings["stream_align_rows"] = align
    session, _ = open_session(name, cc.STREAMED, settings)
    try:
        for k in (1, 7, 300):
            params, inputs, out, timing = solve(session, polyval, n, k, seed=n + k)
            check = polyval.check(out, polyval.reference(inputs, params), inputs, params)
            assert check.ok, (k, check)
            extra = timing.extra
            assert sum(extra["chunk_rows"]) == n
            assert extra["overlap_hidden_s"] >= 0 and extra["idle_s"] >= 0
            assert 0 <= extra["overlap_hidden_share"] < 1
            assert all(v >= 0 for v in extra["busy_s"].values())
            assert math.isclose(sum(timing.phases_s.values()), extra["end_to_end_s"],
                                rel_tol=1e-6)
    finally:
        session.close()


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_streamed_overlap_hides_copies_on_a_transfer_bound_case(polyval, name):
    # 64 MiB each way in 8 chunks, k=2: copies dominate, and the two directions overlap.
    session, _ = open_session(name, cc.STREAMED, {"stream_chunks": 8})
    params = polyval.resolve_params({"k": 2})
    session.prepare(polyval, params, polyval.make_inputs(1 << 24, params))
    try:
        runs = [session.run()[1] for _ in range(5)]
    finally:
        session.close()
    share = statistics.median(r.extra["overlap_hidden_share"] for r in runs)
    assert share > 0.2, [r.extra for r in runs]


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_tiny_problems_are_marked_launch_bound(polyval, name):
    session, _ = open_session(name, "pinned")
    try:
        _params, _inputs, _out, timing = solve(session, polyval, 1000, 1)
    finally:
        session.close()
    assert timing.extra["launch_bound"] is True, timing.extra
    assert timing.extra["compute_only_s"] > 0


def median_compute_s(name, n, k, runs=21):
    """Median compute-phase event time of the pinned one-stream variant at (n, k)."""
    polyval = kernels.load("polyval")
    session, _ = open_session(name, "pinned", {"compute_only": False})
    try:
        params = polyval.resolve_params({"k": k})
        session.prepare(polyval, params, polyval.make_inputs(n, params))
        session.run()  # warm-up
        return statistics.median(session.run()[1].device_s[phases.COMPUTE] for _ in range(runs))
    finally:
        session.close()


def test_kernel_time_agrees_with_cupyx_profiler_benchmark(polyval):
    # The same launch (function, grid, block, arguments) timed by CuPy's own benchmark helper,
    # at a size large enough for a stable time (tens of microseconds).
    backend_class("cupy")
    import cupy
    from cupyx.profiler import benchmark

    from gpukit.backends.cupy_backend import NVRTC_OPTIONS
    n, k = 1 << 24, 64
    gpukit_s = median_compute_s("cupy", n, k)

    params = polyval.resolve_params({"k": k})
    inputs = polyval.make_inputs(n, params)
    function = cupy.RawModule(code=polyval.cuda_source(),
                              options=NVRTC_OPTIONS).get_function("polyval")
    x, c = cupy.asarray(inputs.split["x"]), cupy.asarray(inputs.whole["c"])
    y = cupy.empty(n, dtype=cupy.float32)
    launch = polyval.cuda_launch(n, params)
    args = (x, c, y, np.int64(n), np.int32(k))
    result = benchmark(lambda: function((launch.grid,), (launch.block,), args),
                       n_repeat=100, n_warmup=10)
    bench_s = float(np.median(result.gpu_times))
    report = f"gpukit {gpukit_s * 1e6:.1f} us, cupyx.profiler.benchmark {bench_s * 1e6:.1f} us"
    print(report)
    assert abs(gpukit_s / bench_s - 1) <= 0.05, report


def test_cupy_and_pycuda_kernel_times_agree(polyval):
    backend_class("cupy")
    backend_class("pycuda")
    for n, k in ((1 << 24, 64), (1 << 24, 1024)):
        times = {name: median_compute_s(name, n, k) for name in GPU_BACKENDS}
        report = ", ".join(f"{name} {t * 1e6:.1f} us" for name, t in times.items())
        print(f"n={n} k={k}: {report}")
        assert abs(times["pycuda"] / times["cupy"] - 1) <= 0.05, report


LAZY = ROOT / "tests" / "data" / "lazy_kernel.py"


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_rows_a_kernel_leaves_alone_are_unwritten_not_a_freed_buffers_results(name, tmp_path):
    # Device outputs start as 0xFF bytes (NaN): half an output must fail, even where the
    # allocator hands back the block of an earlier, correct case of the same size.
    lazy = kernels.load(f"{LAZY}:WritesHalf")
    cls = backend_class(name)
    variant = next(v for v in cls.variants(lazy) if v.option("memory") == "pinned"
                   and not cc.is_streamed(v))
    session = cls(variant, 1)
    session.open()
    try:
        params = lazy.resolve_params({})
        inputs = lazy.make_inputs(1 << 16, params)
        session.prepare(lazy, params, inputs)
        out, _timing = session.run()
        check = lazy.check(out, lazy.reference(inputs, params), inputs, params)
        assert not check.ok and "NaN or inf (unwritten?)" in check.detail
    finally:
        session.close()
