"""cupy: the kernel's CUDA C source compiled by NVRTC (`cupy.RawModule`) and run on one stream.

Copies use CuPy's own calls (`ndarray.set`, `ndarray.get(out=..., blocking=False)`), so their
Python overhead is part of what this backend measures. Device buffers come from CuPy's memory
pool, allocated once per problem; `release()` hands them back to the driver, so that PyCUDA in
the same process sees the memory free. The timing model is in gpukit.backends.cuda_common.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from gpukit.backends.base import Backend, Startup
from gpukit.backends.cuda_common import (CompileCacheProbe, check_device_memory,
                                         cuda_variants, gpu_run_timing, make_problem, version_text)
from gpukit.errors import BackendUnavailable, KernelError

DEVICE = 0

# Stated rather than left to CuPy's default (which is this since CuPy 14). CuPy adds -ftz=true to
# every NVRTC compile; kernels/polyval.cu uses an FMA that ignores it, so both GPU backends run
# the same instructions.
NVRTC_OPTIONS = ("--std=c++17",)


def _import_cupy():
    if importlib.util.find_spec("cupy") is None:
        raise BackendUnavailable("cupy is not installed (pip install 'gpukit[cuda]')")
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
        return (f"the CUDA driver supports CUDA {version_text(driver)} but CuPy's runtime is "
                f"CUDA {version_text(runtime.runtimeGetVersion())}")
    if code == "cudaErrorNoDevice":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return f"no CUDA device is visible{hint}"
    return f"CUDA cannot start: {exc}".splitlines()[0]


def _kernel_cache_folder(cupy) -> str | None:
    # CuPy's default disk cache keeps its folder in a private attribute; its documented setting
    # is CUPY_CACHE_DIR with ~/.cupy/kernel_cache as the default.
    backend = getattr(cupy.cuda.compiler, "_kernel_cache_backend", None)
    folder = getattr(backend, "_cache_dir", None)
    return folder or os.environ.get("CUPY_CACHE_DIR", os.path.expanduser("~/.cupy/kernel_cache"))


class CupyBackend(Backend):
    name = "cupy"
    summary = "CuPy RawModule (NVRTC), one stream, CUDA-event phase times; pageable or pinned"
    gpu = True

    @classmethod
    def variants(cls, kernel):
        return cuda_variants(cls.name, kernel)

    @classmethod
    def check_available(cls):
        cupy = _import_cupy()
        runtime = cupy.cuda.runtime
        try:
            count = runtime.getDeviceCount()
            if count < 1:
                raise BackendUnavailable("no CUDA device is visible")
            props = runtime.getDeviceProperties(DEVICE)
            driver, rt = runtime.driverGetVersion(), runtime.runtimeGetVersion()
        except runtime.CUDARuntimeError as exc:
            raise BackendUnavailable(_no_device_reason(runtime, exc)) from None
        name = props["name"]
        return {
            "device": name.decode() if isinstance(name, bytes) else str(name),
            "cupy": cupy.__version__,
            "compute_capability": f"{props['major']}.{props['minor']}",
            "driver": version_text(driver),
            "runtime": version_text(rt),
            "memory_bytes": int(props["totalGlobalMem"]),
            "multiprocessors": int(props["multiProcessorCount"]),
            "l2_bytes": int(props.get("l2CacheSize", 0)),
            "devices": count,
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self):
        self._cupy = cupy = _import_cupy()
        self._functions = {}  # (kernel, function name) -> (RawKernel, launched yet?)
        self._problem = None
        t0 = self.clock()
        cupy.cuda.Device(DEVICE).use()
        # Creating a stream needs the primary context, so this pays for it if nobody has yet
        # (PyCUDA in the same process shares the same primary context). A plain stream, as
        # PyCUDA's Stream() is, so the two backends differ only in library.
        self._stream = cupy.cuda.Stream()
        self._events = [cupy.cuda.Event() for _ in range(4)]
        self._stream.synchronize()
        return Startup({"context": self.clock() - t0},
                       {"device": DEVICE, "memory": self.variant.option("memory")})

    def prepare(self, kernel, params, inputs):
        cupy = self._cupy
        self.release()
        startup = Startup()
        problem = make_problem(kernel, params, inputs)
        function = self._function(kernel, problem.launch.function, startup)

        pool = cupy.get_default_memory_pool()
        free, _total = cupy.cuda.runtime.memGetInfo()
        check_device_memory(problem, free + pool.free_bytes())

        t0 = self.clock()
        device = {name: cupy.empty(a.shape, dtype=a.dtype) for name, a in problem.inputs.items()}
        device.update({name: cupy.empty(problem.n, dtype=dt)
                       for name, dt in problem.outputs.items()})
        self._stream.synchronize()
        startup.steps_s["alloc"] = self.clock() - t0

        pinned = self.variant.option("memory") == "pinned"
        if pinned:
            # Page-locked copies of the inputs, filled once here: the runs then time DMA from
            # pinned memory, not this copy. Outputs start as NaN so an unwritten row fails the
            # check.
            t0 = self.clock()
            host_in = {}
            for name, a in problem.inputs.items():
                host_in[name] = self._empty_pinned(a.shape, a.dtype)
                host_in[name][...] = a
            host_out = {}
            for name, dt in problem.outputs.items():
                host_out[name] = self._empty_pinned((problem.n,), dt)
                host_out[name].fill(np.nan)
            startup.steps_s["pin"] = self.clock() - t0
        else:
            host_in, host_out = problem.inputs, None

        self._problem = problem
        self._kernel, self._params = kernel, params
        self._device, self._host_in, self._host_out = device, host_in, host_out
        self._args = problem.args(device)

        if not function[1]:
            # The first launch loads the module onto the device (CUDA loads lazily); paying for
            # it here keeps it out of the first timed run. The inputs may not be on the device
            # yet: the output is overwritten by every run.
            t0 = self.clock()
            self._launch(function[0])
            self._stream.synchronize()
            startup.steps_s["first_launch"] = self.clock() - t0
            self._functions[(kernel.name, problem.launch.function)] = (function[0], True)
        startup.facts["device_bytes"] = problem.device_bytes
        return startup

    def run(self):
        problem, stream, events = self._problem, self._stream, self._events
        function = self._functions[(self._kernel.name, problem.launch.function)][0]
        pinned = self._host_out is not None
        # Pageable outputs: new arrays, NaN-filled (so faulted in) before the clock starts, as
        # the CPU backends allocate theirs.
        host_out = (self._host_out if pinned
                    else self._kernel.alloc_outputs(problem.n, self._params))
        t0 = self.clock()
        events[0].record(stream)
        for name, src in self._host_in.items():
            self._device[name].set(src, stream=stream)
        events[1].record(stream)
        t1 = self.clock()
        self._launch(function)
        events[2].record(stream)
        t2 = self.clock()
        for name, dst in host_out.items():
            self._device[name].get(stream=stream, out=dst, blocking=False)
        events[3].record(stream)
        try:
            stream.synchronize()
        except Exception as exc:
            raise KernelError(f"CUDA reported an error while running "
                              f"{self._kernel.name}: {exc}") from exc
        t3 = self.clock()
        elapsed = self._cupy.cuda.get_elapsed_time
        event_s = [elapsed(events[i], events[i + 1]) * 1e-3 for i in range(3)]
        return host_out, gpu_run_timing(event_s, (t0, t1, t2, t3))

    def release(self):
        if getattr(self, "_problem", None) is None:
            return
        self._problem = None
        self._device = self._host_in = self._host_out = self._args = None
        # Hand the memory back to the driver, not just to CuPy's pools: the next problem, or the
        # PyCUDA backend in this same process, must see it free.
        self._stream.synchronize()
        self._cupy.get_default_memory_pool().free_all_blocks()
        self._cupy.get_default_pinned_memory_pool().free_all_blocks()

    def close(self):
        if getattr(self, "_cupy", None) is None:
            return
        self.release()
        self._functions = {}
        self._stream = self._events = None
        self._cupy = None

    # -- helpers -----------------------------------------------------------------------------

    def _function(self, kernel, name: str, startup: Startup):
        """Function `name` of `kernel`'s source, compiled once per session; records the compile."""
        key = (kernel.name, name)
        if key not in self._functions:
            cupy = self._cupy
            source = kernel.cuda_source()
            probe = CompileCacheProbe(_kernel_cache_folder(cupy))
            t0 = self.clock()
            module = cupy.RawModule(code=source, options=NVRTC_OPTIONS)
            module.compile()
            function = module.get_function(name)
            startup.steps_s["compile"] = self.clock() - t0
            startup.facts.update(compile_cache=probe.result(), registers=function.num_regs,
                                 local_bytes=function.local_size_bytes,
                                 shared_bytes=function.shared_size_bytes)
            self._functions[key] = (function, False)
        return self._functions[key]

    def _launch(self, function) -> None:
        launch = self._problem.launch
        try:
            # RawKernel launches on the current stream, so make ours current for the call.
            with self._stream:
                function((launch.grid,), (launch.block,), self._args)
        except Exception as exc:
            raise KernelError(f"launching {launch.function} failed: {exc}") from exc

    def _empty_pinned(self, shape, dtype) -> np.ndarray:
        import cupyx
        return cupyx.empty_pinned(shape, dtype=dtype)


__all__ = ["CupyBackend"]
