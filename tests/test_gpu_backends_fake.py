"""The CuPy and PyCUDA backends' own logic, run against small fakes of the two libraries.

No GPU and neither library is needed: the fakes execute copies and the kernel with NumPy and
keep a fake device clock (each H2D takes 1 ms, the kernel 2 ms, each D2H 3 ms), so the tests
check what the backends do with the libraries (order of calls on the stream, one synchronize
per run, events, context push/pop, the memory check), not the libraries. The real thing is
tests/test_gpu.py.
"""

from __future__ import annotations

import importlib.machinery
import itertools
import sys
import types

import numpy as np
import pytest

from gpukit import kernels, phases
from gpukit.backends import pycuda_backend
from gpukit.backends.cupy_backend import CupyBackend
from gpukit.backends.pycuda_backend import PycudaBackend
from gpukit.errors import UsageError

H2D_S, KERNEL_S, D2H_S = 1e-3, 2e-3, 3e-3


class FakeGPU:
    """The device both fakes drive: a log of what was enqueued, and a clock that it advances."""

    def __init__(self, free_bytes=1 << 34):
        self.log: list[str] = []
        self.now_s = 0.0
        self.free_bytes = free_bytes
        self.memory: dict[int, np.ndarray] = {}  # fake device pointer -> bytes
        self.next_ptr = itertools.count(1 << 20, 1 << 20)
        self.context_depth = 0

    def alloc(self, nbytes):
        ptr = next(self.next_ptr)
        self.memory[ptr] = np.zeros(nbytes, dtype=np.uint8)
        return ptr

    def h2d(self, ptr, src):
        self.memory[ptr][:src.nbytes] = np.frombuffer(np.ascontiguousarray(src).tobytes(), np.uint8)
        self.now_s += H2D_S
        self.log.append("h2d")

    def d2h(self, dst, ptr):
        dst.view(np.uint8).reshape(-1)[:] = self.memory[ptr][:dst.nbytes]
        self.now_s += D2H_S
        self.log.append("d2h")

    def polyval(self, x_ptr, c_ptr, y_ptr, n, k):
        x = self.memory[x_ptr].view(np.float32)[:n].astype(np.float64)
        c = self.memory[c_ptr].view(np.float32)[:k + 1].astype(np.float64)
        y = np.full(n, c[k])
        for j in range(k - 1, -1, -1):
            y = y * x + c[j]
        self.memory[y_ptr].view(np.float32)[:n] = y.astype(np.float32)
        self.now_s += KERNEL_S
        self.log.append("kernel")


def _event_class(gpu):
    class Event:
        def __init__(self, *args, **kwargs):
            self.t = None

        def record(self, stream=None):
            self.t = gpu.now_s
            gpu.log.append("event")
            return self

    return Event


# -- a fake cupy ----------------------------------------------------------------------------


def fake_cupy(gpu):
    cupy = types.ModuleType("cupy")
    cupy.__version__ = "0.fake"

    class CUDARuntimeError(RuntimeError):
        pass

    runtime = types.SimpleNamespace(
        CUDARuntimeError=CUDARuntimeError, getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"Fake GPU", "major": 9, "minor": 0,
                                       "totalGlobalMem": 1 << 34, "multiProcessorCount": 132,
                                       "l2CacheSize": 50 << 20},
        driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13020,
        memGetInfo=lambda: (gpu.free_bytes, 1 << 34))

    class Stream:
        def synchronize(self):
            gpu.log.append("sync")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class Device:
        def __init__(self, i):
            pass

        def use(self):
            pass

    class DeviceArray:
        def __init__(self, shape, dtype):
            self.dtype = np.dtype(dtype)
            self.shape = shape if isinstance(shape, tuple) else (shape,)
            self.ptr = gpu.alloc(int(np.prod(self.shape)) * self.dtype.itemsize)

        def set(self, arr, stream=None):
            assert stream is not None
            gpu.h2d(self.ptr, arr)

        def get(self, stream=None, out=None, blocking=True):
            assert stream is not None and out is not None and not blocking
            gpu.d2h(out, self.ptr)
            return out

    class RawKernel:
        num_regs, local_size_bytes, shared_size_bytes = 48, 0, 4096

        def __call__(self, grid, block, args):
            x, c, y, n, k = args
            assert isinstance(n, np.int64) and isinstance(k, np.int32)
            gpu.polyval(x.ptr, c.ptr, y.ptr, int(n), int(k))

    class RawModule:
        def __init__(self, code, options=()):
            assert 'extern "C"' in code
            self.options = options

        def compile(self):
            gpu.log.append("compile")

        def get_function(self, name):
            assert name == "polyval"
            return RawKernel()

    class Pool:
        def free_bytes(self):
            return 0

        def free_all_blocks(self):
            gpu.log.append("free_all_blocks")

    pool, pinned_pool = Pool(), Pool()
    cupy.cuda = types.SimpleNamespace(
        runtime=runtime, Device=Device, Stream=Stream, Event=_event_class(gpu),
        get_elapsed_time=lambda a, b: (b.t - a.t) * 1e3,
        compiler=types.SimpleNamespace(_kernel_cache_backend=None))
    cupy.empty = DeviceArray
    cupy.RawModule = RawModule
    cupy.get_default_memory_pool = lambda: pool
    cupy.get_default_pinned_memory_pool = lambda: pinned_pool
    cupyx = types.ModuleType("cupyx")
    cupyx.empty_pinned = lambda shape, dtype: np.empty(shape, dtype)
    return {"cupy": cupy, "cupyx": cupyx}


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
            return {"MULTIPROCESSOR_COUNT": 132, "L2_CACHE_SIZE": 50 << 20}[attribute]

        def retain_primary_context(self):
            return Context()

    class Stream:
        def synchronize(self):
            assert gpu.context_depth > 0
            gpu.log.append("sync")

    class Alloc:
        def __init__(self, nbytes):
            self.ptr = gpu.alloc(nbytes)

        def __int__(self):
            return self.ptr

        def free(self):
            gpu.log.append("free")

    class Function:
        num_regs, local_size_bytes, shared_size_bytes = 48, 0, 4096

        def prepare(self, arg_types):
            self.arg_format = "".join(t if isinstance(t, str) else np.dtype(t).char
                                      for t in arg_types)

        def prepared_async_call(self, grid, block, stream, *args):
            assert gpu.context_depth > 0
            assert self.arg_format == "PPP" + np.dtype(np.int64).char + np.dtype(np.int32).char
            gpu.polyval(*args)

    class SourceModule:
        def __init__(self, source, no_extern_c=False, options=None):
            assert no_extern_c and gpu.context_depth > 0
            gpu.log.append("compile")

        def get_function(self, name):
            return Function()

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
    cuda.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype)
    cuda.memcpy_htod_async = lambda dst, src, stream: gpu.h2d(int(dst), src)
    cuda.memcpy_dtoh_async = lambda dst, src, stream: gpu.d2h(dst, int(src))
    compiler = types.ModuleType("pycuda.compiler")
    compiler.SourceModule = SourceModule
    pycuda.driver, pycuda.compiler = cuda, compiler
    return {"pycuda": pycuda, "pycuda.driver": cuda, "pycuda.compiler": compiler}


# -- the tests ------------------------------------------------------------------------------


@pytest.fixture(params=["cupy", "pycuda"])
def fake(request, monkeypatch):
    gpu = FakeGPU()
    modules = fake_cupy(gpu) if request.param == "cupy" else fake_pycuda(gpu)
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # what find_spec returns
        monkeypatch.setitem(sys.modules, name, module)
    # The backends' own cache of retained primary contexts must not outlive the fake.
    monkeypatch.setattr(pycuda_backend, "_PRIMARY", {})
    cls = CupyBackend if request.param == "cupy" else PycudaBackend
    return gpu, cls


def host_clock():
    """A host clock that ticks one second per reading."""
    ticks = itertools.count()
    return lambda: float(next(ticks))


@pytest.mark.parametrize("memory", ["pageable", "pinned"])
def test_a_run_is_one_stream_of_copies_kernel_copies_then_one_synchronize(fake, memory):
    gpu, cls = fake
    kernel = kernels.load("polyval")
    variant = next(v for v in cls.variants(kernel) if v.option("memory") == memory)
    session = cls(variant, 1, clock=host_clock())
    startup = session.open()
    assert set(startup.steps_s) == {"context"}
    params = kernel.resolve_params({"k": 5})
    inputs = kernel.make_inputs(1001, params, seed=2)
    prepared = session.prepare(kernel, params, inputs)
    assert set(prepared.steps_s) == {"compile", "alloc", "first_launch"} | (
        {"pin"} if memory == "pinned" else set())
    assert prepared.facts["registers"] == 48 and prepared.facts["local_bytes"] == 0
    assert prepared.facts["compile_cache"] in ("hit", "miss", "unknown", "disabled")

    del gpu.log[:]
    out, timing = session.run()
    assert gpu.log == ["event", "h2d", "h2d", "event", "kernel", "event", "d2h", "event", "sync"]
    check = kernel.check(out, kernel.reference(inputs, params), inputs, params)
    assert check.ok, check

    expected = dict(zip(phases.RUN_PHASES, (2 * H2D_S, KERNEL_S, D2H_S)))
    assert timing.phases_s == pytest.approx(expected)
    assert timing.device_s == timing.phases_s
    # Four host-clock readings, one tick apart: transfer_in, compute, transfer_out, wall.
    assert timing.extra["host_phases_s"] == {p: 1.0 for p in phases.RUN_PHASES}
    assert timing.wall_s == 3.0

    again = session.prepare(kernel, params, inputs)
    assert "compile" not in again.steps_s and "first_launch" not in again.steps_s
    session.release()
    session.close()
    session.close()  # safe twice
    assert gpu.context_depth == 0


def test_refuses_a_problem_larger_than_free_device_memory(fake):
    gpu, cls = fake
    gpu.free_bytes = 1000
    kernel = kernels.load("polyval")
    session = cls(cls.variants(kernel)[0], 1)
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


def test_check_available_returns_facts(fake, monkeypatch):
    _gpu, cls = fake
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    facts = cls.check_available()
    assert facts["compute_capability"] == "9.0"
    assert facts["driver"] == "13.0"
    assert facts["device"]
