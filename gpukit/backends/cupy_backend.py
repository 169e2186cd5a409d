"""cupy: CuPy's calls for the GPU backend (gpukit.backends.gpu_backend, which has the timing
model): NVRTC compiles the kernel's CUDA C (`cupy.RawModule`), copies are raw `cudaMemcpyAsync`
calls, device memory comes from CuPy's pool and goes back to the driver on `release`, so that
PyCUDA in the same process sees it free. CuPy works in the device's primary context, current on
the thread once `Device.use()` has run, so there is nothing to push.

Compilation figures, once per process: `compile_cold` is `cupy._core.core.compile_with_cache`
(what `RawModule` calls) with CUPY_CACHE_IN_MEMORY=1, so NVRTC compiles and no disk cache is
read or written; `compile_warm` is the same call with the disk cache as configured, after the
session's own compile put the module there. Both load the module onto the device.
"""

from __future__ import annotations

import importlib.util
import os

from gpukit.backends.cuda_common import CUPY_TRAITS, environ, no_device_text
from gpukit.backends.gpu_backend import DeviceBase, GpuBackend
from gpukit.errors import BackendUnavailable
from gpukit.units import cuda_version_text

# Stated rather than left to CuPy's default (which is this since CuPy 14). CuPy adds -ftz=true to
# every NVRTC compile; kernels/polyval.cu uses an FMA that ignores it, so both GPU backends run
# the same instructions.
NVRTC_OPTIONS = ("--std=c++17",)


def _import_cupy():
    if importlib.util.find_spec("cupy") is None:
        raise BackendUnavailable("cupy is not installed (the cuda extra: pip install '.[cuda]')")
    try:
        import cupy
    except Exception as exc:  # a broken install raises ImportError or worse at import
        raise BackendUnavailable(f"cupy cannot be imported: {exc}".splitlines()[0]) from None
    return cupy


def _no_device_reason(runtime, exc) -> str:
    code = str(exc).split(":", 1)[0]
    if code == "cudaErrorInsufficientDriver":
        driver = runtime.driverGetVersion()
        if driver == 0:
            return "no CUDA driver: libcuda is not installed or cannot be loaded"
        return (f"the CUDA driver supports CUDA {cuda_version_text(driver)} but CuPy's runtime is "
                f"CUDA {cuda_version_text(runtime.runtimeGetVersion())}")
    if code == "cudaErrorNoDevice":
        return no_device_text()
    return f"CUDA cannot start: {exc}".splitlines()[0]


class CupyDevice(DeviceBase):
    """The device adapter (gpu_backend.Device) over CuPy."""

    library = "cupy"
    offers_array_namespace = True
    compile_cold_how = ("NVRTC with CUPY_CACHE_IN_MEMORY=1: no disk cache read or written, "
                        "module load included; NVRTC was already loaded by the session's "
                        "compile, so a new process pays more")
    compile_warm_how = "CuPy's disk kernel cache, module load included"

    @classmethod
    def facts(cls, ordinal: int) -> dict:
        cupy = _import_cupy()
        runtime = cupy.cuda.runtime
        try:
            count = runtime.getDeviceCount()
            if count < 1:
                raise BackendUnavailable("no CUDA device is visible")
            props = runtime.getDeviceProperties(ordinal)
            driver, rt = runtime.driverGetVersion(), runtime.runtimeGetVersion()
        except runtime.CUDARuntimeError as exc:
            raise BackendUnavailable(_no_device_reason(runtime, exc)) from None
        name = props["name"]
        return {"device": name.decode() if isinstance(name, bytes) else str(name),
                "cupy": cupy.__version__,
                "compute_capability": f"{props['major']}.{props['minor']}",
                "driver": cuda_version_text(driver), "runtime": cuda_version_text(rt),
                "memory_bytes": int(props["totalGlobalMem"]),
                "multiprocessors": int(props["multiProcessorCount"]),
                "l2_bytes": int(props.get("l2CacheSize", 0)), "devices": count}

    def __init__(self, ordinal: int):
        self.cupy = cupy = _import_cupy()
        self.ordinal = ordinal
        self.runtime = cupy.cuda.runtime
        cupy.cuda.Device(ordinal).use()
        self._memory = {}  # device pointer -> CuPy MemoryPointer, which frees it when dropped

    def create_context(self) -> None:
        self.runtime.free(0)  # cudaFree(0): the runtime's own way to make the primary context

    def array_namespace(self):
        return self.cupy

    def l2_bytes(self) -> int:
        return int(self.runtime.deviceGetAttribute(self.runtime.cudaDevAttrL2CacheSize,
                                                   self.ordinal))

    def free_bytes(self) -> int:
        return self.runtime.memGetInfo()[0] + self.cupy.get_default_memory_pool().free_bytes()

    def alloc(self, nbytes: int) -> int:
        memory = self.cupy.cuda.alloc(max(1, nbytes))
        self._memory[memory.ptr] = memory
        return memory.ptr

    def free(self, ptr: int) -> None:
        self._memory.pop(ptr, None)

    def release(self) -> None:
        # Back to the driver, not just to CuPy's pools: PyCUDA must see the memory free.
        self.cupy.get_default_memory_pool().free_all_blocks()
        self.cupy.get_default_pinned_memory_pool().free_all_blocks()

    def pinned(self, shape, dtype):
        import cupyx
        return cupyx.empty_pinned(shape, dtype=dtype)

    def fill(self, ptr: int, byte: int, nbytes: int, stream) -> None:
        self.runtime.memsetAsync(ptr, byte, nbytes, stream.ptr)

    def copy_in(self, dst: int, src, stream) -> None:
        self.runtime.memcpyAsync(dst, src.ctypes.data, src.nbytes,
                                 self.runtime.memcpyHostToDevice, stream.ptr)

    def copy_out(self, dst, src: int, stream) -> None:
        self.runtime.memcpyAsync(dst.ctypes.data, src, dst.nbytes,
                                 self.runtime.memcpyDeviceToHost, stream.ptr)

    def copy_device(self, dst: int, src: int, nbytes: int, stream) -> None:
        self.runtime.memcpyAsync(dst, src, nbytes, self.runtime.memcpyDeviceToDevice, stream.ptr)

    def stream(self, non_blocking: bool = False):
        return self.cupy.cuda.Stream(non_blocking=non_blocking)

    def event(self):
        return self.cupy.cuda.Event()

    def wait(self, stream, event) -> None:
        stream.wait_event(event)

    def elapsed_s(self, start, end) -> float:
        return self.cupy.cuda.get_elapsed_time(start, end) * 1e-3

    def load(self, source: str, name: str, arg_types):
        module = self.cupy.RawModule(code=source, options=NVRTC_OPTIONS)
        module.compile()
        return module.get_function(name)

    def launch(self, function, grid: int, block: int, args: tuple, stream) -> None:
        with stream:  # RawKernel launches on the current stream
            function((grid,), (block,), args)

    def device_array(self, ptr: int, shape, dtype):
        # Over the allocation's own MemoryPointer, which keeps it alive while the array lives.
        return self.cupy.ndarray(shape, dtype, memptr=self._memory[ptr])

    def array_pointer(self, array) -> int:
        return array.data.ptr

    def on_stream(self, stream):
        return stream  # a CuPy Stream, entered, is the current one: CuPy's operations go there

    def cache_folder(self) -> str | None:
        # CuPy's default disk cache keeps its folder in a private attribute; its documented
        # setting is CUPY_CACHE_DIR with ~/.cupy/kernel_cache as the default.
        backend = getattr(self.cupy.cuda.compiler, "_kernel_cache_backend", None)
        folder = getattr(backend, "_cache_dir", None)
        return folder or os.environ.get("CUPY_CACHE_DIR",
                                        os.path.expanduser("~/.cupy/kernel_cache"))

    def compile_cold(self, source: str) -> None:
        with environ("CUPY_CACHE_IN_MEMORY", "1"):
            self.compile_warm(source)

    def compile_warm(self, source: str) -> None:
        from cupy._core import core
        core.compile_with_cache(source, NVRTC_OPTIONS, prepend_cupy_headers=False)


class CupyBackend(GpuBackend):
    name = "cupy"
    summary = ("CuPy RawModule (NVRTC), CUDA-event phase times; pageable or pinned on one "
               "stream, or pinned chunks streamed on several")
    device_class = CupyDevice
    traits = CUPY_TRAITS


__all__ = ["CupyBackend", "CupyDevice"]
