"""cupy: the kernel's CUDA C source compiled by NVRTC (`cupy.RawModule`) and run on one stream,
or, in the streamed variant, in chunks on several.

Copies of the one-stream variants use CuPy's own calls (`ndarray.set`,
`ndarray.get(out=..., blocking=False)`), so their Python overhead is part of what this backend
measures. The streamed variant uses raw `cudaMemcpyAsync` (`cupy.cuda.runtime.memcpyAsync`)
between page-locked buffers and offset device pointers: a first try with `set`/`get` on slices
of pinned buffers overlapped far less. Device buffers come from CuPy's memory pool, allocated
once per problem; `release()` hands them back to the driver, so that PyCUDA in the same process
sees the memory free. The timing model is in gpukit.backends.cuda_common.

Compilation, once per process (it costs a second or two): `compile_cold_s` is
`cupy._core.core.compile_with_cache` (what `RawModule` calls) with CUPY_CACHE_IN_MEMORY=1, so
NVRTC compiles the source and nothing is read from or written to the disk cache;
`compile_warm_s` is the same call with the disk cache as configured, after the session's own
compile has put the module there: a disk-cache hit. Both include loading the module onto the
device; neither goes through `RawModule`'s in-process memo, which the session's `compile` step
can hit (`compile_cache` says "hit" then too).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os

import numpy as np

from gpukit.backends import cuda_common as cc
from gpukit.backends.base import Backend, Startup
from gpukit.backends.cuda_common import (CompileCacheProbe, check_device_memory,
                                         cuda_variants, gpu_run_timing, make_problem, version_text)
from gpukit.errors import BackendUnavailable, KernelError

DEVICE = 0

# Stated rather than left to CuPy's default (which is this since CuPy 14). CuPy adds -ftz=true to
# every NVRTC compile; kernels/polyval.cu uses an FMA that ignores it, so both GPU backends run
# the same instructions.
NVRTC_OPTIONS = ("--std=c++17",)

# Cold and warm compile times by (source, options) digest: measured once per process.
_COMPILE_FIGURES: dict[str, dict] = {}


def _import_cupy():
    if importlib.util.find_spec("cupy") is None:
        raise BackendUnavailable("cupy is not installed (the cuda extra: "
                                 "pip install '.[cuda]')")
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


@contextlib.contextmanager
def _environ(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class CupyBackend(cc.GpuRunMixin, Backend):
    name = "cupy"
    summary = ("CuPy RawModule (NVRTC), CUDA-event phase times; pageable or pinned on one "
               "stream, or pinned chunks streamed on several")
    gpu = True
    traits = cc.CUPY_TRAITS

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
        self._problem = self._pipeline = self._flush = None
        self._empty_launch_s = None
        self._streamed = cc.is_streamed(self.variant)
        t0 = self.clock()
        cupy.cuda.Device(DEVICE).use()
        # Creating a stream needs the primary context, so this pays for it if nobody has yet
        # (PyCUDA in the same process shares the same primary context). A plain stream, as
        # PyCUDA's Stream() is, so the two backends differ only in library.
        self._stream = cupy.cuda.Stream()
        self._events = [cupy.cuda.Event() for _ in range(4)]
        self._stream.synchronize()
        runtime = cupy.cuda.runtime
        self._l2_bytes = int(runtime.deviceGetAttribute(runtime.cudaDevAttrL2CacheSize, DEVICE))
        return Startup({"context": self.clock() - t0},
                       {"device": DEVICE, "memory": self.variant.option("memory"),
                        "mode": "streamed" if self._streamed else "one stream",
                        "l2_bytes": self._l2_bytes})

    def prepare(self, kernel, params, inputs):
        cupy = self._cupy
        self.release()
        startup = Startup()
        problem = make_problem(kernel, params, inputs)
        function = self._function(kernel, problem.launch.function, startup)

        pool = cupy.get_default_memory_pool()
        free, _total = cupy.cuda.runtime.memGetInfo()
        free += pool.free_bytes()
        check_device_memory(problem, free)

        t0 = self.clock()
        device = {name: cupy.empty(a.shape, dtype=a.dtype) for name, a in problem.inputs.items()}
        device.update({name: cupy.empty(problem.n, dtype=dt)
                       for name, dt in problem.outputs.items()})
        for name in problem.outputs:
            # What no kernel writes (all bytes 0xFF: NaN, or -1), so that rows a kernel leaves
            # alone fail the check of the first run instead of passing with a freed buffer's
            # old results.
            out = device[name]
            cupy.cuda.runtime.memsetAsync(out.data.ptr, cc.UNWRITTEN_BYTE, out.nbytes,
                                          self._stream.ptr)
        self._stream.synchronize()
        startup.steps_s["alloc"] = self.clock() - t0

        pinned = self.variant.option("memory") == "pinned"
        if pinned:
            t0 = self.clock()
            host_in, host_out = cc.stage_pinned(problem, self._empty_pinned)
            startup.steps_s["pin"] = self.clock() - t0
        else:
            host_in, host_out = problem.inputs, None

        self._problem = problem
        self._kernel, self._params = kernel, params
        self._device, self._host_in, self._host_out = device, host_in, host_out
        self._args = problem.args(device)
        self._pipeline = None
        if self._streamed:
            self._pipeline = _Pipeline(self, cc.plan_streams(problem, self.settings))
            startup.facts.update(streams=self._pipeline.plan.streams,
                                 chunks=self._pipeline.plan.chunks)

        if not function[1]:
            # The first launch loads the module onto the device (CUDA loads lazily); paying for
            # it here keeps it out of the first timed run. It is given no rows (n = 0): the
            # inputs are not on the device yet, and a kernel that read them as indices could
            # fault and take the context down with it.
            t0 = self.clock()
            self._launch(function[0], grid=1, args=self._problem.args(self._device, rows=0))
            self._stream.synchronize()
            startup.steps_s["first_launch"] = self.clock() - t0
            self._functions[(kernel.name, problem.launch.function)] = (function[0], True)
        if self._empty_launch_s is None:
            self._empty_launch_s = self._time_empty_launch(function[0])
        startup.facts["empty_launch_s"] = self._empty_launch_s

        flush_bytes, why_not = cc.compute_only_flush_bytes(
            problem, self._l2_bytes, self.settings, free - problem.device_bytes)
        self._flush = None
        if flush_bytes is not None:
            self._flush = cupy.empty(flush_bytes, dtype=cupy.uint8)
            reps = int(self.settings.get("compute_only_reps", cc.COMPUTE_ONLY_REPS))
            self._compute_events = [(cupy.cuda.Event(), cupy.cuda.Event())
                                    for _ in range(max(1, reps))]
            startup.facts["l2_flush_bytes"] = flush_bytes
        else:
            startup.facts["compute_only"] = f"not measured: {why_not}"
        startup.facts["device_bytes"] = problem.device_bytes
        return startup

    def run(self):
        return self._run_and_annotate()

    def _run_one_stream(self):
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
        self._synchronize(stream)
        t3 = self.clock()
        elapsed = self._cupy.cuda.get_elapsed_time
        event_s = [elapsed(events[i], events[i + 1]) * 1e-3 for i in range(3)]
        return host_out, gpu_run_timing(event_s, (t0, t1, t2, t3))

    def release(self):
        if getattr(self, "_problem", None) is None:
            return
        self._problem = None
        if self._pipeline is not None:
            for stream in self._pipeline.streams:
                stream.synchronize()
        self._device = self._host_in = self._host_out = self._args = None
        self._pipeline = self._flush = None
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
            if self.settings.get("compile_cold", True):
                startup.facts.update(self._compile_figures(source))
            self._functions[key] = (function, False)
        return self._functions[key]

    def _compile_figures(self, source: str) -> dict:
        """Cold and warm compile times of `source` (module docstring), once per process."""
        key = hashlib.sha1(repr((source, NVRTC_OPTIONS)).encode()).hexdigest()
        if key in _COMPILE_FIGURES:
            return {**_COMPILE_FIGURES[key], "compile_figures": "from earlier in this process"}
        try:
            from cupy._core import core
            compile_with_cache = core.compile_with_cache
        except (ImportError, AttributeError) as exc:
            return {"compile_figures": f"not measured: this CuPy has no "
                                       f"cupy._core.core.compile_with_cache ({exc})"}

        def compile_once() -> float:
            t0 = self.clock()
            compile_with_cache(source, NVRTC_OPTIONS, prepend_cupy_headers=False)
            return self.clock() - t0

        with _environ("CUPY_CACHE_IN_MEMORY", "1"):
            cold_s = compile_once()
        probe = CompileCacheProbe(_kernel_cache_folder(self._cupy))
        warm_s = compile_once()
        figures = {
            "compile_cold_s": cold_s,
            "compile_cold_how": "NVRTC with CUPY_CACHE_IN_MEMORY=1: no disk cache read or "
                                "written, module load included; NVRTC was already loaded "
                                "by the session's compile, so a new process pays more",
            "compile_warm_s": warm_s,
            "compile_warm_how": "CuPy's disk kernel cache, module load included",
            # "hit" unless the cache could not keep the session's own compile.
            "compile_warm_cache": probe.result(),
        }
        _COMPILE_FIGURES[key] = figures
        return {**figures, "compile_figures": "measured in this session"}

    def _launch(self, function, grid=None, args=None, stream=None) -> None:
        launch = self._problem.launch
        try:
            # RawKernel launches on the current stream, so make ours current for the call.
            with stream or self._stream:
                function((launch.grid if grid is None else grid,), (launch.block,),
                         self._args if args is None else args)
        except Exception as exc:
            raise KernelError(f"launching {launch.function} failed: {exc}") from exc

    def _synchronize(self, stream) -> None:
        try:
            stream.synchronize()
        except Exception as exc:
            raise KernelError(f"CUDA reported an error while running "
                              f"{self._kernel.name}: {exc}") from exc

    def _time_empty_launch(self, function) -> float:
        """Event time of a launch that does no work: the kernel with n = 0, on one block."""
        cupy, stream = self._cupy, self._stream
        args = self._problem.args(self._device, rows=0)
        pairs = [(cupy.cuda.Event(), cupy.cuda.Event()) for _ in range(cc.EMPTY_LAUNCH_REPS)]
        for start, end in pairs:
            start.record(stream)
            self._launch(function, grid=1, args=args)
            end.record(stream)
        self._synchronize(stream)
        return cc.median_event_s([cupy.cuda.get_elapsed_time(a, b) for a, b in pairs])

    def _compute_only(self) -> list[float]:
        """The kernel alone on device-resident data, L2 flushed before each launch."""
        cupy, stream = self._cupy, self._stream
        function = self._functions[(self._kernel.name, self._problem.launch.function)][0]
        memset = cupy.cuda.runtime.memsetAsync
        flush = self._flush
        for start, end in self._compute_events:
            # Writing 2 x L2 of other data evicts the problem's lines, as triton's do_bench and
            # nvbench do before each timed launch.
            memset(flush.data.ptr, 0, flush.nbytes, stream.ptr)
            start.record(stream)
            self._launch(function)
            end.record(stream)
        self._synchronize(stream)
        elapsed = cupy.cuda.get_elapsed_time
        return [elapsed(a, b) * 1e-3 for a, b in self._compute_events]

    def _empty_pinned(self, shape, dtype) -> np.ndarray:
        import cupyx
        return cupyx.empty_pinned(shape, dtype=dtype)


class _Pipeline:
    """The streamed run's operations on CuPy (cc.PipelineOps), with every pointer, size and
    argument tuple worked out once per problem so a run only enqueues."""

    def __init__(self, backend: CupyBackend, plan: cc.StreamPlan):
        cupy = backend._cupy
        self.plan = plan
        self._cupy = cupy
        self._backend = backend
        self._memcpy = cupy.cuda.runtime.memcpyAsync
        self._h2d = cupy.cuda.runtime.memcpyHostToDevice
        self._d2h = cupy.cuda.runtime.memcpyDeviceToHost
        # Non-blocking streams: nothing another library puts on the legacy default stream can
        # serialize them.
        self.streams = [cupy.cuda.Stream(non_blocking=True) for _ in range(plan.streams)]
        self.events = [cupy.cuda.Event() for _ in range(cc.event_count(plan))]
        problem, device = backend._problem, backend._device
        host_in, host_out = backend._host_in, backend._host_out
        rows = problem.row_bytes()
        self._whole = [(device[name].data.ptr, host_in[name].ctypes.data, host_in[name].nbytes)
                       for name in problem.whole if host_in[name].nbytes]
        self._in, self._out, self._launches = [], [], []
        kernel, params = backend._kernel, backend._params
        for lo, hi in plan.bounds:
            self._in.append([(device[name].data.ptr + lo * rows[name],
                              host_in[name].ctypes.data + lo * rows[name], (hi - lo) * rows[name])
                             for name in problem.split if hi > lo])
            self._out.append([(host_out[name].ctypes.data + lo * rows[name],
                               device[name].data.ptr + lo * rows[name], (hi - lo) * rows[name])
                              for name in problem.outputs if hi > lo])
            # Contiguous views of the chunk's rows: CuPy passes a view's own (offset) pointer.
            arrays = {name: device[name][lo:hi] for name in (*problem.split, *problem.outputs)}
            arrays.update({name: device[name] for name in problem.whole})
            self._launches.append((kernel.cuda_launch(hi - lo, params).grid,
                                   problem.args(arrays, rows=hi - lo)))
        self._function = backend._functions[(kernel.name, problem.launch.function)][0]

    def record(self, event, stream):
        self.events[event].record(self.streams[stream])

    def wait(self, stream, event):
        self.streams[stream].wait_event(self.events[event])

    def copy_whole_in(self, stream):
        ptr = self.streams[stream].ptr
        for dst, src, nbytes in self._whole:
            self._memcpy(dst, src, nbytes, self._h2d, ptr)

    def copy_in(self, chunk, stream):
        ptr = self.streams[stream].ptr
        for dst, src, nbytes in self._in[chunk]:
            self._memcpy(dst, src, nbytes, self._h2d, ptr)

    def launch(self, chunk, stream):
        grid, args = self._launches[chunk]
        self._backend._launch(self._function, grid=grid, args=args, stream=self.streams[stream])

    def copy_out(self, chunk, stream):
        ptr = self.streams[stream].ptr
        for dst, src, nbytes in self._out[chunk]:
            self._memcpy(dst, src, nbytes, self._d2h, ptr)

    def times_s(self) -> list[float]:
        """Every event's time after BEGIN, in seconds (after the run's synchronize)."""
        elapsed, begin = self._cupy.cuda.get_elapsed_time, self.events[cc.BEGIN]
        return [0.0] + [elapsed(begin, e) * 1e-3 for e in self.events[1:]]


__all__ = ["CupyBackend"]
