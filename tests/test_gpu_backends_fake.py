"""The CuPy and PyCUDA backends' own logic, run against small fakes of the two libraries.

No GPU and neither library is needed. The fakes execute copies with NumPy and kernels as their
real CUDA C built for the host (tests/cuda_host.py), fed the argument bytes each library would
pack; device memory is host memory, with guard bytes after each allocation that every launch
checks. A fake device clock models what the streamed variant relies on: every stream is a queue,
and each kind of work has one engine (an H2D copy engine, a D2H copy engine, the SMs), so an
operation starts when both its stream and its engine are free. Each H2D call takes 1 ms, each
kernel 2 ms (0.5 ms with n = 0), each D2H 3 ms, each memset 0.5 ms; an event's time is its
stream's time when it was recorded, and nothing starts before the device time the host last
synchronized with. So the tests check what the backends do with the libraries
(calls on the streams, one synchronize per run, events, offset pointers, context push/pop, the
memory check) and the phase and overlap arithmetic on a schedule worked out by hand, not the
libraries. The real thing is tests/test_gpu.py.
"""

from __future__ import annotations

import bisect
import functools
import importlib.machinery
import itertools
import math
import os
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from gpukit import kernels, phases
from gpukit.backends import cuda_common as cc
from gpukit.backends import cupy_backend, pycuda_backend
from gpukit.backends.cupy_backend import CupyBackend
from gpukit.backends.pycuda_backend import PycudaBackend
from gpukit.errors import UsageError

import cuda_host

H2D_S, KERNEL_S, D2H_S, EMPTY_KERNEL_S, MEMSET_S = 1e-3, 2e-3, 3e-3, 0.5e-3, 0.5e-3
L2_BYTES = 50 << 20
DEVICE_ALIGN, GUARD_BYTES, GUARD_VALUE = 256, 64, 0xA5

# Every kernel with a CUDA version: the fakes find where `n` sits in a function's arguments here.
CUDA_KERNELS = ("polyval", "blackscholes", "mandelbrot", "nbody",
                f"{Path(__file__).resolve().parent.parent / 'examples' / 'my_kernel.py'}:Saxpy")


# A test's own CUDA function -> where its `n` sits.
N_AT: dict[str, int] = {}


def n_position(function: str) -> int:
    return N_AT[function] if function in N_AT else _builtin_n_position(function)


@functools.lru_cache(maxsize=None)
def _builtin_n_position(function: str) -> int:
    for spec in CUDA_KERNELS:
        kernel = kernels.load(spec)
        launch = kernel.cuda_launch(1, kernel.resolve_params({}))
        if launch.function == function:
            return [a if isinstance(a, str) else a[0] for a in launch.args].index("n")
    raise AssertionError(f"no kernel has the CUDA function {function}")

# Settings that leave out the extra work each run and prepare can do, for the exact logs.
PLAIN = {"compute_only": False, "compile_cold": False}


class FakeStream:
    """A device queue: the time its last operation ends."""

    def __init__(self, gpu, non_blocking=False):
        self.gpu = gpu
        self.ready_s = 0.0
        self.non_blocking = non_blocking
        self.ptr = gpu.register_stream(self)


class FakeGPU:
    """The device both fakes drive: memory, a log of what was enqueued, and its clock."""

    def __init__(self, free_bytes=1 << 34):
        self.log: list[str] = []
        self.free_bytes = free_bytes
        self.bases: list[int] = []  # sorted allocation base addresses
        self.memory: dict[int, np.ndarray] = {}  # base address -> bytes
        self.guards: list[np.ndarray] = []  # the bytes just past each allocation
        self.engine_free = {"h2d": 0.0, "d2h": 0.0, "sm": 0.0}
        self.streams: dict[int, FakeStream] = {}
        self.pinned: dict[int, np.ndarray] = {}  # host address -> page-locked array
        self.context_depth = 0
        self.current = None  # CuPy's current stream
        self.now_s = 0.0  # the device time the host last waited for: nothing starts before it

    # -- memory --

    def alloc(self, nbytes):
        """Device memory is host memory here, at real addresses, so that kernels compiled for
        the host (tests/cuda_host.py) run on it; 256-byte aligned like cudaMalloc's, with guard
        bytes after it that every launch checks."""
        nbytes = max(1, nbytes)
        raw = np.zeros(nbytes + DEVICE_ALIGN + GUARD_BYTES, dtype=np.uint8)
        start = -raw.ctypes.data % DEVICE_ALIGN
        ptr = raw.ctypes.data + start
        self.memory[ptr] = raw[start:start + nbytes]
        guard = raw[start + nbytes:start + nbytes + GUARD_BYTES]
        guard[:] = GUARD_VALUE
        self.guards.append(guard)
        bisect.insort(self.bases, ptr)
        return ptr

    def view(self, ptr, nbytes):
        """Bytes [ptr, ptr + nbytes) of the allocation that holds them (offset pointers work)."""
        base = self.bases[bisect.bisect_right(self.bases, ptr) - 1]
        block = self.memory[base]
        offset = ptr - base
        assert 0 <= offset and offset + nbytes <= block.size, "device access out of bounds"
        return block[offset:offset + nbytes]

    def pin(self, arr):
        self.pinned[arr.ctypes.data] = arr
        return arr

    def host_view(self, address, nbytes):
        """Host bytes at `address`: only page-locked memory may be copied asynchronously."""
        for base, arr in self.pinned.items():
            if base <= address and address + nbytes <= base + arr.nbytes:
                return arr.reshape(-1).view(np.uint8)[address - base:address - base + nbytes]
        raise AssertionError("an asynchronous copy from or to pageable host memory")

    # -- the clock --

    def register_stream(self, stream):
        ptr = 0x5000 + len(self.streams)
        self.streams[ptr] = stream
        return ptr

    def enqueue(self, stream, engine, seconds, label):
        assert stream is not None, "work on the legacy default stream"
        start = max(stream.ready_s, self.engine_free[engine], self.now_s)
        stream.ready_s = self.engine_free[engine] = start + seconds
        self.log.append(label)

    def h2d(self, stream, ptr, src_bytes):
        self.view(ptr, src_bytes.size)[:] = src_bytes
        self.enqueue(stream, "h2d", H2D_S, "h2d")

    def d2h(self, stream, dst_bytes, ptr):
        dst_bytes[:] = self.view(ptr, dst_bytes.size)
        self.enqueue(stream, "d2h", D2H_S, "d2h")

    def memset(self, stream, ptr, nbytes, value=0):
        self.view(ptr, nbytes)[:] = value
        self.enqueue(stream, "sm", MEMSET_S, "memset")

    def launch(self, stream, host_kernel, grid, block, addresses, n):
        """Run the kernel's real CUDA C on the host (n > 0; with n = 0 it has nothing to do),
        reading each argument from the bytes at `addresses` as the signature's C type."""
        if n > 0:
            host_kernel.launch(grid, block, addresses)
            assert all(np.all(g == GUARD_VALUE) for g in self.guards), \
                f"{host_kernel.function} wrote past the end of a device allocation"
        self.enqueue(stream, "sm", KERNEL_S if n > 0 else EMPTY_KERNEL_S,
                     "kernel" if n > 0 else "empty")


def as_bytes(arr):
    return np.ascontiguousarray(arr).reshape(-1).view(np.uint8)


def _event_class(gpu):
    class Event:
        def __init__(self, *args, **kwargs):
            self.t = None

        def record(self, stream=None):
            assert stream is not None, "an event on the legacy default stream"
            self.t = stream.ready_s = max(stream.ready_s, gpu.now_s)
            gpu.log.append("event")
            return self

    return Event


# -- a fake cupy ----------------------------------------------------------------------------


def fake_cupy(gpu):
    cupy = types.ModuleType("cupy")
    cupy.__version__ = "0.fake"

    class CUDARuntimeError(RuntimeError):
        pass

    def memcpy_async(dst, src, size, kind, stream_ptr):
        stream = gpu.streams[stream_ptr]
        if kind == 1:
            gpu.h2d(stream, dst, gpu.host_view(src, size))
        else:
            assert kind == 2
            gpu.d2h(stream, gpu.host_view(dst, size), src)

    runtime = types.SimpleNamespace(
        CUDARuntimeError=CUDARuntimeError, getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"Fake GPU", "major": 9, "minor": 0,
                                       "totalGlobalMem": 1 << 34, "multiProcessorCount": 132,
                                       "l2CacheSize": L2_BYTES},
        driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13020,
        memGetInfo=lambda: (gpu.free_bytes, 1 << 34),
        cudaDevAttrL2CacheSize=38,
        deviceGetAttribute=lambda attr, dev: {38: L2_BYTES}[attr],
        memcpyHostToDevice=1, memcpyDeviceToHost=2, memcpyAsync=memcpy_async,
        memsetAsync=lambda ptr, value, size, s: gpu.memset(gpu.streams[s], ptr, size, value))

    class Stream(FakeStream):
        def __init__(self, null=False, non_blocking=False):
            super().__init__(gpu, non_blocking)

        def synchronize(self):
            gpu.now_s = max(gpu.now_s, self.ready_s)
            gpu.log.append("sync")

        def wait_event(self, event):
            self.ready_s = max(self.ready_s, event.t)
            gpu.log.append("wait")

        def __enter__(self):
            self._previous, gpu.current = gpu.current, self
            return self

        def __exit__(self, *exc):
            gpu.current = self._previous
            return False

    class Device:
        def __init__(self, i):
            pass

        def use(self):
            pass

    class DeviceArray:
        def __init__(self, shape, dtype, ptr=None):
            self.dtype = np.dtype(dtype)
            self.shape = shape if isinstance(shape, tuple) else (shape,)
            self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
            self.data = types.SimpleNamespace(ptr=gpu.alloc(self.nbytes) if ptr is None else ptr)

        def __getitem__(self, rows):
            lo, hi, step = rows.indices(self.shape[0])
            assert step == 1
            row = self.nbytes // max(1, self.shape[0])
            return DeviceArray((hi - lo, *self.shape[1:]), self.dtype, self.data.ptr + lo * row)

        def set(self, arr, stream=None):
            gpu.h2d(stream, self.data.ptr, as_bytes(arr))

        def get(self, stream=None, out=None, blocking=True):
            assert out is not None and not blocking
            gpu.d2h(stream, as_bytes(out), self.data.ptr)
            return out

    class RawKernel:
        num_regs, local_size_bytes, shared_size_bytes = 48, 0, 4096

        def __init__(self, code, name):
            self.host = cuda_host.HostKernel(code, name)
            self.n_at = n_position(name)

        def __call__(self, grid, block, args):
            # CuPy passes an array as its data pointer, a NumPy scalar as its own bytes, and a
            # Python int as a 64-bit integer.
            keep = cuda_host.ParamBytes()
            addresses = [keep.pointer(a.data.ptr) if isinstance(a, DeviceArray)
                         else keep.value(a if isinstance(a, np.generic) else np.int64(a))
                         for a in args]
            gpu.launch(gpu.current, self.host, grid[0], block[0], addresses, int(args[self.n_at]))

    class RawModule:
        def __init__(self, code, options=()):
            assert 'extern "C"' in code
            self.code, self.options = code, options

        def compile(self):
            gpu.log.append("compile")

        def get_function(self, name):
            return RawKernel(self.code, name)

    class Pool:
        def free_bytes(self):
            return 0

        def free_all_blocks(self):
            gpu.log.append("free_all_blocks")

    def compile_with_cache(source, options, prepend_cupy_headers=True):
        assert 'extern "C"' in source and not prepend_cupy_headers
        cold = os.environ.get("CUPY_CACHE_IN_MEMORY") == "1"
        gpu.log.append("compile_cold" if cold else "compile_warm")

    pool, pinned_pool = Pool(), Pool()
    cupy.cuda = types.SimpleNamespace(
        runtime=runtime, Device=Device, Stream=Stream, Event=_event_class(gpu),
        get_elapsed_time=lambda a, b: (b.t - a.t) * 1e3,
        compiler=types.SimpleNamespace(_kernel_cache_backend=None))
    cupy.empty = DeviceArray
    cupy.uint8 = np.uint8
    cupy.RawModule = RawModule
    cupy.get_default_memory_pool = lambda: pool
    cupy.get_default_pinned_memory_pool = lambda: pinned_pool
    core_pkg = types.ModuleType("cupy._core")
    core = types.ModuleType("cupy._core.core")
    core.compile_with_cache = compile_with_cache
    core_pkg.core = core
    cupyx = types.ModuleType("cupyx")
    cupyx.empty_pinned = lambda shape, dtype: gpu.pin(np.empty(shape, dtype))
    return {"cupy": cupy, "cupy._core": core_pkg, "cupy._core.core": core, "cupyx": cupyx}


# -- a fake pycuda --------------------------------------------------------------------------


def fake_pycuda(gpu):
    pycuda = types.ModuleType("pycuda")
    pycuda.VERSION_TEXT = "0.fake"
    cuda = types.ModuleType("pycuda.driver")

    class Error(Exception):
        pass

    class Context:
        def push(self):
            gpu.context_depth += 1

        @staticmethod
        def pop():
            assert gpu.context_depth > 0, "pop without push"
            gpu.context_depth -= 1

    class Device:
        def __init__(self, i):
            pass

        @staticmethod
        def count():
            return 1

        def name(self):
            return "Fake GPU"

        def compute_capability(self):
            return (9, 0)

        def total_memory(self):
            return 1 << 34

        def get_attribute(self, attribute):
            return {"MULTIPROCESSOR_COUNT": 132, "L2_CACHE_SIZE": L2_BYTES}[attribute]

        def retain_primary_context(self):
            return Context()

    class Stream(FakeStream):
        def __init__(self, flags=0):
            assert gpu.context_depth > 0
            super().__init__(gpu, non_blocking=flags == 1)

        def synchronize(self):
            assert gpu.context_depth > 0
            gpu.now_s = max(gpu.now_s, self.ready_s)
            gpu.log.append("sync")

        def wait_for_event(self, event):
            self.ready_s = max(self.ready_s, event.t)
            gpu.log.append("wait")

    class Alloc:
        def __init__(self, nbytes):
            self.ptr = gpu.alloc(nbytes)

        def __int__(self):
            return self.ptr

        def free(self):
            gpu.log.append("free")

    class Function:
        num_regs, local_size_bytes, shared_size_bytes = 48, 0, 4096

        def __init__(self, source, name):
            self.host = cuda_host.HostKernel(source, name)
            self.n_at = n_position(name)

        def prepare(self, arg_types):
            self.arg_format = "".join(t if isinstance(t, str) else np.dtype(t).char
                                      for t in arg_types)

        def prepared_async_call(self, grid, block, stream, *args):
            # PyCUDA packs the arguments into one buffer by the prepared format, C struct
            # alignment (its _pvt_struct is Python's struct); the launch reads each parameter
            # at its offset there.
            assert gpu.context_depth > 0
            fmt = self.arg_format
            assert len(fmt) == len(args)
            assert all(type(a) is int for a, f in zip(args, fmt) if f == "P"), \
                "pointers pass as ints"
            packed = np.frombuffer(struct.pack(fmt, *args), dtype=np.uint8).copy()
            offsets = [struct.calcsize(fmt[:i + 1]) - struct.calcsize(fmt[i])
                       for i in range(len(fmt))]
            gpu.launch(stream, self.host, grid[0], block[0],
                       [packed.ctypes.data + o for o in offsets], int(args[self.n_at]))

    class SourceModule:
        def __init__(self, source, no_extern_c=False, options=None, cache_dir=None):
            assert no_extern_c and gpu.context_depth > 0
            gpu.log.append("compile" if cache_dir is None else "compile_cold")
            if cache_dir is not None:
                assert os.path.isdir(cache_dir) and not os.listdir(cache_dir)
            self.source = source

        def get_function(self, name):
            return Function(self.source, name)

    Event = _event_class(gpu)
    Event.time_since = lambda self, start: (self.t - start.t) * 1e3
    cuda.Error, cuda.Context, cuda.Device = Error, Context, Device
    cuda.Stream, cuda.Event = Stream, Event
    cuda.init = lambda: None
    cuda.get_version = lambda: (13, 0, 0)
    cuda.get_driver_version = lambda: 13000
    cuda.device_attribute = types.SimpleNamespace(MULTIPROCESSOR_COUNT="MULTIPROCESSOR_COUNT",
                                                  L2_CACHE_SIZE="L2_CACHE_SIZE")
    cuda.mem_alloc = lambda nbytes: Alloc(nbytes)
    cuda.mem_get_info = lambda: (gpu.free_bytes, 1 << 34)
    cuda.pagelocked_empty = lambda shape, dtype: gpu.pin(np.empty(shape, dtype))
    cuda.memcpy_htod_async = lambda dst, src, stream: gpu.h2d(stream, int(dst), as_bytes(src))
    cuda.memcpy_dtoh_async = lambda dst, src, stream: gpu.d2h(stream, as_bytes(dst), int(src))
    cuda.memset_d32_async = lambda dst, value, count, stream: gpu.memset(stream, int(dst),
                                                                           4 * count)
    cuda.memset_d8_async = lambda dst, value, count, stream: gpu.memset(stream, int(dst), count,
                                                                         value)
    compiler = types.ModuleType("pycuda.compiler")
    compiler.SourceModule = SourceModule
    pycuda.driver, pycuda.compiler = cuda, compiler
    return {"pycuda": pycuda, "pycuda.driver": cuda, "pycuda.compiler": compiler}


# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(params=["cupy", "pycuda"])
def fake(request, monkeypatch):
    gpu = FakeGPU()
    modules = fake_cupy(gpu) if request.param == "cupy" else fake_pycuda(gpu)
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # what find_spec returns
        monkeypatch.setitem(sys.modules, name, module)
    # The backends' own process-wide caches must not outlive the fake.
    monkeypatch.setattr(pycuda_backend, "_PRIMARY", {})
    monkeypatch.setattr(pycuda_backend, "_COMPILE_FIGURES", {})
    monkeypatch.setattr(cupy_backend, "_COMPILE_FIGURES", {})
    cls = CupyBackend if request.param == "cupy" else PycudaBackend
    return gpu, cls


def host_clock():
    """A host clock that ticks one second per reading."""
    ticks = itertools.count()
    return lambda: float(next(ticks))


def variant_of(cls, memory, streamed=False):
    kernel = kernels.load("polyval")
    return next(v for v in cls.variants(kernel)
                if v.option("memory") == memory and cc.is_streamed(v) == streamed)


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
    # Four host-clock readings, one tick apart: transfer_in, compute, transfer_out, wall.
    assert timing.extra["host_phases_s"] == {p: 1.0 for p in phases.RUN_PHASES}
    assert timing.wall_s == 3.0
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
    right = as_bytes((2 * inputs.split["x"]).astype(np.float32))
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
    kernel = kernels.load("polyval")
    session = cls(variant_of(cls, "pinned"), 1, PLAIN)
    session.open()
    params = kernel.resolve_params({"k": 3})
    session.prepare(kernel, params, kernel.make_inputs(100, params))
    # The first launch, which loads the module, is one too: the inputs aren't on the device yet.
    assert "kernel" not in gpu.log
    assert gpu.log.count("empty") == 1 + cc.EMPTY_LAUNCH_REPS
    session.prepare(kernel, params, kernel.make_inputs(200, params))
    assert gpu.log.count("empty") == 1 + cc.EMPTY_LAUNCH_REPS
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
    # Per session its own compile; the cold (no cache) and warm (cache hit) ones only once.
    assert compiles == ["compile", "compile_cold", "compile_warm" if cls is CupyBackend
                        else "compile", "compile"]
    assert facts[0]["compile_cold_s"] == facts[0]["compile_warm_s"] == 1.0
    assert facts[0]["compile_figures"] == "measured in this session"
    assert facts[0]["compile_warm_cache"] in ("hit", "unknown")
    assert facts[1]["compile_figures"] == "from earlier in this process"
    assert facts[1]["compile_cold_s"] == 1.0
    assert "CUPY_CACHE_IN_MEMORY" not in os.environ


def test_pycuda_cache_folder_follows_pycudas_own_rule(monkeypatch, tmp_path):
    monkeypatch.delenv("PYCUDA_DISABLE_CACHE", raising=False)
    monkeypatch.setenv("PYCUDA_CACHE_DIR", str(tmp_path))
    assert pycuda_backend._compile_cache_folder() == str(tmp_path)
    monkeypatch.setenv("PYCUDA_CACHE_DIR", "")  # set but empty: PyCUDA caches nothing
    assert pycuda_backend._compile_cache_folder() is None
    monkeypatch.setenv("PYCUDA_DISABLE_CACHE", "1")
    monkeypatch.setenv("PYCUDA_CACHE_DIR", str(tmp_path))
    assert pycuda_backend._compile_cache_folder() is None


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
