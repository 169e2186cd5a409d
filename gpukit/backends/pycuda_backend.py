"""pycuda: PyCUDA's calls for the GPU backend (gpukit.backends.gpu_backend has the timing model):
nvcc compiles the kernel's CUDA C (`SourceModule`), launches are PyCUDA's prepared call (its
fast path), copies `memcpy_htod_async`/`memcpy_dtoh_async`. `compile_cold` gives nvcc an empty
`cache_dir`; `compile_warm` reads PyCUDA's own cache folder, which the session's compile filled.

Context. Never `pycuda.autoinit`, which makes a context beside the primary context that CuPy
uses in this process. The adapter retains the primary context and pushes it around each step
(`active`), leaving the thread's context stack as it found it; it keeps it until the process
exits, since PyCUDA's detach of a primary context leaves it current on the thread.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import tempfile

import numpy as np

from gpukit.backends.cuda_common import PYCUDA_TRAITS, no_device_text
from gpukit.backends.gpu_backend import DeviceBase, GpuBackend
from gpukit.errors import BackendUnavailable
from gpukit.units import cuda_version_text

# The same C++ dialect CuPy's NVRTC compiles with; no fast math, and nvcc's default -ftz=false.
NVCC_OPTIONS = ("-std=c++17",)

# Primary contexts retained by this process, by device ordinal (see the module docstring).
_PRIMARY: dict[int, object] = {}

STREAM_NON_BLOCKING = 1  # cuStreamCreate's flag, which PyCUDA's Stream(flags) passes on


def _import_driver():
    if importlib.util.find_spec("pycuda") is None:
        raise BackendUnavailable("pycuda is not installed (the cuda extra: pip install '.[cuda]')")
    try:
        import pycuda.driver as cuda
    except Exception as exc:  # its extension module links libcuda; without a driver it can't load
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "libcuda" in text:
            raise BackendUnavailable("no CUDA driver: libcuda is not installed or cannot be "
                                     "loaded") from None
        raise BackendUnavailable(f"pycuda cannot be imported: {text}") from None
    try:
        cuda.init()
    except cuda.Error as exc:
        text = str(exc)
        if "no CUDA-capable device" in text:
            raise BackendUnavailable(no_device_text()) from None
        raise BackendUnavailable(f"CUDA cannot start: {text}".splitlines()[0]) from None
    return cuda


def compile_cache_folder() -> str | None:
    # Mirrors pycuda.compiler.compile: PYCUDA_DISABLE_CACHE, PYCUDA_CACHE_DIR, else platformdirs.
    if "PYCUDA_DISABLE_CACHE" in os.environ:
        return None
    if "PYCUDA_CACHE_DIR" in os.environ:
        return os.environ["PYCUDA_CACHE_DIR"] or None  # set but empty: PyCUDA caches nothing
    try:
        import platformdirs
    except ImportError:
        return None
    return os.path.join(platformdirs.user_cache_dir("pycuda", "pycuda"), "compiler-cache-v1")


class PycudaDevice(DeviceBase):
    """The device adapter (gpu_backend.Device) over PyCUDA."""

    library = "pycuda"
    compile_cold_how = "nvcc, with an empty temporary cache_dir; module load included"
    compile_warm_how = "PyCUDA's cache folder; module load included"

    @classmethod
    def facts(cls, ordinal: int) -> dict:
        cuda = _import_driver()
        import pycuda
        try:
            count = cuda.Device.count()
            if count < 1:
                raise BackendUnavailable("no CUDA device is visible")
            dev, attr = cuda.Device(ordinal), cuda.device_attribute
            facts = {"device": dev.name(), "pycuda": pycuda.VERSION_TEXT,
                     "compute_capability": "{}.{}".format(*dev.compute_capability()),
                     "driver": cuda_version_text(cuda.get_driver_version()),
                     # The CUDA version PyCUDA was built against.
                     "runtime": ".".join(str(v) for v in cuda.get_version()[:2]),
                     "memory_bytes": int(dev.total_memory()),
                     "multiprocessors": dev.get_attribute(attr.MULTIPROCESSOR_COUNT),
                     "l2_bytes": dev.get_attribute(attr.L2_CACHE_SIZE), "devices": count}
        except cuda.Error as exc:
            raise BackendUnavailable(f"CUDA device query failed: {exc}".splitlines()[0]) from None
        nvcc = shutil.which("nvcc")
        if nvcc is None:
            # SourceModule runs nvcc even on a cache hit (its version is part of the cache key).
            raise BackendUnavailable("pycuda compiles with nvcc, which is not on PATH")
        return {**facts, "nvcc": nvcc}

    def __init__(self, ordinal: int):
        self.cuda = _import_driver()
        self.ordinal = ordinal
        self._memory = {}  # device pointer -> DeviceAllocation
        self._modules = []  # a function's module must outlive it

    def create_context(self) -> None:
        with self.active():  # retaining the primary context creates it
            pass

    @contextlib.contextmanager
    def active(self):
        if self.ordinal not in _PRIMARY:
            if not _PRIMARY:  # let go of them at exit, while the driver is still there
                atexit.register(_PRIMARY.clear)
            _PRIMARY[self.ordinal] = self.cuda.Device(self.ordinal).retain_primary_context()
        _PRIMARY[self.ordinal].push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def l2_bytes(self) -> int:
        device = self.cuda.Device(self.ordinal)
        return int(device.get_attribute(self.cuda.device_attribute.L2_CACHE_SIZE))

    def free_bytes(self) -> int:
        return self.cuda.mem_get_info()[0]

    def alloc(self, nbytes: int) -> int:
        allocation = self.cuda.mem_alloc(max(1, nbytes))
        self._memory[int(allocation)] = allocation
        return int(allocation)

    def free(self, ptr: int) -> None:
        allocation = self._memory.pop(ptr, None)
        if allocation is not None:
            allocation.free()

    def pinned(self, shape, dtype):
        return self.cuda.pagelocked_empty(shape, dtype)

    def fill(self, ptr: int, byte: int, nbytes: int, stream) -> None:
        self.cuda.memset_d8_async(ptr, byte, nbytes, stream)

    def copy_in(self, dst: int, src, stream) -> None:
        self.cuda.memcpy_htod_async(dst, src, stream)

    def copy_out(self, dst, src: int, stream) -> None:
        self.cuda.memcpy_dtoh_async(dst, src, stream)

    def copy_device(self, dst: int, src: int, nbytes: int, stream) -> None:
        self.cuda.memcpy_dtod_async(dst, src, nbytes, stream)

    def stream(self, non_blocking: bool = False):
        return self.cuda.Stream(STREAM_NON_BLOCKING if non_blocking else 0)

    def event(self):
        return self.cuda.Event()

    def wait(self, stream, event) -> None:
        stream.wait_for_event(event)

    def elapsed_s(self, start, end) -> float:
        return end.time_since(start) * 1e-3

    def load(self, source: str, name: str, arg_types):
        module = self.compile_warm(source)
        self._modules.append(module)
        function = module.get_function(name)
        # Arrays pass as device pointers ("P"), scalars with their NumPy type ("l", "i", "f").
        function.prepare(["P" if t is None else np.dtype(t).char for t in arg_types])
        return function

    def launch(self, function, grid: int, block: int, args: tuple, stream) -> None:
        function.prepared_async_call((grid, 1), (block, 1, 1), stream, *args)

    def cache_folder(self) -> str | None:
        return compile_cache_folder()

    def compile_cold(self, source: str) -> None:
        with tempfile.TemporaryDirectory(prefix="gpukit-pycuda-cold-") as fresh:
            self.compile_warm(source, cache_dir=fresh)

    def compile_warm(self, source: str, cache_dir: str | None = None):
        from pycuda.compiler import SourceModule
        return SourceModule(source, no_extern_c=True, options=list(NVCC_OPTIONS),
                            cache_dir=cache_dir)


class PycudaBackend(GpuBackend):
    name = "pycuda"
    summary = ("PyCUDA SourceModule (nvcc), primary context, CUDA-event phase times; one stream, "
               "or pinned chunks streamed on several")
    device_class = PycudaDevice
    traits = PYCUDA_TRAITS


__all__ = ["PycudaBackend", "PycudaDevice"]
