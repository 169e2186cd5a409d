"""The GPU backend's own logic, over both device adapters (CuPy's and PyCUDA's), run against the
small fakes of the two libraries in tests/gpu_fakes.py: no GPU and neither library is needed.

The fakes run copies with NumPy and kernels as their real CUDA C built for the host, and keep a
device clock (every stream a queue, one engine per kind of work), so the tests check what the
backend does with the libraries (calls on the streams, one synchronize per run, events, offset
pointers, context push/pop, the memory check) and the phase and overlap arithmetic on a
schedule worked out by hand, once for each library. The real thing is tests/test_gpu.py.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest

from gpukit import kernels, phases
from gpukit.backends import cuda_common as cc
from gpukit.backends import gpu_backend, pycuda_backend
from gpukit.backends.cupy_backend import CupyBackend
from gpukit.backends.pycuda_backend import PycudaBackend
from gpukit.errors import UsageError

import gpu_fakes
from gpu_fakes import (CUDA_KERNELS, D2H_S, EMPTY_KERNEL_S, H2D_S, KERNEL_S, L2_BYTES, N_AT,
                       FakeGPU)

# Settings that leave out the extra work each run and prepare can do, for the exact logs.
PLAIN = {"compute_only": False, "compile_cold": False}


@pytest.fixture(params=gpu_fakes.LIBRARIES)
def fake(request, monkeypatch):
    gpu = FakeGPU()
    gpu_fakes.install(monkeypatch, gpu, [request.param])
    return gpu, CupyBackend if request.param == "cupy" else PycudaBackend


def host_clock():
    """A host clock that ticks one second per reading."""
    ticks = itertools.count()
    return lambda: float(next(ticks))


def variant_of(cls, memory, streamed=False):
    kernel = kernels.load("polyval")
    return next(v for v in cls.variants(kernel)
                if v.option("memory") == memory and cc.is_streamed(v) == streamed)


def polyval_session(cls, memory="pinned", settings=PLAIN, n=100, clock=None):
    """An open session with polyval k=3 at `n` prepared: (session, its prepare's Startup)."""
    kernel = kernels.load("polyval")
    session = cls(variant_of(cls, memory), 1, settings, **({"clock": clock} if clock else {}))
    session.open()
    params = kernel.resolve_params({"k": 3})
    return session, session.prepare(kernel, params, kernel.make_inputs(n, params, seed=n))


def check_against_reference(out, inputs, params):
    kernel = kernels.load("polyval")
    check = kernel.check(out, kernel.reference(inputs, params), inputs, params)
    assert check.ok, check


# -- the one-stream variants ----------------------------------------------------------------


@pytest.mark.parametrize("memory", ["pageable", "pinned"])
def test_a_run_is_one_stream_of_copies_kernel_copies_then_one_synchronize(fake, memory):
    gpu, cls = fake
    kernel = kernels.load("polyval")
    session = cls(variant_of(cls, memory), 1, PLAIN, clock=host_clock())
    startup = session.open()
    assert set(startup.steps_s) == {"context"}
    assert startup.facts["l2_bytes"] == L2_BYTES and startup.facts["mode"] == "one stream"
    params = kernel.resolve_params({"k": 5})
    inputs = kernel.make_inputs(1001, params, seed=2)
    prepared = session.prepare(kernel, params, inputs)
    assert set(prepared.steps_s) == {"compile", "alloc", "first_launch"} | (
        {"pin"} if memory == "pinned" else set())
    assert prepared.facts["registers"] == 48 and prepared.facts["local_bytes"] == 0
    assert prepared.facts["compile_cache"] in ("hit", "miss", "unknown", "disabled")
    assert prepared.facts["empty_launch_s"] == pytest.approx(EMPTY_KERNEL_S)
    assert prepared.facts["compute_only"].startswith("not measured: turned off")

    del gpu.log[:]
    out, timing = session.run()
    assert gpu.log == ["event", "h2d", "h2d", "event", "kernel", "event", "d2h", "event", "sync"]
    check_against_reference(out, inputs, params)

    expected = dict(zip(phases.RUN_PHASES, (2 * H2D_S, KERNEL_S, D2H_S)))
    assert timing.phases_s == pytest.approx(expected)
    assert timing.device_s == timing.phases_s
    # Host-clock readings one tick apart: at each phase's start, after the enqueue, after the
    # synchronize (the last two both in transfer_out).
    assert timing.extra["host_phases_s"] == dict(zip(phases.RUN_PHASES, (1.0, 1.0, 2.0)))
    assert timing.wall_s == 4.0
    # 2 ms of kernel against a 0.5 ms empty launch: more than twice, so not launch-bound.
    assert timing.extra["launch_bound"] is False
    assert "compute_only_s" not in timing.extra

    again = session.prepare(kernel, params, inputs)
    assert "compile" not in again.steps_s and "first_launch" not in again.steps_s
    session.release()
    session.close()
    session.close()  # safe twice
    assert gpu.context_depth == 0


@pytest.mark.parametrize("spec", CUDA_KERNELS, ids=lambda s: s.rsplit(":", 1)[-1])
@pytest.mark.parametrize("memory, streamed", [("pageable", False), ("pinned", False),
                                              ("pinned", True)],
                         ids=["pageable", "pinned", "streamed"])
def test_every_kernel_on_every_variant_matches_its_reference(fake, spec, memory, streamed):
    # The kernels' own CUDA C runs on the host with the bytes each library would pass: two
    # outputs, an int32 output, scalars of two widths, whole inputs beside split ones.
    _gpu, cls = fake
    kernel = kernels.load(spec)
    if streamed and not cc.chunkable(kernel):
        pytest.skip(f"{kernel.name} has no streamed variant")
    session = cls(variant_of(cls, memory, streamed), 1, {**PLAIN, "stream_chunks": 3})
    session.open()
    params = kernel.resolve_params({})
    inputs = kernel.make_inputs(301, params, seed=7)
    session.prepare(kernel, params, inputs)
    out, _timing = session.run()
    check = kernel.check(out, kernel.reference(inputs, params), inputs, params)
    assert check.ok, check
    if streamed:
        assert _timing.extra["chunks"] == 3
    session.close()


LAZY_KERNEL = Path(__file__).resolve().parent / "data" / "lazy_kernel.py"


@pytest.mark.parametrize("memory", ["pageable", "pinned"])
def test_rows_a_kernel_leaves_alone_fail_the_check_as_unwritten(fake, memory, tmp_path,
                                                                monkeypatch):
    gpu, cls = fake
    monkeypatch.setitem(N_AT, "writeshalf", 2)
    kernel = kernels.load(f"{LAZY_KERNEL}:WritesHalf")
    session = cls(next(v for v in cls.variants(kernel) if v.option("memory") == memory
                       and not cc.is_streamed(v)), 1, PLAIN)
    session.open()
    params = kernel.resolve_params({})
    inputs = kernel.make_inputs(1000, params)
    # The device starts with the right answer in every buffer, as a freed and reused block may.
    right = (2 * inputs.split["x"]).astype(np.float32).reshape(-1).view(np.uint8)
    real_alloc = gpu.alloc
    def alloc_holding_the_answer(nbytes):
        ptr = real_alloc(nbytes)
        if nbytes == right.size:
            gpu.memory[ptr][:] = right
        return ptr
    gpu.alloc = alloc_holding_the_answer
    session.prepare(kernel, params, inputs)
    out, _timing = session.run()
    check = kernel.check(out, kernel.reference(inputs, params), inputs, params)
    assert not check.ok and "500 of 1000 values of 'z' are NaN or inf (unwritten?)" in check.detail
    session.close()


def test_first_launch_and_the_timed_empty_launches_are_given_n_zero(fake):
    gpu, cls = fake
    session, _ = polyval_session(cls)
    kernel, params = kernels.load("polyval"), kernels.load("polyval").resolve_params({"k": 3})
    # The first launch, which loads the module, is one too: the inputs aren't on the device yet.
    assert "kernel" not in gpu.log
    assert gpu.log.count("empty") == 1 + 2 * cc.EMPTY_LAUNCH_REPS
    session.prepare(kernel, params, kernel.make_inputs(200, params))
    assert gpu.log.count("empty") == 1 + 2 * cc.EMPTY_LAUNCH_REPS
    session.close()


def test_compute_only_flushes_l2_before_each_timed_launch_and_synchronizes_once(fake):
    gpu, cls = fake
    kernel = kernels.load("polyval")
    session = cls(variant_of(cls, "pinned"), 1, {"compile_cold": False, "compute_only_reps": 4})
    session.open()
    params = kernel.resolve_params({"k": 3})
    inputs = kernel.make_inputs(3000, params, seed=4)
    prepared = session.prepare(kernel, params, inputs)
    assert prepared.facts["l2_flush_bytes"] == cc.FLUSH_L2_MULTIPLE * L2_BYTES
    del gpu.log[:]
    out, timing = session.run()
    check_against_reference(out, inputs, params)
    tail = gpu.log[gpu.log.index("sync") + 1:]
    assert tail == ["memset", "event", "kernel", "event"] * 4 + ["sync"]
    assert timing.extra["compute_only_runs_s"] == pytest.approx([KERNEL_S] * 4)
    assert timing.extra["compute_only_s"] == pytest.approx(KERNEL_S)
    session.close()
    assert gpu.context_depth == 0


def test_compute_only_is_skipped_for_problems_larger_than_twice_l2(fake, monkeypatch):
    _gpu, cls = fake
    monkeypatch.setattr(cc, "COMPUTE_ONLY_MAX_L2", 1e-6)  # 50 bytes: any problem is "large"
    kernel = kernels.load("polyval")
    session = cls(variant_of(cls, "pinned"), 1, {"compile_cold": False})
    session.open()
    params = kernel.resolve_params({"k": 3})
    prepared = session.prepare(kernel, params, kernel.make_inputs(100, params))
    assert "exceed" in prepared.facts["compute_only"]
    assert "compute_only_s" not in session.run()[1].extra
    session.close()


def test_compile_cold_and_warm_are_measured_once_per_process(fake):
    gpu, cls = fake
    kernel = kernels.load("polyval")
    params = kernel.resolve_params({"k": 3})
    facts = []
    for _ in range(2):
        session = cls(variant_of(cls, "pageable"), 1, {"compute_only": False},
                      clock=host_clock())
        session.open()
        facts.append(session.prepare(kernel, params, kernel.make_inputs(100, params)).facts)
        session.close()
    compiles = [e for e in gpu.log if e.startswith("compile")]
    # Per session its own compile and the spin kernel's; the cold (no cache) and warm (cache
    # hit) ones only once.
    assert compiles == ["compile", "compile_cold", "compile_warm" if cls is CupyBackend
                        else "compile", "compile_limits", "compile", "compile_limits"]
    assert facts[0]["compile_cold_s"] == facts[0]["compile_warm_s"] == 1.0
    assert facts[0]["compile_figures"] == "measured in this session"
    assert facts[0]["compile_warm_cache"] in ("hit", "unknown")
    assert facts[1]["compile_figures"] == "from earlier in this process"
    assert facts[1]["compile_cold_s"] == 1.0
    assert "CUPY_CACHE_IN_MEMORY" not in os.environ


def test_pycuda_cache_folder_follows_pycudas_own_rule(monkeypatch, tmp_path):
    monkeypatch.delenv("PYCUDA_DISABLE_CACHE", raising=False)
    monkeypatch.setenv("PYCUDA_CACHE_DIR", str(tmp_path))
    assert pycuda_backend.compile_cache_folder() == str(tmp_path)
    monkeypatch.setenv("PYCUDA_CACHE_DIR", "")  # set but empty: PyCUDA caches nothing
    assert pycuda_backend.compile_cache_folder() is None
    monkeypatch.setenv("PYCUDA_DISABLE_CACHE", "1")
    monkeypatch.setenv("PYCUDA_CACHE_DIR", str(tmp_path))
    assert pycuda_backend.compile_cache_folder() is None


def test_refuses_a_problem_larger_than_free_device_memory(fake):
    gpu, cls = fake
    gpu.free_bytes = 1000
    kernel = kernels.load("polyval")
    session = cls(cls.variants(kernel)[0], 1, PLAIN)
    session.open()
    params = kernel.resolve_params({"k": 2})
    with pytest.raises(UsageError, match=r"n=1000 needs 7\.8 KiB of GPU memory but only "
                                         r"1000 bytes is free"):
        session.prepare(kernel, params, kernel.make_inputs(1000, params))
    assert "h2d" not in gpu.log
    session.close()
    assert gpu.context_depth == 0


def test_no_variants_for_a_kernel_without_cuda(fake):
    _gpu, cls = fake

    class HostOnly(kernels.Kernel):
        name = "host_only"

    assert cls.variants(HostOnly()) == []


def test_variants_are_pageable_pinned_and_pinned_streamed(fake):
    _gpu, cls = fake
    labels = [v.label for v in cls.variants(kernels.load("polyval"))]
    assert labels == [f"{cls.name}/cuda/pageable", f"{cls.name}/cuda/pinned",
                      f"{cls.name}/cuda/pinned/streamed"]


def test_no_streamed_variant_for_a_kernel_whose_whole_inputs_are_its_split_rows(fake):
    # As in nbody: every row needs every other, so a chunk's launch (n = its rows) would be
    # wrong. Seen from the inputs, or declared by the kernel.
    from gpukit.kernels.base import Inputs
    from gpukit.kernels.polyval import Polyval, points

    class AllPairs(Polyval):
        name = "all_pairs"

        def make_inputs(self, n, params, seed=0):
            x = points(n, seed)
            return Inputs(split={"x": x}, whole={"c": x})

    class Declared(Polyval):
        cuda_chunkable = False

    _gpu, cls = fake
    for kernel in (AllPairs(), Declared()):
        assert [v.option("memory") for v in cls.variants(kernel)] == ["pageable", "pinned"]
        assert not any(cc.is_streamed(v) for v in cls.variants(kernel))


def test_check_available_returns_facts(fake, monkeypatch):
    _gpu, cls = fake
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    facts = cls.check_available()
    assert facts["compute_capability"] == "9.0"
    assert facts["driver"] == "13.0"
    assert facts["device"]


# -- the streamed variant -------------------------------------------------------------------


def test_streamed_run_enqueues_chunks_on_streams_and_synchronizes_once(fake):
    gpu, cls = fake
    kernel = kernels.load("polyval")
    settings = {**PLAIN, "streams": 2, "stream_chunks": 3}
    session = cls(variant_of(cls, "pinned", streamed=True), 1, settings, clock=host_clock())
    assert session.open().facts["mode"] == "streamed"
    params = kernel.resolve_params({"k": 5})
    inputs = kernel.make_inputs(1001, params, seed=3)
    prepared = session.prepare(kernel, params, inputs)
    assert prepared.facts["streams"] == 2 and prepared.facts["chunks"] == 3
    del gpu.log[:]
    out, timing = session.run()
    check_against_reference(out, inputs, params)

    chunk = ["event", "h2d", "event", "kernel", "event", "d2h", "event"]
    assert gpu.log == (["event", "h2d", "event", "wait"] + chunk * 3 + ["wait", "event", "sync"])
    assert all(s.non_blocking for s in list(gpu.streams.values())[-2:])

    # The schedule, by hand (ms): c [0,1]; chunk 0 on stream 0: x [1,2], kernel [2,4],
    # y [4,7]; chunk 1 on stream 1 (waited for c until 1): x queued behind chunk 0's until 2,
    # [2,3], kernel behind chunk 0's [4,6], y behind chunk 0's [7,10]; chunk 2 on stream 0:
    # x [7,8], kernel [8,10], y [10,13]. End: 13 ms.
    ms = 1e-3
    extra = timing.extra
    assert extra["end_to_end_s"] == pytest.approx(13 * ms)
    assert extra["busy_s"] == pytest.approx({"h2d": 4 * ms, "kernel": 6 * ms, "d2h": 9 * ms})
    assert extra["serial_s"] == pytest.approx(19 * ms)
    assert extra["overlap_hidden_s"] == pytest.approx(6 * ms)
    assert extra["overlap_hidden_share"] == pytest.approx(6 / 19)
    assert extra["idle_s"] == pytest.approx(0.0)
    # Copies cover [0,3] and [4,13]: 12 ms, split 4:9 between the directions; 1 ms uncovered.
    assert timing.phases_s == pytest.approx({phases.TRANSFER_IN: 12 * ms * 4 / 13,
                                             phases.COMPUTE: 1 * ms,
                                             phases.TRANSFER_OUT: 12 * ms * 9 / 13})
    assert math.isclose(sum(timing.phases_s.values()), extra["end_to_end_s"])
    assert timing.device_s == timing.phases_s
    assert extra["chunk_rows"] == [384, 384, 233]  # chunk starts on 64-row (256-byte) bounds
    assert extra["kernel_s"] == pytest.approx(KERNEL_S)
    assert extra["launch_bound"] is False
    # Host clock: the enqueue is one reading apart, the synchronize another.
    assert timing.wall_s == 2.0 and extra["host_enqueue_s"] == 1.0
    assert extra["host_wait_s"] == 1.0
    session.close()
    assert gpu.context_depth == 0


@pytest.mark.parametrize("n, chunks, streams, align", [
    (1, 4, 4, None), (63, 2, 4, None), (1001, 7, 3, 1), (4099, 5, 4, 3), (3333, 64, 4, 1)])
def test_streamed_matches_the_reference_at_odd_sizes_and_chunk_counts(fake, n, chunks,
                                                                      streams, align):
    gpu, cls = fake
    kernel = kernels.load("polyval")
    settings = {**PLAIN, "streams": streams, "stream_chunks": chunks}
    if align is not None:
        settings["stream_align_rows"] = align  # unaligned chunk starts: offset pointers
    session = cls(variant_of(cls, "pinned", streamed=True), 1, settings)
    session.open()
    params = kernel.resolve_params({"k": 7})
    inputs = kernel.make_inputs(n, params, seed=n)
    session.prepare(kernel, params, inputs)
    for _ in range(2):  # the second run reuses the streams, events and pinned buffers
        out, timing = session.run()
        check_against_reference(out, inputs, params)
        extra = timing.extra
        assert sum(extra["chunk_rows"]) == n and extra["chunks"] <= chunks
        assert extra["overlap_hidden_s"] >= 0 and extra["idle_s"] >= 0
        assert 0 <= extra["overlap_hidden_share"] < 1
        assert math.isclose(sum(timing.phases_s.values()), extra["end_to_end_s"],
                            rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(extra["serial_s"] - extra["overlap_hidden_s"] + extra["idle_s"],
                            extra["end_to_end_s"], rel_tol=1e-9, abs_tol=1e-12)
    session.close()
    assert gpu.context_depth == 0


# -- the pure pieces ------------------------------------------------------------------------


def test_union_length():
    assert cc.union_length([]) == 0.0
    assert cc.union_length([(0, 1), (1, 3), (2, 4), (6, 7)]) == 5.0
    assert cc.union_length([(5, 6), (0, 10)]) == 10.0


@pytest.mark.parametrize("name", ["polyval", "blackscholes", "mandelbrot", "nbody"])
def test_pinned_staging_copies_inputs_and_marks_outputs_of_every_kernel(name):
    # mandelbrot's output is int32: NaN cannot mark it, -1 does (as Kernel.alloc_outputs).
    kernel = kernels.load(name)
    params = kernel.resolve_params({})
    problem = cc.make_problem(kernel, params, kernel.make_inputs(300, params, seed=1))
    host_in, host_out = cc.stage_pinned(problem, lambda shape, dtype: np.empty(shape, dtype))
    for arr_name, arr in problem.inputs.items():
        np.testing.assert_array_equal(host_in[arr_name], arr)
    want = kernel.alloc_outputs(problem.n, params)
    assert set(host_out) == set(want)
    for arr_name, arr in host_out.items():
        assert arr.dtype == want[arr_name].dtype
        np.testing.assert_array_equal(arr, want[arr_name])  # NaN equals NaN here


def test_aligned_chunk_bounds_cover_the_rows_with_aligned_starts():
    for n in (1, 63, 64, 65, 1000, 4097, 100_003):
        for chunks in (1, 2, 3, 7, 64):
            for align in (1, 4, 64):
                bounds = cc.aligned_chunk_bounds(n, chunks, align)
                assert bounds[0][0] == 0 and bounds[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
                assert all(lo % align == 0 and hi > lo for lo, hi in bounds)
                assert len(bounds) <= chunks


def test_align_rows_keeps_every_array_on_256_bytes():
    assert cc.align_rows({"x": 4, "y": 4}) == 64
    assert cc.align_rows({"x": 8, "y": 4}) == 64
    assert cc.align_rows({"x": 12}) == 64  # 64 rows of 12 bytes: 768 = 3 * 256
    assert cc.align_rows({"x": 256}) == 1


def test_default_plan_is_chunks_of_8_mib_on_4_streams():
    kernel = kernels.load("polyval")
    n = 1 << 26
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(n,), strides=(0,))
    params = kernel.resolve_params({"k": 2})
    # Built directly: make_problem would copy the 256 MiB that this strided x only pretends to be.
    problem = cc.Problem(n, {"x": x, "c": np.ones(3, np.float32)}, {"y": np.dtype(np.float32)},
                         kernel.cuda_launch(n, params), {}, ("x",))
    plan = cc.plan_streams(problem, {})
    assert plan.streams == 4 and plan.chunks == 32  # 256 MiB of x in 8 MiB chunks
    assert {hi - lo for lo, hi in plan.bounds} == {n // 32}
    assert cc.plan_streams(problem, {"stream_chunks": 1000}).chunks == 1000
    assert cc.plan_streams(problem, {"streams": 1}).streams == 1
    with pytest.raises(UsageError, match="streams must be a positive integer"):
        cc.plan_streams(problem, {"streams": 0})


def test_launch_bound_rule():
    assert cc.launch_bound(3e-6, None)  # below the floor
    assert cc.launch_bound(9e-6, 5e-6)  # within 2x of an empty launch
    assert not cc.launch_bound(11e-6, 5e-6)
    assert not cc.launch_bound(1e-3, None)


def test_streamed_timing_of_one_chunk_is_the_one_stream_timing():
    plan = cc.StreamPlan(1, ((0, 10),))
    # begin 0, whole in 1, end 9; chunk: start 1, in 3, kernel 5, out 9 (ms).
    times = [0, 1e-3, 9e-3, 1e-3, 3e-3, 5e-3, 9e-3]
    timing = cc.streamed_run_timing(plan, times, wall_s=0.01, host_enqueue_s=0.001)
    assert timing.phases_s == pytest.approx({phases.TRANSFER_IN: 3e-3, phases.COMPUTE: 2e-3,
                                             phases.TRANSFER_OUT: 4e-3})
    assert timing.extra["overlap_hidden_s"] == pytest.approx(0.0)
    assert timing.extra["idle_s"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="has 7 events"):
        cc.streamed_run_timing(plan, times[:-1], 0.01, 0.001)


def test_streamed_timing_reports_a_wait_for_the_host_as_idle_not_as_negative_overlap():
    plan = cc.StreamPlan(1, ((0, 10), (10, 20)))
    # Chunk 1's work starts 4 ms after chunk 0's ended: the device waited for the host.
    times = [0, 1e-3, 16e-3,
             1e-3, 2e-3, 3e-3, 5e-3,
             9e-3, 10e-3, 11e-3, 16e-3]
    extra = cc.streamed_run_timing(plan, times, 0.02, 0.01).extra
    assert extra["idle_s"] == pytest.approx(4e-3)
    assert extra["overlap_hidden_s"] == pytest.approx(0.0)


# -- figures that keep Python's speed out of the GPU's -----------------------------------------


def test_the_context_is_created_once_before_any_session_and_charged_to_none(fake):
    gpu, cls = fake
    facts = cls.check_available()
    assert gpu.contexts_created == 1
    assert facts["cuda_context_s"] >= 0 and facts["cuda_context_by"] == cls.name
    session = cls(variant_of(cls, "pinned"), 1, PLAIN)
    startup = session.open()
    assert gpu.contexts_created == 1  # the session found it made
    assert set(startup.steps_s) == {"context"}
    assert startup.facts["cuda_context_s"] == facts["cuda_context_s"]
    session.close()


def test_launch_figures_are_the_hosts_issue_cost_and_the_devices_queued_launch(fake):
    gpu, cls = fake
    # A host clock of 1 us a reading: the 20 launches are queued well inside the 2 ms hold.
    ticks = itertools.count()
    session, prepared = polyval_session(cls, clock=lambda: next(ticks) * 1e-6)
    facts = prepared.facts
    reps = cc.EMPTY_LAUNCH_REPS
    held = gpu.log[gpu.log.index("spin"):gpu.log.index("spin") + 4 + 3 * reps]
    # Back to back with events around the queue, then each between two events; one wait.
    assert held == (["spin", "event"] + ["empty"] * reps + ["event"] + ["empty", "event"] * reps
                    + ["sync"])
    assert facts["empty_launch_s"] == pytest.approx(EMPTY_KERNEL_S)  # the device's, each
    assert facts["launch_to_launch_s"] == pytest.approx(EMPTY_KERNEL_S)
    assert facts["empty_launch_host_s"] == pytest.approx(1e-6 / cc.EMPTY_LAUNCH_REPS)
    assert facts["empty_launch_queue_full"] is True
    session.close()


def test_launch_bound_compares_the_kernel_with_the_devices_launch(fake, monkeypatch):
    _gpu, cls = fake
    session, _ = polyval_session(cls, settings={**PLAIN, "held_replay": False})
    assert session.run()[1].extra["launch_bound"] is False  # 2 ms against 0.5 ms
    monkeypatch.setattr(gpu_fakes, "KERNEL_S", 0.9e-3)
    monkeypatch.setattr(gpu_fakes, "EMPTY_KERNEL_S", 0.5e-3)
    timing = session.run()[1]
    assert timing.device_s[phases.COMPUTE] == pytest.approx(0.9e-3)
    assert timing.extra["launch_bound"] is True  # within twice the device's launch
    session.close()


@pytest.mark.parametrize("memory", ["pageable", "pinned"])
def test_a_small_run_is_replayed_behind_a_held_stream_for_the_devices_phases(fake, memory,
                                                                           monkeypatch):
    gpu, cls = fake
    monkeypatch.setattr(gpu_backend, "HELD_REPLAY_BELOW_S", 1.0)  # every fake run is small
    kernel = kernels.load("polyval")
    ticks = itertools.count()
    session = cls(variant_of(cls, memory), 1, PLAIN, clock=lambda: next(ticks) * 1e-6)
    session.open()
    params = kernel.resolve_params({"k": 3})
    inputs = kernel.make_inputs(100, params)
    session.prepare(kernel, params, inputs)
    del gpu.log[:]
    out, timing = session.run()
    check_against_reference(out, inputs, params)
    one_run = ["event", "h2d", "h2d", "event", "kernel", "event", "d2h", "event"]
    assert gpu.log == one_run + ["sync", "spin"] + one_run + ["sync"]
    expected = dict(zip(phases.RUN_PHASES, (2 * H2D_S, KERNEL_S, D2H_S)))
    assert timing.phases_s == pytest.approx(expected) and timing.device_s == timing.phases_s
    assert timing.extra["unheld_phases_s"] == pytest.approx(expected)
    replay = timing.extra["held_replay"]
    assert replay["queue_full"] is True  # enqueued in 8 us of host clock, held for 50 us
    assert replay["hold_s"] == pytest.approx(gpu_backend.HOLD_MIN_S)
    assert timing.wall_s == pytest.approx(4e-6)  # the timed run's five readings only
    session.close()


def test_runs_whose_device_time_is_long_are_not_replayed(fake):
    gpu, cls = fake
    session, _ = polyval_session(cls)
    del gpu.log[:]
    timing = session.run()[1]  # 7 ms of fake device time
    assert "spin" not in gpu.log and "held_replay" not in timing.extra
    session.close()
