"""The GPU backend, written once over a device adapter: CuPy's (cupy_backend) or PyCUDA's
(pycuda_backend). The adapter holds a library's calls and nothing else (the `Device` contract
below); everything about how a run is laid out and timed is here, and the pure pieces
(problems, stream plans, the streamed run's arithmetic) are in gpukit.backends.cuda_common,
whose docstring has the timing model of a run.

Beside that model, three figures keep Python's own speed out of what is said about the GPU:

- The CUDA context is created once, before any session, by `check_available` (the runner asks
  every backend before the sweep), and reported as the facts `cuda_context_s` and
  `cuda_context_by` (the library that created it). CuPy and PyCUDA share the device's primary
  context, so whichever session opened first would otherwise have paid for it.
- Launch figures, once per session, with the kernel itself given no rows (n = 0), all queued
  behind a kernel that spins for LAUNCH_HOLD_S (kernels/limits.cu, `gpukit_spin`) so that the
  device finds them queued: `empty_launch_host_s` is the host's cost to issue one launch (wall
  clock); `launch_to_launch_s` the device's time per launch back to back (one event pair
  around the whole queue); `empty_launch_s` the median event time of one such launch between
  two events, which is what a run's compute phase would read for a kernel with nothing to do.
  `empty_launch_queue_full` says whether the host did queue them all inside the hold.
  `launch_bound` compares a run's kernel time with `empty_launch_s`.
- Held replay. A one-stream run whose device phases add up to less than HELD_REPLAY_BELOW_S
  runs again, after its own timing, queued behind a spin kernel long enough (twice what the
  host took to enqueue the run) that the GPU finds every copy and the launch already queued.
  Its event intervals become the run's `phases_s` (what the GPU spent); the timed run's own
  intervals, which include the GPU waiting for Python to issue the next call, are kept as
  `extra["unheld_phases_s"]`, and `wall_s` stays the timed run's host clock.
  `extra["held_replay"]` gives the hold and whether the host had queued everything up to the
  copies out inside it (`queue_full`). Settings `held_replay: false` turns the replay off.

An adapter also says whether its library offers a NumPy-style array namespace on the device
(`offers_array_namespace`, `array_namespace()`): what a kernel written against `xp` runs on
(gpukit.kernels.arrays), in variants whose implementation is `xp`. Such a run is timed as any
other: the inputs copied into device arrays (events e0-e1), the function called on them with the
session's stream current, so that every operation it issues is queued there (e1-e2), and its
outputs copied out (e2-e3). Its first call, in prepare, pays for the library compiling each
operation's kernel on first use (`first_call`); the launch figures are not measured for it (the
function issues several launches, none of them a kernel of its own).
"""

from __future__ import annotations

import contextlib
import hashlib
import statistics
import time
from typing import Any, ClassVar, Protocol

import numpy as np

from gpukit import phases
from gpukit.backends import cuda_common as cc
from gpukit.backends.base import Backend, Startup, Variant
from gpukit.errors import BackendUnavailable, KernelError
from gpukit.kernels.base import cuda_source_path

DEVICE = 0
# The implementation name of an array-namespace function's variants.
ARRAY_IMPL = "xp"

LAUNCH_HOLD_S = 2e-3  # far longer than Python takes to issue EMPTY_LAUNCH_REPS launches
HELD_REPLAY_BELOW_S = 1e-3
HOLD_MIN_S, HOLD_MAX_S = 50e-6, 5e-3
SPIN_SOURCE, SPIN_FUNCTION = "limits.cu", "gpukit_spin"


class Device(Protocol):
    """What a GPU library must do for the GPU backend and for `gpukit limits`.

    Device memory is plain integer pointers (offsets are pointer arithmetic); host memory is
    NumPy arrays, page-locked or not; streams, events and functions are the library's own
    objects, passed back to it untouched. Calls that touch the device run inside `active()`.
    Nothing here synchronizes unless it says so.
    """

    library: ClassVar[str]
    offers_array_namespace: ClassVar[bool]
    compile_cold_how: ClassVar[str]
    compile_warm_how: ClassVar[str]

    @classmethod
    def facts(cls, ordinal: int) -> dict: ...  # device and library facts; BackendUnavailable
    def __init__(self, ordinal: int) -> None: ...
    def create_context(self) -> None: ...  # the device's primary context, created if need be
    def active(self): ...  # a context manager: the context current inside, as found after
    def array_namespace(self): ...  # NumPy-style module on the device, or None
    def l2_bytes(self) -> int: ...
    def free_bytes(self) -> int: ...
    def alloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def release(self) -> None: ...  # hand freed memory back to the driver
    def pinned(self, shape, dtype) -> np.ndarray: ...  # page-locked host array
    def fill(self, ptr: int, byte: int, nbytes: int, stream) -> None: ...
    def copy_in(self, dst: int, src: np.ndarray, stream) -> None: ...  # async from pinned
    def copy_out(self, dst: np.ndarray, src: int, stream) -> None: ...
    def copy_device(self, dst: int, src: int, nbytes: int, stream) -> None: ...
    def stream(self, non_blocking: bool = False): ...
    def event(self): ...
    def record(self, event, stream) -> None: ...
    def wait(self, stream, event) -> None: ...  # the stream waits for the event
    def elapsed_s(self, start, end) -> float: ...  # both recorded and reached
    def synchronize(self, stream) -> None: ...  # the host waits for the stream
    # arg_types: per argument, None for a device pointer or the scalar's NumPy type.
    def load(self, source: str, name: str, arg_types) -> Any: ...
    def function_facts(self, function) -> dict: ...  # registers, local_bytes, shared_bytes
    def launch(self, function, grid: int, block: int, args: tuple, stream) -> None: ...
    def cache_folder(self) -> str | None: ...  # the on-disk compile cache
    # Where offers_array_namespace: the namespace's array over memory from alloc(), the device
    # pointer of one of its C-contiguous arrays, and a context manager inside which the
    # namespace's operations are queued on `stream`.
    def device_array(self, ptr: int, shape, dtype) -> Any: ...
    def array_pointer(self, array) -> int: ...
    def on_stream(self, stream): ...
    def compile_cold(self, source: str) -> None: ...  # compile, no cache of any kind
    def compile_warm(self, source: str) -> None: ...  # compile from the on-disk cache


class DeviceBase:
    """The calls in which CuPy and PyCUDA agree, for an adapter to inherit."""

    offers_array_namespace = False

    def active(self):
        return contextlib.nullcontext()

    def array_namespace(self):
        return None

    # The array namespace's calls, for an adapter whose library offers none: never called, as
    # the backend offers no array-function variant there.
    def device_array(self, ptr: int, shape, dtype):
        raise NotImplementedError(f"{self.library} offers no array namespace")

    def array_pointer(self, array) -> int:
        raise NotImplementedError(f"{self.library} offers no array namespace")

    def on_stream(self, stream):
        raise NotImplementedError(f"{self.library} offers no array namespace")

    def release(self) -> None:
        pass

    def record(self, event, stream) -> None:
        event.record(stream)

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def function_facts(self, function) -> dict:
        return {"registers": function.num_regs, "local_bytes": function.local_size_bytes,
                "shared_bytes": function.shared_size_bytes}


# The context's creation, measured once per process (module docstring).
_CONTEXT: dict[str, Any] = {}
# Cold and warm compile times by (library, source digest): measured once per process.
_COMPILE_FIGURES: dict[tuple[str, str], dict] = {}


def context_figure(device_class) -> dict:
    """`cuda_context_s` and `cuda_context_by`: the first call creates the context and times it."""
    if not _CONTEXT:
        device = device_class(DEVICE)
        t0 = time.perf_counter()
        device.create_context()
        _CONTEXT.update(cuda_context_s=time.perf_counter() - t0,
                        cuda_context_by=device_class.library)
    return dict(_CONTEXT)


def load_spin(device):
    """The kernel that keeps a stream busy for a given number of nanoseconds."""
    return device.load(cuda_source_path(SPIN_SOURCE).read_text(), SPIN_FUNCTION, (np.int64,))


def spin(device, function, seconds: float, stream) -> None:
    device.launch(function, 1, 1, (np.int64(round(seconds * 1e9)),), stream)


class GpuBackend(Backend):
    """A kernel's CUDA C on one GPU through a device adapter (`device_class`)."""

    gpu = True
    device_class: ClassVar[type]

    @classmethod
    def variants(cls, kernel):
        if kernel.array_function:
            if not cls.device_class.offers_array_namespace:
                raise BackendUnavailable(
                    f"{kernel.name} is an array-namespace function and "
                    f"{cls.device_class.library} runs CUDA C only (a kernel class with CUDA C "
                    f"runs here: docs/own-kernel.md)")
            return [Variant(cls.name, ARRAY_IMPL, (("memory", kind),))
                    for kind in cc.MEMORY_KINDS]
        return cc.cuda_variants(cls.name, kernel)

    @classmethod
    def check_available(cls):
        facts = cls.device_class.facts(DEVICE)
        try:
            facts.update(context_figure(cls.device_class))
        except BackendUnavailable:
            raise
        except Exception as exc:  # the library's own error type
            raise BackendUnavailable(f"CUDA cannot create a context: {exc}".splitlines()[0]) \
                from None
        return facts

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self):
        self._problem = self._pipeline = self._flush = self._xp = self._alive = None
        self._functions: dict[tuple[str, str], list] = {}  # -> [function, launched yet?]
        self._spin = self._launch_figures = None
        self._streamed = cc.is_streamed(self.variant)
        context = context_figure(self.device_class)  # before the clock: never this session's
        t0 = self.clock()
        self.device = dev = self.device_class(DEVICE)
        with dev.active():
            # A plain stream for the one-stream variants, as both libraries' default one is.
            self._stream = dev.stream()
            self._events = [dev.event() for _ in range(4)]
            self._held_events = [dev.event() for _ in range(4)]
            dev.synchronize(self._stream)
            self._l2_bytes = dev.l2_bytes()
        return Startup({"context": self.clock() - t0},
                       {"device": DEVICE, "memory": self.variant.option("memory"),
                        "mode": "streamed" if self._streamed else "one stream",
                        "l2_bytes": self._l2_bytes, **context})

    def prepare(self, kernel, params, inputs):
        self.release()
        startup = Startup()
        self._xp = None
        if kernel.array_function:
            return self._prepare_array(kernel, params, inputs, startup)
        dev, stream = self.device, self._stream
        with dev.active():
            problem = cc.make_problem(kernel, params, inputs)
            entry = self._function(kernel, problem, startup)
            free = dev.free_bytes()
            cc.check_device_memory(problem, free)

            t0 = self.clock()
            self._problem, self._kernel, self._params = problem, kernel, params
            self._pointers = ptr = {}
            for name, a in problem.inputs.items():
                ptr[name] = dev.alloc(a.nbytes)
            for name, dtype in problem.outputs.items():
                ptr[name] = dev.alloc(problem.n * dtype.itemsize)
                # What no kernel writes (all bytes 0xFF: NaN, or -1), so that rows a kernel
                # leaves alone fail the check instead of passing with a freed buffer's results.
                dev.fill(ptr[name], cc.UNWRITTEN_BYTE, problem.n * dtype.itemsize, stream)
            self._synchronize(stream)
            startup.steps_s["alloc"] = self.clock() - t0
            self._stage(problem, startup)
            self._args = problem.args(ptr)
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
                self._launch(entry[0], 1, problem.args(ptr, rows=0), stream)
                self._synchronize(stream)
                startup.steps_s["first_launch"] = self.clock() - t0
                entry[1] = True
            if self._launch_figures is None:
                self._launch_figures = self._measure_launch(entry[0], startup)
            startup.facts.update(self._launch_figures)

            self._prepare_compute_only(problem, free, startup)
        startup.facts["device_bytes"] = problem.device_bytes
        return startup

    def _stage(self, problem: cc.Problem, startup: Startup) -> None:
        """Host memory for the copies: the inputs as they are, or page-locked copies."""
        self._host_out = None
        self._host_in = problem.inputs
        if self.variant.option("memory") == "pinned":
            t0 = self.clock()
            self._host_in, self._host_out = cc.stage_pinned(problem, self.device.pinned)
            startup.steps_s["pin"] = self.clock() - t0

    def _prepare_compute_only(self, problem: cc.Problem, free: int, startup: Startup) -> None:
        dev = self.device
        flush_bytes, why_not = cc.compute_only_flush_bytes(
            problem, self._l2_bytes, self.settings, free - problem.device_bytes)
        if flush_bytes is not None:
            self._flush = (dev.alloc(flush_bytes), flush_bytes)
            reps = int(self.settings.get("compute_only_reps", cc.COMPUTE_ONLY_REPS))
            self._compute_events = [(dev.event(), dev.event()) for _ in range(max(1, reps))]
            startup.facts["l2_flush_bytes"] = flush_bytes
        else:
            startup.facts["compute_only"] = f"not measured: {why_not}"

    def _prepare_array(self, kernel, params, inputs, startup: Startup) -> Startup:
        """prepare() for an array-namespace function (module docstring): device arrays for its
        inputs, and one call to pay for what the library compiles on first use."""
        dev, stream = self.device, self._stream
        with dev.active():
            xp = dev.array_namespace()
            lacking = kernel.namespace_lacks(xp)
            if lacking:  # found before the call, even on a branch the inputs would not take
                raise KernelError(lacking)
            problem = cc.array_problem(kernel, params, inputs)
            free = dev.free_bytes()
            # Inputs and outputs only: what the function allocates on the way is its own.
            cc.check_device_memory(problem, free)
            t0 = self.clock()
            self._problem, self._kernel, self._params = problem, kernel, params
            self._pointers = {name: dev.alloc(a.nbytes) for name, a in problem.inputs.items()}
            self._xp_inputs = {name: dev.device_array(self._pointers[name], a.shape, a.dtype)
                               for name, a in problem.inputs.items()}
            startup.steps_s["alloc"] = self.clock() - t0
            self._stage(problem, startup)
            self._args = None
            t0 = self.clock()
            for name, src in self._host_in.items():
                dev.copy_in(self._pointers[name], src, stream)
            self._xp = xp
            self._enqueue_compute(stream)
            self._synchronize(stream)
            self._alive = None
            startup.steps_s["first_call"] = self.clock() - t0
            self._launch_figures = {}
            startup.facts["launch_figures"] = ("not measured: an array-namespace function issues "
                                               "several launches, none of them its own kernel")
            self._prepare_compute_only(problem, free, startup)
        startup.facts["device_bytes"] = problem.device_bytes
        return startup

    def run(self):
        with self.device.active():
            if self._pipeline is not None:
                host_out, timing = self._run_streamed()
                kernel_s = timing.extra["kernel_s"]
            else:
                host_out, timing = self._run_one_stream()
                kernel_s = timing.device_s[phases.COMPUTE]
            empty_s = self._launch_figures.get("empty_launch_s")
            timing.extra["empty_launch_s"] = empty_s
            timing.extra["launch_bound"] = cc.launch_bound(kernel_s, empty_s)
            if self._flush is not None:
                runs_s = self._compute_only()
                timing.extra["compute_only_s"] = float(np.median(runs_s))
                timing.extra["compute_only_runs_s"] = runs_s
        return host_out, timing

    def release(self):
        if getattr(self, "_problem", None) is None:
            return
        dev = self.device
        with dev.active():
            try:
                for stream in [self._stream, *(self._pipeline.streams if self._pipeline else ())]:
                    dev.synchronize(stream)
            finally:
                # Device memory goes back to the driver now. Pinned host arrays are only
                # dropped: the caller may still hold the last run's outputs.
                for ptr in self._pointers.values():
                    dev.free(ptr)
                if self._flush is not None:
                    dev.free(self._flush[0])
                dev.release()
                self._problem = self._pipeline = self._flush = None
                self._pointers = self._host_in = self._host_out = self._args = None
                self._xp_inputs = self._alive = None

    def close(self):
        if getattr(self, "device", None) is None:  # never opened, or open() failed early
            return
        try:
            self.release()
        finally:
            # Streams, events and modules are freed in the context they belong to.
            with self.device.active():
                self._functions = {}
                self._spin = self._stream = self._events = self._held_events = None
            self.device = None

    # -- one run -----------------------------------------------------------------------------

    def _enqueue_one_stream(self, events, host_out, marks: list) -> None:
        dev, stream, ptr = self.device, self._stream, self._pointers
        marks.append(self.clock())
        dev.record(events[0], stream)
        for name, src in self._host_in.items():
            dev.copy_in(ptr[name], src, stream)
        dev.record(events[1], stream)
        marks.append(self.clock())
        results = self._enqueue_compute(stream)
        dev.record(events[2], stream)
        marks.append(self.clock())
        for name, dst in host_out.items():
            dev.copy_out(dst, results[name], stream)
        dev.record(events[3], stream)

    def _enqueue_compute(self, stream) -> dict[str, int]:
        """Queue the problem's compute on `stream`: the CUDA launch, or the array function's
        call with the stream current; returns the device pointer of each output. An array
        function's outputs are kept (`_alive`) until the next synchronize has seen them copied."""
        if self._xp is None:
            function = self._functions[(self._kernel.name, self._problem.launch.function)][0]
            self._launch(function, self._problem.launch.grid, self._args, stream)
            return self._pointers
        dev = self.device
        with dev.on_stream(stream):
            self._alive = self._kernel.device_outputs(self._xp, self._xp_inputs, self._params)
        return {name: dev.array_pointer(a) for name, a in self._alive.items()}

    def _run_one_stream(self):
        dev, stream = self.device, self._stream
        # Pageable outputs: new arrays, NaN-filled (so faulted in) before the clock starts, as
        # the CPU backends allocate theirs.
        host_out = (self._host_out if self._host_out is not None
                    else self._kernel.alloc_outputs(self._problem.n, self._params))
        marks: list[float] = []
        self._enqueue_one_stream(self._events, host_out, marks)
        enqueued = self.clock()
        self._synchronize(stream)
        marks.append(self.clock())
        event_s = [dev.elapsed_s(self._events[i], self._events[i + 1]) for i in range(3)]
        timing = cc.gpu_run_timing(event_s, marks)
        if sum(event_s) < HELD_REPLAY_BELOW_S and self.settings.get("held_replay", True):
            hold_s = min(HOLD_MAX_S, max(HOLD_MIN_S, 2 * (enqueued - marks[0])))
            held_marks = [self.clock()]
            spin(dev, self._spin_function(), hold_s, stream)
            self._enqueue_one_stream(self._held_events, host_out, held_marks)
            # Queued in time if the copies out began inside the hold: a pageable copy out
            # returns only when done, so the end of the enqueue says nothing.
            queued_s = held_marks[-1] - held_marks[0]
            self._synchronize(stream)
            held = {p: dev.elapsed_s(self._held_events[i], self._held_events[i + 1])
                    for i, p in enumerate(phases.RUN_PHASES)}
            timing.extra["unheld_phases_s"] = timing.phases_s
            timing.extra["held_replay"] = {"hold_s": hold_s, "queue_full": queued_s < hold_s}
            timing.phases_s, timing.device_s = held, dict(held)
        return host_out, timing

    def _run_streamed(self):
        pipeline = self._pipeline
        t0 = self.clock()
        cc.enqueue_pipeline(pipeline.plan, pipeline)
        t1 = self.clock()
        self._synchronize(pipeline.streams[0])
        t2 = self.clock()
        return self._host_out, cc.streamed_run_timing(pipeline.plan, pipeline.times_s(),
                                                      t2 - t0, t1 - t0)

    def _compute_only(self) -> list[float]:
        """The kernel alone on device-resident data, L2 flushed before each launch."""
        dev, stream = self.device, self._stream
        flush, flush_bytes = self._flush
        kept = []
        for start, end in self._compute_events:
            # Writing 2 x L2 of other data evicts the problem's lines, as triton's do_bench and
            # nvbench do before each timed launch.
            dev.fill(flush, 0, flush_bytes, stream)
            dev.record(start, stream)
            self._enqueue_compute(stream)
            kept.append(self._alive)
            dev.record(end, stream)
        self._synchronize(stream)
        del kept
        return [dev.elapsed_s(start, end) for start, end in self._compute_events]

    # -- helpers -----------------------------------------------------------------------------

    def _launch(self, function, grid: int, args: tuple, stream) -> None:
        launch = self._problem.launch
        try:
            self.device.launch(function, grid, launch.block, args, stream)
        except Exception as exc:  # the library's own error type
            raise KernelError(f"launching {launch.function} failed: {exc}") from exc

    def _synchronize(self, stream) -> None:
        try:
            self.device.synchronize(stream)
        except Exception as exc:  # the library's own error type
            raise KernelError(f"CUDA reported an error while running "
                              f"{self._kernel.name}: {exc}") from exc

    def _function(self, kernel, problem, startup: Startup) -> list:
        """The problem's CUDA function, compiled once per session; records the compile."""
        key = (kernel.name, problem.launch.function)
        if key not in self._functions:
            dev = self.device
            source = kernel.cuda_source()
            probe = cc.CompileCacheProbe(dev.cache_folder())
            arg_types = [None if isinstance(a, str) else a[1] for a in problem.launch.args]
            t0 = self.clock()
            function = dev.load(source, problem.launch.function, arg_types)
            startup.steps_s["compile"] = self.clock() - t0
            startup.facts.update(compile_cache=probe.result(), **dev.function_facts(function))
            if self.settings.get("compile_cold", True):
                startup.facts.update(self._compile_figures(source))
            self._functions[key] = [function, False]
        return self._functions[key]

    def _compile_figures(self, source: str) -> dict:
        """Cold and warm compile times of `source` (the adapters' docstrings), once a process."""
        dev = self.device
        key = (dev.library, hashlib.sha1(source.encode()).hexdigest())
        if key in _COMPILE_FIGURES:
            return {**_COMPILE_FIGURES[key], "compile_figures": "from earlier in this process"}
        t0 = self.clock()
        dev.compile_cold(source)
        cold_s = self.clock() - t0
        probe = cc.CompileCacheProbe(dev.cache_folder())
        t0 = self.clock()
        dev.compile_warm(source)
        figures = {"compile_cold_s": cold_s, "compile_cold_how": dev.compile_cold_how,
                   "compile_warm_s": self.clock() - t0, "compile_warm_how": dev.compile_warm_how,
                   # "hit" unless the cache could not keep the session's own compile.
                   "compile_warm_cache": probe.result()}
        _COMPILE_FIGURES[key] = figures
        return {**figures, "compile_figures": "measured in this session"}

    def _spin_function(self):
        if self._spin is None:
            self._spin = load_spin(self.device)
        return self._spin

    def _measure_launch(self, function, startup: Startup) -> dict:
        """The launch figures of the module docstring, with the kernel given no rows."""
        dev, stream, reps = self.device, self._stream, cc.EMPTY_LAUNCH_REPS
        t0 = self.clock()
        spinner = self._spin_function()
        startup.facts["spin_load_s"] = self.clock() - t0
        args = self._problem.args(self._pointers, rows=0)
        events = [dev.event() for _ in range(reps + 2)]
        held_from = self.clock()
        spin(dev, spinner, LAUNCH_HOLD_S, stream)
        # First the launches back to back, events around the queue; then each launch between
        # two events, as a run's compute phase brackets its kernel.
        dev.record(events[0], stream)
        t0 = self.clock()
        for _ in range(reps):
            self._launch(function, 1, args, stream)
        t1 = self.clock()
        dev.record(events[1], stream)
        for i in range(reps):
            self._launch(function, 1, args, stream)
            dev.record(events[i + 2], stream)
        queued = self.clock()
        self._synchronize(stream)
        bracketed = [dev.elapsed_s(events[i + 1], events[i + 2]) for i in range(reps)]
        return {"empty_launch_s": statistics.median(bracketed),
                "launch_to_launch_s": dev.elapsed_s(events[0], events[1]) / reps,
                "empty_launch_host_s": (t1 - t0) / reps,
                "empty_launch_queue_full": queued - held_from < LAUNCH_HOLD_S}


class _Pipeline:
    """The streamed run's operations (cc.PipelineOps), with every pointer, host slice and
    argument tuple worked out once per problem so that a run only enqueues. Called only inside
    the backend's active context."""

    def __init__(self, backend: GpuBackend, plan: cc.StreamPlan):
        self.plan, self._backend = plan, backend
        self._dev = dev = backend.device
        # Non-blocking streams: nothing another library puts on the legacy default stream can
        # serialize them.
        self.streams = [dev.stream(non_blocking=True) for _ in range(plan.streams)]
        self.events = [dev.event() for _ in range(cc.event_count(plan))]
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
        self._function = backend._functions[(kernel.name, problem.launch.function)][0]

    def record(self, event, stream):
        self._dev.record(self.events[event], self.streams[stream])

    def wait(self, stream, event):
        self._dev.wait(self.streams[stream], self.events[event])

    def copy_whole_in(self, stream):
        for dst, src in self._whole:
            self._dev.copy_in(dst, src, self.streams[stream])

    def copy_in(self, chunk, stream):
        for dst, src in self._in[chunk]:
            self._dev.copy_in(dst, src, self.streams[stream])

    def launch(self, chunk, stream):
        grid, args = self._launches[chunk]
        self._backend._launch(self._function, grid, args, self.streams[stream])

    def copy_out(self, chunk, stream):
        for dst, src in self._out[chunk]:
            self._dev.copy_out(dst, src, self.streams[stream])

    def times_s(self) -> list[float]:
        """Every event's time after BEGIN, in seconds (after the run's synchronize)."""
        begin = self.events[cc.BEGIN]
        return [0.0] + [self._dev.elapsed_s(begin, e) for e in self.events[1:]]
