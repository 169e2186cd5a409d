"""Small fakes of CuPy and PyCUDA over one fake device, for the GPU adapters, the GPU backend and
`gpukit limits` without a GPU.

The fakes execute copies with NumPy and kernels as their real CUDA C built for the host
(tests/cuda_host.py), fed the argument bytes each library would pack; device memory is host
memory, with guard bytes after each allocation that every launch checks. kernels/limits.cu's
functions, which read GPU registers, are simulated by name instead (SIMULATED).

The device clock: every stream is a queue, and each kind of work has one engine (an H2D copy
engine, a D2H copy engine, the SMs), so an operation starts when both its stream and its engine
are free, and never before the device time the host last synchronized with. An event's time is
its stream's time when it was recorded. By default each copy takes H2D_S, D2H_S or D2D_S, each
kernel KERNEL_S (EMPTY_KERNEL_S with n = 0), each memset MEMSET_S; `FakeGPU.copy_s` can be
replaced by a bandwidth model.
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import importlib.machinery
import os
import struct
import sys
import types
from pathlib import Path

import numpy as np

from gpukit import kernels

import cuda_host

H2D_S, KERNEL_S, D2H_S, D2D_S, EMPTY_KERNEL_S, MEMSET_S = 1e-3, 2e-3, 3e-3, 1e-3, 0.5e-3, 0.5e-3
FMA_FLOPS = 50e12
L2_BYTES = 50 << 20
SMS = 132
DEVICE_ALIGN, GUARD_BYTES, GUARD_VALUE = 256, 64, 0xA5

# Every kernel with a CUDA version: the fakes find where `n` sits in a function's arguments here.
CUDA_KERNELS = ("polyval", "blackscholes", "mandelbrot", "nbody",
                f"{Path(__file__).resolve().parent.parent / 'examples' / 'my_kernel.py'}:Saxpy")

# A test's own CUDA function -> where its `n` sits.
N_AT: dict[str, int] = {}


def n_position(function: str) -> int:
    return N_AT[function] if function in N_AT else _builtin_n_position(function)


@functools.cache
def _builtin_n_position(function: str) -> int:
    for spec in CUDA_KERNELS:
        kernel = kernels.load(spec)
        launch = kernel.cuda_launch(1, kernel.resolve_params({}))
        if launch.function == function:
            return [a if isinstance(a, str) else a[0] for a in launch.args].index("n")
    raise AssertionError(f"no kernel has the CUDA function {function}")


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
        self.engine_free = {"h2d": 0.0, "d2h": 0.0, "d2d": 0.0, "sm": 0.0}
        self.streams: dict[int, FakeStream] = {}
        self.pinned: dict[int, np.ndarray] = {}  # host address -> page-locked array
        self.pageable_copies = 0
        self.copies: list[tuple[str, str, int]] = []  # (kind, memory, bytes) of every copy
        self.context_depth = 0
        self.contexts_created = 0
        self.current = None  # CuPy's current stream
        self.now_s = 0.0  # the device time the host last waited for: nothing starts before it

    def copy_s(self, kind: str, memory: str, nbytes: int) -> float:
        return {"h2d": H2D_S, "d2h": D2H_S, "d2d": D2D_S}[kind]

    # -- memory --

    def alloc(self, nbytes):
        """Device memory is host memory here, at real addresses, so that kernels compiled for
        the host (tests/cuda_host.py) run on it; 256-byte aligned like cudaMalloc's, with guard
        bytes after it that every launch checks."""
        nbytes = max(1, nbytes)
        if nbytes > self.free_bytes:
            raise MemoryError(f"out of fake device memory ({nbytes} bytes)")
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
        """Host bytes at `address`, and whether they are page-locked."""
        for base, arr in self.pinned.items():
            if base <= address and address + nbytes <= base + arr.nbytes:
                return arr.reshape(-1).view(np.uint8)[address - base:address - base + nbytes], True
        raw = (ctypes.c_uint8 * nbytes).from_address(address) if nbytes else bytearray()
        return np.frombuffer(raw, dtype=np.uint8), False

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

    def _copied(self, kind, pinned, nbytes, stream):
        memory = "pinned" if pinned else "pageable"
        self.pageable_copies += not pinned
        self.copies.append((kind, memory, nbytes))
        self.enqueue(stream, kind, self.copy_s(kind, memory, nbytes), kind)
        if not pinned:
            # A pageable copy returns when it is done, as cudaMemcpyAsync's does from the
            # host's side (the driver stages it through its own pinned buffer).
            self.now_s = max(self.now_s, stream.ready_s)

    def h2d(self, stream, ptr, address, nbytes):
        src, pinned = self.host_view(address, nbytes)
        self.view(ptr, nbytes)[:] = src
        self._copied("h2d", pinned, nbytes, stream)

    def d2h(self, stream, address, ptr, nbytes):
        dst, pinned = self.host_view(address, nbytes)
        dst[:] = self.view(ptr, nbytes)
        self._copied("d2h", pinned, nbytes, stream)

    def d2d(self, stream, dst, src, nbytes):
        self.view(dst, nbytes)[:] = self.view(src, nbytes)
        self.copies.append(("d2d", "device", nbytes))
        self.enqueue(stream, "d2d", self.copy_s("d2d", "device", nbytes), "d2d")

    def memset(self, stream, ptr, nbytes, value=0):
        self.view(ptr, nbytes)[:] = value
        self.enqueue(stream, "sm", MEMSET_S, "memset")

    def launch(self, stream, function, grid, block, addresses, args):
        """Run a kernel: limits.cu's are simulated, every other one is its real CUDA C run on
        the host (n > 0; with n = 0 it has nothing to do), reading each argument from the bytes
        at `addresses` as the signature's C type."""
        if function.name in SIMULATED:
            seconds = SIMULATED[function.name](self, grid, block, args)
            self.enqueue(stream, "sm", seconds, function.name.removeprefix("gpukit_"))
            return
        n = int(args[n_position(function.name)])
        if n > 0:
            cuda_host.HostKernel(function.source, function.name).launch(grid, block, addresses)
            assert all(np.all(g == GUARD_VALUE) for g in self.guards), \
                f"{function.name} wrote past the end of a device allocation"
        self.enqueue(stream, "sm", KERNEL_S if n > 0 else EMPTY_KERNEL_S,
                     "kernel" if n > 0 else "empty")


def _fma(gpu, grid, block, args):
    out, iters = int(args[0]), int(args[1])
    threads = grid * block
    gpu.view(out, 4 * threads)[:] = np.ones(threads, np.float32).view(np.uint8)
    return 2 * 8 * iters * threads / FMA_FLOPS


# kernels/limits.cu's functions: name -> device seconds (and any effect) of a launch.
SIMULATED = {
    "gpukit_spin": lambda gpu, grid, block, args: int(args[0]) * 1e-9,
    "gpukit_empty": lambda gpu, grid, block, args: EMPTY_KERNEL_S,
    "gpukit_fma": _fma,
}


class FakeFunction:
    num_regs, local_size_bytes, shared_size_bytes = 48, 0, 4096

    def __init__(self, source, name):
        self.source, self.name = source, name
        if name not in SIMULATED:
            cuda_host.HostKernel(source, name)  # built now: a compile error shows at load


def _event_class(gpu):
    class Event:
        def __init__(self, *args, **kwargs):
            self.t = None

        def record(self, stream=None):
            assert stream is not None, "an event on the legacy default stream"
            self.t = stream.ready_s = max(stream.ready_s, gpu.now_s)
            gpu.log.append("event")
            return self

        def synchronize(self):
            gpu.now_s = max(gpu.now_s, self.t)

    return Event


def _compile_label(code: str) -> str:
    return "compile_limits" if "gpukit_spin" in code else "compile"


# -- a fake cupy ----------------------------------------------------------------------------


def fake_cupy(gpu):
    cupy = types.ModuleType("cupy")
    cupy.__version__ = "0.fake"

    class CUDARuntimeError(RuntimeError):
        pass

    def memcpy_async(dst, src, size, kind, stream_ptr):
        stream = gpu.streams[stream_ptr]
        if kind == 1:
            gpu.h2d(stream, dst, src, size)
        elif kind == 2:
            gpu.d2h(stream, dst, src, size)
        else:
            assert kind == 3
            gpu.d2d(stream, dst, src, size)

    def free(ptr):
        assert ptr == 0
        gpu.contexts_created += 1

    runtime = types.SimpleNamespace(
        CUDARuntimeError=CUDARuntimeError, getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"Fake GPU", "major": 9, "minor": 0,
                                       "totalGlobalMem": 1 << 34, "multiProcessorCount": SMS,
                                       "l2CacheSize": L2_BYTES},
        driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13020,
        memGetInfo=lambda: (gpu.free_bytes, 1 << 34), free=free,
        cudaDevAttrL2CacheSize=38,
        deviceGetAttribute=lambda attr, dev: {38: L2_BYTES}[attr],
        memcpyHostToDevice=1, memcpyDeviceToHost=2, memcpyDeviceToDevice=3,
        memcpyAsync=memcpy_async,
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

    class MemoryPointer:
        def __init__(self, nbytes):
            self.ptr = gpu.alloc(nbytes)

    class RawKernel(FakeFunction):
        def __call__(self, grid, block, args):
            # CuPy passes a NumPy scalar as its own bytes and a Python int as a 64-bit integer.
            keep = cuda_host.ParamBytes()
            addresses = [keep.value(a if isinstance(a, np.generic) else np.int64(a))
                         for a in args]
            gpu.launch(gpu.current, self, grid[0], block[0], addresses, args)

    class RawModule:
        def __init__(self, code, options=()):
            assert 'extern "C"' in code
            self.code, self.options = code, options

        def compile(self):
            gpu.log.append(_compile_label(self.code))

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
        alloc=MemoryPointer, get_elapsed_time=lambda a, b: (b.t - a.t) * 1e3,
        compiler=types.SimpleNamespace(_kernel_cache_backend=None))
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
            return {"MULTIPROCESSOR_COUNT": SMS, "L2_CACHE_SIZE": L2_BYTES}[attribute]

        def retain_primary_context(self):
            gpu.contexts_created += 1
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
            assert gpu.context_depth > 0
            self.ptr = gpu.alloc(nbytes)

        def __int__(self):
            return self.ptr

        def free(self):
            gpu.log.append("free")

    class Function(FakeFunction):
        def prepare(self, arg_types):
            self.arg_format = "".join(arg_types)

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
            gpu.launch(stream, self, grid[0], block[0],
                       [packed.ctypes.data + o for o in offsets], args)

    class SourceModule:
        def __init__(self, source, no_extern_c=False, options=None, cache_dir=None):
            assert no_extern_c and gpu.context_depth > 0
            gpu.log.append(_compile_label(source) if cache_dir is None else "compile_cold")
            if cache_dir is not None:
                assert os.path.isdir(cache_dir) and not os.listdir(cache_dir)
            self.source = source

        def get_function(self, name):
            return Function(self.source, name)

    def host_address(arr):
        assert arr.flags.c_contiguous
        return arr.ctypes.data

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
    cuda.memcpy_htod_async = lambda dst, src, stream: gpu.h2d(stream, int(dst), host_address(src),
                                                              src.nbytes)
    cuda.memcpy_dtoh_async = lambda dst, src, stream: gpu.d2h(stream, host_address(dst),
                                                              int(src), dst.nbytes)
    cuda.memcpy_dtod_async = lambda dst, src, size, stream: gpu.d2d(stream, int(dst), int(src),
                                                                    size)
    cuda.memset_d8_async = lambda dst, value, count, stream: gpu.memset(stream, int(dst), count,
                                                                         value)
    compiler = types.ModuleType("pycuda.compiler")
    compiler.SourceModule = SourceModule
    pycuda.driver, pycuda.compiler = cuda, compiler
    return {"pycuda": pycuda, "pycuda.driver": cuda, "pycuda.compiler": compiler}


LIBRARIES = ("cupy", "pycuda")


def install(monkeypatch, gpu, libraries=LIBRARIES):
    """Put the fake libraries in sys.modules, and clear every process-wide cache of the GPU
    code, so that nothing outlives the fake."""
    from gpukit.backends import gpu_backend, pycuda_backend
    for library in libraries:
        modules = fake_cupy(gpu) if library == "cupy" else fake_pycuda(gpu)
        for name, module in modules.items():
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # for find_spec
            monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(pycuda_backend, "_PRIMARY", {})
    monkeypatch.setattr(gpu_backend, "_COMPILE_FIGURES", {})
    monkeypatch.setattr(gpu_backend, "_CONTEXT", {})


def install_globally(gpu: FakeGPU | None = None) -> FakeGPU:
    """Put both fake libraries in sys.modules for the rest of this process (rehearsals only:
    tests/fake_gpu_site)."""
    gpu = gpu or FakeGPU()
    for modules in (fake_cupy(gpu), fake_pycuda(gpu)):
        for name, module in modules.items():
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = module
    return gpu
