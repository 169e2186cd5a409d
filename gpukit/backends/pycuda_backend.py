"""pycuda: the kernel's CUDA C source compiled by nvcc (`SourceModule`) and run on one stream.

Context. Never `pycuda.autoinit`, which creates a context of its own beside the primary context
that the CUDA runtime, and so CuPy, uses in this same process. This backend retains the
device's primary context, pushes it on entry to each of its methods and pops it before
returning, so the thread's context stack is left as it was found. The retained context is kept
until the process exits rather than detached in `close()`: PyCUDA's detach of a primary context
releases it but leaves it current on the thread, and were that the last reference, the thread
would be left holding a destroyed context that CuPy would then use.

The kernel is launched with PyCUDA's prepared call (argument format fixed once in prepare), the
library's fast path. The streamed variant copies with `memcpy_htod_async`/`memcpy_dtoh_async`
between slices of page-locked arrays and device pointers offset by the chunk's first row
(`int(allocation) + row * row_bytes`), on non-blocking streams. The timing model is in
gpukit.backends.cuda_common.

Compilation, once per process (nvcc takes a second or more): `compile_cold_s` is a
`SourceModule` with `cache_dir` set to a fresh, empty temporary folder, so nvcc runs;
`compile_warm_s` is a `SourceModule` from PyCUDA's own cache folder (PYCUDA_CACHE_DIR or the
per-user default), after the session's compile has put the module there: a cache hit. Both
include loading the module; PyCUDA keeps no in-process memo of compiled modules. With
PYCUDA_DISABLE_CACHE set, PyCUDA caches nothing and both figures are nvcc runs.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile


from gpukit.backends import cuda_common as cc
from gpukit.backends.base import Backend, Startup
from gpukit.backends.cuda_common import (CompileCacheProbe, check_device_memory, cuda_variants,
                                         gpu_run_timing, make_problem, version_text)
from gpukit.errors import BackendUnavailable, KernelError

DEVICE = 0

# The same C++ dialect CuPy's NVRTC compiles with; no fast math, and nvcc's default -ftz=false.
NVCC_OPTIONS = ("-std=c++17",)

# Primary contexts retained by this process, by device ordinal (see the module docstring).
_PRIMARY: dict[int, object] = {}

# Cold and warm compile times by (source, options) digest: measured once per process.
_COMPILE_FIGURES: dict[str, dict] = {}

# cuStreamCreate's CU_STREAM_NON_BLOCKING: PyCUDA's Stream(flags) passes its flags straight on.
STREAM_NON_BLOCKING = 1


def _import_driver():
    if importlib.util.find_spec("pycuda") is None:
        raise BackendUnavailable("pycuda is not installed (the cuda extra: "
                                 "pip install '.[cuda]')")
    try:
        import pycuda.driver as cuda
    except Exception as exc:  # its extension module links libcuda; without a driver it can't load
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "libcuda" in text:
            raise BackendUnavailable("no CUDA driver: libcuda is not installed or cannot be "
                                     "loaded") from None
        raise BackendUnavailable(f"pycuda cannot be imported: {text}") from None
    return cuda


def _init(cuda) -> None:
    try:
        cuda.init()
    except cuda.Error as exc:
        text = str(exc)
        if "no CUDA-capable device" in text:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
            raise BackendUnavailable(f"no CUDA device is visible{hint}") from None
        raise BackendUnavailable(f"CUDA cannot start: {text}".splitlines()[0]) from None


def _primary_context(cuda, ordinal: int):
    ctx = _PRIMARY.get(ordinal)
    if ctx is None:
        if not _PRIMARY:
            # Let go of the primary contexts at exit, while the driver is still there.
            atexit.register(_PRIMARY.clear)
        ctx = _PRIMARY[ordinal] = cuda.Device(ordinal).retain_primary_context()
    return ctx


def _compile_cache_folder() -> str | None:
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


class PycudaBackend(cc.GpuRunMixin, Backend):
    name = "pycuda"
    summary = ("PyCUDA SourceModule (nvcc), primary context, CUDA-event phase times; one stream, "
               "or pinned chunks streamed on several")
    gpu = True
    traits = cc.PYCUDA_TRAITS

    @classmethod
    def variants(cls, kernel):
        return cuda_variants(cls.name, kernel)

    @classmethod
    def check_available(cls):
        cuda = _import_driver()
        _init(cuda)
        import pycuda
        try:
            count = cuda.Device.count()
            if count < 1:
                raise BackendUnavailable("no CUDA device is visible")
            dev = cuda.Device(DEVICE)
            facts = {
                "device": dev.name(),
                "pycuda": pycuda.VERSION_TEXT,
                "compute_capability": "%d.%d" % dev.compute_capability(),
                "driver": version_text(cuda.get_driver_version()),
                # The CUDA version PyCUDA was built against.
                "runtime": ".".join(str(v) for v in cuda.get_version()[:2]),
                "memory_bytes": int(dev.total_memory()),
                "multiprocessors": dev.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT),
                "l2_bytes": dev.get_attribute(cuda.device_attribute.L2_CACHE_SIZE),
                "devices": count,
            }
        except cuda.Error as exc:
            raise BackendUnavailable(f"CUDA device query failed: {exc}".splitlines()[0]) from None
        nvcc = shutil.which("nvcc")
        if nvcc is None:
            # SourceModule runs nvcc even on a cache hit (its version is part of the cache key).
            raise BackendUnavailable("pycuda compiles with nvcc, which is not on PATH")
        facts["nvcc"] = nvcc
        return facts

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self):
        self._cuda = cuda = _import_driver()
        self._functions = {}  # (kernel, function name) -> [Function, launched yet?, module]
        self._problem = self._pipeline = self._flush = None
        self._empty_launch_s = None
        self._streamed = cc.is_streamed(self.variant)
        t0 = self.clock()
        _init(cuda)
        self._ctx = _primary_context(cuda, DEVICE)
        with self._active():
            self._stream = cuda.Stream()
            self._events = [cuda.Event() for _ in range(4)]
            self._stream.synchronize()
            self._l2_bytes = int(cuda.Device(DEVICE).get_attribute(
                cuda.device_attribute.L2_CACHE_SIZE))
        return Startup({"context": self.clock() - t0},
                       {"device": DEVICE, "memory": self.variant.option("memory"),
                        "mode": "streamed" if self._streamed else "one stream",
                        "l2_bytes": self._l2_bytes})

    def prepare(self, kernel, params, inputs):
        self.release()
        cuda = self._cuda
        startup = Startup()
        with self._active():
            problem = make_problem(kernel, params, inputs)
            entry = self._function(kernel, problem.launch.function, startup)
            free, _total = cuda.mem_get_info()
            check_device_memory(problem, free)

            t0 = self.clock()
            device = {name: cuda.mem_alloc(max(1, a.nbytes))
                      for name, a in problem.inputs.items()}
            device.update({name: cuda.mem_alloc(max(1, problem.n * dt.itemsize))
                           for name, dt in problem.outputs.items()})
            for name, dt in problem.outputs.items():
                # What no kernel writes (all bytes 0xFF: NaN, or -1): see cupy_backend.
                cuda.memset_d8_async(device[name], cc.UNWRITTEN_BYTE, problem.n * dt.itemsize,
                                     self._stream)
            self._stream.synchronize()
            startup.steps_s["alloc"] = self.clock() - t0

            if self.variant.option("memory") == "pinned":
                t0 = self.clock()
                host_in, host_out = cc.stage_pinned(problem, cuda.pagelocked_empty)
                startup.steps_s["pin"] = self.clock() - t0
            else:
                host_in, host_out = problem.inputs, None

            self._problem = problem
            self._kernel, self._params = kernel, params
            self._device, self._host_in, self._host_out = device, host_in, host_out
            self._function_now = entry[0]
            # Prepared call: the argument format is fixed here, once per problem, so a run only
            # packs the values. Arrays pass as device pointers ("P"), scalars with their NumPy
            # type (np.int64 -> "l", np.int32 -> "i").
            entry[0].prepare(["P" if isinstance(a, str) else a[1] for a in problem.launch.args])
            self._pointers = {name: int(alloc) for name, alloc in device.items()}
            self._args = problem.args(self._pointers)
            if self._streamed:
                self._pipeline = _Pipeline(self, cc.plan_streams(problem, self.settings))
                startup.facts.update(streams=self._pipeline.plan.streams,
                                     chunks=self._pipeline.plan.chunks)

            if not entry[1]:
                # The first launch loads the module onto the device (CUDA loads lazily); paying
                # for it here keeps it out of the first timed run. It is given no rows (n = 0):
                # the inputs are not on the device yet, and a kernel that read them as indices
                # could fault and take the context down with it.
                t0 = self.clock()
                self._launch(grid=1, args=problem.args(self._pointers, rows=0))
                self._stream.synchronize()
                startup.steps_s["first_launch"] = self.clock() - t0
                entry[1] = True
            if self._empty_launch_s is None:
                self._empty_launch_s = self._time_empty_launch()
            startup.facts["empty_launch_s"] = self._empty_launch_s

            flush_bytes, why_not = cc.compute_only_flush_bytes(
                problem, self._l2_bytes, self.settings, free - problem.device_bytes)
            if flush_bytes is not None:
                self._flush = (cuda.mem_alloc(flush_bytes), flush_bytes)
                reps = int(self.settings.get("compute_only_reps", cc.COMPUTE_ONLY_REPS))
                self._compute_events = [(cuda.Event(), cuda.Event()) for _ in range(max(1, reps))]
                startup.facts["l2_flush_bytes"] = flush_bytes
            else:
                startup.facts["compute_only"] = f"not measured: {why_not}"
        startup.facts["device_bytes"] = problem.device_bytes
        return startup

    def run(self):
        with self._active():
            return self._run_and_annotate()

    def _run_one_stream(self):
        cuda, problem, stream, events = self._cuda, self._problem, self._stream, self._events
        pinned = self._host_out is not None
        # Pageable outputs: new arrays, NaN-filled (so faulted in) before the clock starts, as
        # the CPU backends allocate theirs.
        host_out = (self._host_out if pinned
                    else self._kernel.alloc_outputs(problem.n, self._params))
        t0 = self.clock()
        events[0].record(stream)
        for name, src in self._host_in.items():
            cuda.memcpy_htod_async(self._device[name], src, stream)
        events[1].record(stream)
        t1 = self.clock()
        self._launch()
        events[2].record(stream)
        t2 = self.clock()
        for name, dst in host_out.items():
            cuda.memcpy_dtoh_async(dst, self._device[name], stream)
        events[3].record(stream)
        self._synchronize(stream)
        t3 = self.clock()
        # time_since(start) is the time from `start` to this event, in milliseconds.
        event_s = [events[i + 1].time_since(events[i]) * 1e-3 for i in range(3)]
        return host_out, gpu_run_timing(event_s, (t0, t1, t2, t3))

    def release(self):
        if getattr(self, "_problem", None) is None:
            return
        with self._active():
            self._stream.synchronize()
            if self._pipeline is not None:
                for stream in self._pipeline.streams:
                    stream.synchronize()
            # Device memory goes back to the driver now. Pinned host arrays are only dropped:
            # the caller may still hold the outputs of the last run, so they are freed when the
            # last reference goes.
            for alloc in self._device.values():
                alloc.free()
            if self._flush is not None:
                self._flush[0].free()
            self._problem = None
            self._device = self._host_in = self._host_out = self._args = None
            self._pointers = self._function_now = self._pipeline = self._flush = None

    def close(self):
        if getattr(self, "_ctx", None) is None:  # never opened, or open() failed early
            return
        self.release()
        # Streams, events and modules are freed in the context they belong to.
        with self._active():
            self._functions = {}
            self._stream = self._events = None
        self._ctx = None  # the primary context itself stays retained (see the module docstring)

    # -- helpers -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _active(self):
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def _function(self, kernel, name: str, startup: Startup) -> list:
        """Function `name` of `kernel`'s source, compiled once per session; records the compile."""
        key = (kernel.name, name)
        if key not in self._functions:
            from pycuda.compiler import SourceModule
            source = kernel.cuda_source()
            folder = _compile_cache_folder()
            probe = CompileCacheProbe(folder)
            t0 = self.clock()
            module = SourceModule(source, no_extern_c=True, options=list(NVCC_OPTIONS))
            function = module.get_function(name)
            startup.steps_s["compile"] = self.clock() - t0
            cache = "disabled" if "PYCUDA_DISABLE_CACHE" in os.environ else probe.result()
            startup.facts.update(compile_cache=cache,
                                 registers=function.num_regs,
                                 local_bytes=function.local_size_bytes,
                                 shared_bytes=function.shared_size_bytes)
            if self.settings.get("compile_cold", True):
                startup.facts.update(self._compile_figures(source))
            # The module must outlive the function; keep both.
            self._functions[key] = [function, False, module]
        return self._functions[key]

    def _compile_figures(self, source: str) -> dict:
        """Cold and warm compile times of `source` (module docstring), once per process."""
        from pycuda.compiler import SourceModule
        key = hashlib.sha1(repr((source, NVCC_OPTIONS)).encode()).hexdigest()
        if key in _COMPILE_FIGURES:
            return {**_COMPILE_FIGURES[key], "compile_figures": "from earlier in this process"}

        def compile_once(cache_dir) -> float:
            t0 = self.clock()
            SourceModule(source, no_extern_c=True, options=list(NVCC_OPTIONS), cache_dir=cache_dir)
            return self.clock() - t0

        with tempfile.TemporaryDirectory(prefix="gpukit-pycuda-cold-") as fresh:
            cold_s = compile_once(fresh)
        probe = CompileCacheProbe(_compile_cache_folder())
        warm_s = compile_once(None)
        disabled = "PYCUDA_DISABLE_CACHE" in os.environ
        figures = {
            "compile_cold_s": cold_s,
            "compile_cold_how": "nvcc, with an empty temporary cache_dir; module load included",
            "compile_warm_s": warm_s,
            "compile_warm_how": ("nvcc again: PYCUDA_DISABLE_CACHE is set" if disabled else
                                 "PyCUDA's cache folder; module load included"),
            # "hit" unless the cache could not keep the session's own compile.
            "compile_warm_cache": "disabled" if disabled else probe.result(),
        }
        _COMPILE_FIGURES[key] = figures
        return {**figures, "compile_figures": "measured in this session"}

    def _launch(self, grid=None, args=None, stream=None) -> None:
        launch = self._problem.launch
        function = self._function_now
        try:
            function.prepared_async_call((launch.grid if grid is None else grid, 1),
                                         (launch.block, 1, 1), stream or self._stream,
                                         *(self._args if args is None else args))
        except self._cuda.Error as exc:
            raise KernelError(f"launching {launch.function} failed: {exc}") from exc

    def _synchronize(self, stream) -> None:
        try:
            stream.synchronize()
        except self._cuda.Error as exc:
            raise KernelError(f"CUDA reported an error while running "
                              f"{self._kernel.name}: {exc}") from exc

    def _time_empty_launch(self) -> float:
        """Event time of a launch that does no work: the kernel with n = 0, on one block."""
        cuda, stream = self._cuda, self._stream
        args = self._problem.args(self._pointers, rows=0)
        pairs = [(cuda.Event(), cuda.Event()) for _ in range(cc.EMPTY_LAUNCH_REPS)]
        for start, end in pairs:
            start.record(stream)
            self._launch(grid=1, args=args)
            end.record(stream)
        self._synchronize(stream)
        return cc.median_event_s([end.time_since(start) for start, end in pairs])

    def _compute_only(self) -> list[float]:
        """The kernel alone on device-resident data, L2 flushed before each launch."""
        cuda, stream = self._cuda, self._stream
        flush, flush_bytes = self._flush
        for start, end in self._compute_events:
            # Writing 2 x L2 of other data evicts the problem's lines, as triton's do_bench and
            # nvbench do before each timed launch.
            cuda.memset_d32_async(flush, 0, flush_bytes // 4, stream)
            start.record(stream)
            self._launch()
            end.record(stream)
        self._synchronize(stream)
        return [end.time_since(start) * 1e-3 for start, end in self._compute_events]


class _Pipeline:
    """The streamed run's operations on PyCUDA (cc.PipelineOps), with every pointer, host slice
    and argument tuple worked out once per problem so a run only enqueues. Called only inside
    the backend's pushed context."""

    def __init__(self, backend: PycudaBackend, plan: cc.StreamPlan):
        cuda = backend._cuda
        self.plan = plan
        self._backend = backend
        self._htod, self._dtoh = cuda.memcpy_htod_async, cuda.memcpy_dtoh_async
        # Non-blocking streams: nothing another library puts on the legacy default stream can
        # serialize them.
        self.streams = [cuda.Stream(STREAM_NON_BLOCKING) for _ in range(plan.streams)]
        self.events = [cuda.Event() for _ in range(cc.event_count(plan))]
        problem, ptr = backend._problem, backend._pointers
        host_in, host_out = backend._host_in, backend._host_out
        rows = problem.row_bytes()
        self._whole = [(ptr[name], host_in[name]) for name in problem.whole
                       if host_in[name].nbytes]
        self._in, self._out, self._launches = [], [], []
        kernel, params = backend._kernel, backend._params
        for lo, hi in plan.bounds:
            # Slices of the page-locked arrays are page-locked too: async copies stay async.
            self._in.append([(ptr[name] + lo * rows[name], host_in[name][lo:hi])
                             for name in problem.split if hi > lo])
            self._out.append([(host_out[name][lo:hi], ptr[name] + lo * rows[name])
                              for name in problem.outputs if hi > lo])
            arrays = {name: ptr[name] + lo * rows[name]
                      for name in (*problem.split, *problem.outputs)}
            arrays.update({name: ptr[name] for name in problem.whole})
            self._launches.append((kernel.cuda_launch(hi - lo, params).grid,
                                   problem.args(arrays, rows=hi - lo)))

    def record(self, event, stream):
        self.events[event].record(self.streams[stream])

    def wait(self, stream, event):
        self.streams[stream].wait_for_event(self.events[event])

    def copy_whole_in(self, stream):
        for dst, src in self._whole:
            self._htod(dst, src, self.streams[stream])

    def copy_in(self, chunk, stream):
        for dst, src in self._in[chunk]:
            self._htod(dst, src, self.streams[stream])

    def launch(self, chunk, stream):
        grid, args = self._launches[chunk]
        self._backend._launch(grid=grid, args=args, stream=self.streams[stream])

    def copy_out(self, chunk, stream):
        for dst, src in self._out[chunk]:
            self._dtoh(dst, src, self.streams[stream])

    def times_s(self) -> list[float]:
        """Every event's time after BEGIN, in seconds (after the run's synchronize)."""
        begin = self.events[cc.BEGIN]
        return [0.0] + [e.time_since(begin) * 1e-3 for e in self.events[1:]]
