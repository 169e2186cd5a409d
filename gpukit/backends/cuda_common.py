"""What the CuPy and PyCUDA backends share; neither library is imported here.

Timing model, the same in both backends. One stream carries, in order,

    e0 | H2D of every split and whole input | e1 | the kernel | e2 | D2H of every output | e3

and the host synchronizes that stream once, at the end. `phases_s` (and `device_s`, the same
numbers) are the event intervals e0-e1, e1-e2, e2-e3: what the GPU and the copy engines spent.
`wall_s` is the host clock from before e0 to after the synchronize: the end-to-end figure, launch
and library costs included. `extra["host_phases_s"]` splits `wall_s` at the moments the host
passed the same boundaries: for asynchronous work that is the cost of enqueueing it; pageable
copies block the host, so their host time is close to their event time; the synchronize falls
into transfer_out. The host phases add up to `wall_s`.

L2 cache: no flush before a run. Every run copies its inputs in over PCIe first, so whatever the
L2 holds of them is there because the H2D copy just wrote it, which is exactly what a real
program sees when it launches after copying. A small problem's compute phase can therefore read
its inputs from L2 rather than HBM, so small problems also get a compute-only figure (below).

Streamed variant (`("mode", "streamed")`, pinned memory only). The split inputs and the outputs
are cut into chunks of whole rows (`plan_streams`: about TARGET_CHUNK_BYTES of split input each,
chunk starts on 256-byte boundaries so the kernel keeps its 16-byte vector path, at most
MAX_CHUNKS; `settings["stream_chunks"]` and `settings["streams"]` override). Chunk i runs on
stream i % S as: event, H2D of its rows, event, the kernel on its rows (device pointers offset by
the chunk's first row), event, D2H of its rows, event (`enqueue_pipeline`). The whole inputs go
first on stream 0, and the other streams wait for them; at the end stream 0 waits for the others
and records the last event; the host synchronizes once. Raw cudaMemcpyAsync on page-locked
buffers, never a synchronize per chunk, so copies in both directions overlap each other and the
kernels of other chunks.

With overlap, the sum of the chunks' H2D times is not a time anyone waited. From the events
(`streamed_run_timing`), with T the end-to-end event time (first event to last):

    busy_s[x]  = length of the union of the x intervals, for x in h2d, kernel, d2h: the time
                 that kind of work was in flight. A union, not a sum, because an interval of one
                 chunk can include its wait for another chunk's copy on the same copy engine.
    serial_s   = busy h2d + busy kernel + busy d2h: the one-after-the-other time of the same work.
    covered_s  = length of the union of all copy intervals.
    phases_s   = transfer_in  = covered_s * busy h2d / (busy h2d + busy d2h)
                 transfer_out = covered_s * busy d2h / (busy h2d + busy d2h)
                 compute      = T - covered_s: kernel time no copy hid, plus any gap where the
                 device waited for the host. The three add up to T; for a single chunk they are
                 exactly the one-stream phases.
    extra["overlap_hidden_s"]     = serial_s - (length of the union of all intervals): the
                 device time that overlap hid. It equals serial_s - T when the device never
                 waited for the host; otherwise that wait, extra["idle_s"] = T - union, is
                 reported apart, so T = serial_s - overlap_hidden_s + idle_s, and neither
                 figure can go negative.
    extra["overlap_hidden_share"] = overlap_hidden_s / serial_s: 1 / (1 - share) is the speedup
                 over running the same copies and kernels one after the other.

An interval starts when its stream reached the event before the operation; when the host
enqueues slower than the device works (chunks of a few KiB), that includes the host's enqueue of
the operation itself, so for tiny chunks the busy figures are upper bounds. The host clock of a
streamed run is split as `extra["host_enqueue_s"]` (enqueueing everything) plus
`extra["host_wait_s"]` (the one synchronize), which add up to `wall_s`; there are no per-phase
host times, since the phases interleave.

Launch-bound runs. `extra["launch_bound"]` is True when the kernel's event time (the compute
phase; for the streamed variant the median chunk's kernel interval) is at most
LAUNCH_BOUND_FACTOR times the device's time per launch of the same kernel given no rows
(`extra["empty_launch_s"]`, measured once per session with the queue kept full: see
gpukit.backends.gpu_backend): its time is the launch, not the work. Without that figure, a
kernel under LAUNCH_BOUND_FLOOR_S counts as launch-bound.

Compute-only figure. For problems whose device data is at most COMPUTE_ONLY_MAX_L2 times the L2
size (where L2 could hold it, so the compute phase after an H2D may read from cache), and while
`settings.get("compute_only", True)`, every run ends, after its own timing, with
`settings.get("compute_only_reps", 3)` launches of the whole problem on the device-resident data:
before each, a cudaMemsetAsync over a flush buffer of 2 x L2 bytes (L2 size from the device
attributes) evicts the problem from L2; one event pair around each launch; one synchronize at the
end. `extra["compute_only_s"]` is their median, `extra["compute_only_runs_s"]` all of them. The
flush buffer is the only extra device memory, allocated with the problem and freed with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from gpukit import phases, records
from gpukit.backends.base import BackendTraits, RunTiming, Variant
from gpukit.errors import KernelError, UsageError
from gpukit.kernels.base import (CudaLaunch, Inputs, Kernel, check_cuda_args,
                                 mark_unwritten)

# Host memory for the copies: the user's NumPy arrays as they are (the driver stages them through
# its own pinned buffer), or page-locked buffers the backend fills once in prepare().
MEMORY_KINDS = ("pageable", "pinned")

# The `mode` option of the streamed variant (pinned memory, chunks on several streams).
STREAMED = "streamed"
DEFAULT_STREAMS = 4
# Split-input bytes per chunk when settings name no chunk count: large enough that each copy
# runs at full PCIe rate and the host enqueues a chunk (~10 calls) far faster than the device
# moves it; small enough that the first H2D and the last D2H, which nothing overlaps, are a few
# percent of a 256 MiB transfer.
TARGET_CHUNK_BYTES = 8 * 2**20
MAX_CHUNKS = 64
# Chunk starts fall on this many bytes of every split input and output, so the kernel's pointer
# of each chunk keeps the 16-byte alignment its vector path needs (polyval.cu falls back to
# scalar loads, correctly but slower, on any unaligned pointer).
CHUNK_ALIGN_BYTES = 256

LAUNCH_BOUND_FACTOR = 2.0
LAUNCH_BOUND_FLOOR_S = 5e-6
EMPTY_LAUNCH_REPS = 20
COMPUTE_ONLY_MAX_L2 = 2
COMPUTE_ONLY_REPS = 3
FLUSH_L2_MULTIPLE = 2


# What the model needs of a GPU backend: all of it is common to the GPU backends but the launch,
# which each prices by the call it makes (`gpukit limits` times PyCUDA's prepared call as
# launch_pycuda_s); the host's one wait at the end is that launch synchronized against the same
# launch queued.
def gpu_traits(launch_s: str, launch_sync_s: str, launch_queued_s: str) -> BackendTraits:
    return BackendTraits(device=records.GPU, shares_memory=False, moves_data=(records.PCIE,),
                         phases=phases.RUN_PHASES, launch_s=launch_s,
                         launch_sync_s=launch_sync_s, launch_queued_s=launch_queued_s)


CUPY_TRAITS = gpu_traits("launch_cupy_s", "launch_cupy_sync_s", "launch_cupy_s")
PYCUDA_TRAITS = gpu_traits("launch_pycuda_s", "launch_pycuda_sync_s", "launch_pycuda_s")


def cuda_variants(backend: str, kernel: Kernel) -> list[Variant]:
    if kernel.cuda_file is None:
        return []
    variants = [Variant(backend, "cuda", (("memory", kind),)) for kind in MEMORY_KINDS]
    if chunkable(kernel):
        variants.append(Variant(backend, "cuda", (("memory", "pinned"), ("mode", STREAMED))))
    return variants


def chunkable(kernel: Kernel) -> bool:
    """Whether the kernel's CUDA function can be launched on a chunk of rows.

    A chunk's launch passes the chunk's row count as `n`. That is wrong for a function whose
    whole inputs are the split rows themselves (nbody: every target feels every body, and its
    one `n` counts both): the chunk would see only its own bodies. A kernel says so with
    `cuda_chunkable = False`; without the attribute, a small problem's inputs are looked at."""
    declared = getattr(kernel, "cuda_chunkable", None)
    if declared is not None:
        return bool(declared)
    try:
        inputs = kernel.make_inputs(64, kernel.resolve_params({}))
    except Exception:  # a kernel that cannot make a small problem: its runs will say why
        return True
    return not any(np.shares_memory(w, s) for w in inputs.whole.values()
                   for s in inputs.split.values())


def is_streamed(variant: Variant) -> bool:
    return variant.option("mode") == STREAMED


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem as a GPU backend sees it: arrays to copy in, outputs to copy out, the launch."""

    n: int
    inputs: dict[str, np.ndarray]  # split then whole inputs, C-contiguous, in H2D order
    outputs: dict[str, np.dtype]  # output name -> dtype; each output has n rows
    launch: CudaLaunch | None  # None for an array-namespace function: its library launches
    scalars: dict[str, np.generic]  # typed value of each scalar argument, by name
    split: tuple[str, ...] = ()  # the inputs cut by rows (the others go whole to every chunk)

    @property
    def device_bytes(self) -> int:
        return (sum(a.nbytes for a in self.inputs.values())
                + sum(self.n * dtype.itemsize for dtype in self.outputs.values()))

    @property
    def whole(self) -> tuple[str, ...]:
        return tuple(name for name in self.inputs if name not in self.split)

    def row_bytes(self) -> dict[str, int]:
        """Bytes per row of every split input and output: what one row of a chunk moves."""
        rows = {name: self.inputs[name].nbytes // max(1, self.n) for name in self.split}
        rows.update({name: self.outputs[name].itemsize for name in self.outputs})
        return rows

    def args(self, arrays: Mapping[str, Any], rows: int | None = None) -> tuple:
        """The kernel's arguments in signature order: device buffers by name, typed scalars.

        With `rows`, the scalar `n` says that many rows (one chunk's launch)."""
        def scalar(name):
            value = self.scalars[name]
            return type(value)(rows) if rows is not None and name == "n" else value
        return tuple(arrays[a] if isinstance(a, str) else scalar(a[0])
                     for a in self.launch.args)


def make_problem(kernel: Kernel, params: Mapping[str, int], inputs: Inputs) -> Problem:
    rows = {a.shape[0] for a in inputs.split.values()}
    if len(rows) != 1:
        raise KernelError(f"kernel {kernel.name}: split inputs disagree on their row count {rows}")
    n = rows.pop()
    arrays = {name: np.ascontiguousarray(a) for name, a in {**inputs.split, **inputs.whole}.items()}
    outputs = {name: np.dtype(dt) for name, dt in kernel.output_dtypes(params).items()}
    launch = kernel.cuda_launch(n, params)
    check_cuda_args(kernel, launch, inputs, params)
    # `n` is the problem size; any other scalar is a kernel parameter.
    scalars = {name: scalar_type(n if name == "n" else params[name])
               for name, scalar_type in (a for a in launch.args if not isinstance(a, str))}
    return Problem(n, arrays, outputs, launch, scalars, tuple(inputs.split))


def array_problem(kernel: Kernel, params: Mapping[str, int], inputs: Inputs) -> Problem:
    """The problem of an array-namespace function: its inputs to copy in, its outputs to copy
    out, no launch of gpukit's own."""
    n = next(iter(inputs.split.values())).shape[0]
    arrays = {name: np.ascontiguousarray(a) for name, a in inputs.split.items()}
    outputs = {name: np.dtype(dt) for name, dt in kernel.output_dtypes(params).items()}
    return Problem(n, arrays, outputs, None, {}, tuple(inputs.split))


# Device outputs start with every byte this: NaN for floats of any width, -1 for integers, as
# kernels.base.mark_unwritten marks host outputs.
UNWRITTEN_BYTE = 0xFF


def stage_pinned(problem: Problem, empty_pinned) -> tuple[dict, dict]:
    """Page-locked copies of the inputs, filled once (the runs then time DMA from pinned memory,
    not this copy), and page-locked outputs marked unwritten (NaN, or -1 for integer outputs)
    so that a row the kernel missed fails the check. `empty_pinned(shape, dtype)` is the
    library's page-locked allocator."""
    host_in = {}
    for name, a in problem.inputs.items():
        host_in[name] = empty_pinned(a.shape, a.dtype)
        host_in[name][...] = a
    host_out = {}
    for name, dtype in problem.outputs.items():
        host_out[name] = mark_unwritten(empty_pinned((problem.n,), dtype))
    return host_in, host_out


def check_device_memory(problem: Problem, free_bytes: int) -> None:
    """Refuse, before allocating, a problem that cannot fit in the device's free memory."""
    need = problem.device_bytes
    if need > free_bytes:
        raise UsageError(f"n={problem.n} needs {size_text(need)} of GPU memory but only "
                         f"{size_text(free_bytes)} is free")


def size_text(nbytes: int) -> str:
    """Bytes for people: 1000 bytes, 7.8 KiB, 512.0 MiB, 79.1 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def gpu_run_timing(event_s: Sequence[float], host_marks: Sequence[float]) -> RunTiming:
    """A run's record from its three event intervals and the four host-clock marks around them."""
    device = dict(zip(phases.RUN_PHASES, (float(s) for s in event_s), strict=True))
    t0, t1, t2, t3 = host_marks
    host = dict(zip(phases.RUN_PHASES, (t1 - t0, t2 - t1, t3 - t2), strict=True))
    return RunTiming(phases_s=dict(device), wall_s=t3 - t0, device_s=device,
                     extra={"host_phases_s": host})


def no_device_text() -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "no CUDA device is visible" + (
        f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")


@contextlib.contextmanager
def environ(name: str, value: str):
    """The environment variable `name` set to `value` inside, as it was after."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class CompileCacheProbe:
    """Tell whether a library's on-disk compile cache already held a module, by listing its folder.

    A compile that adds a file missed the cache; one that adds none hit it (on disk or in the
    library's in-process memo). "unknown" when the folder can't be listed.
    """

    def __init__(self, folder: str | None):
        self.folder = folder
        self._before = self._list()

    def _list(self) -> set[str] | None:
        if not self.folder:
            return None
        try:
            return set(os.listdir(self.folder))
        except OSError:
            return set() if not os.path.exists(self.folder) else None

    def result(self) -> str:
        after = self._list()
        if self._before is None or after is None:
            return "unknown"
        return "miss" if after - self._before else "hit"


# -- the streamed variant --------------------------------------------------------------------


def _positive_setting(settings: Mapping[str, Any], name: str, default: int | None) -> int | None:
    value = settings.get(name, default)
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"setting {name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise UsageError(f"setting {name} must be a positive integer, got {value!r}")
    return number


@dataclasses.dataclass(frozen=True)
class StreamPlan:
    """How a streamed run cuts a problem: chunk row ranges, and how many streams carry them."""

    streams: int  # streams in use: never more than there are chunks
    bounds: tuple[tuple[int, int], ...]  # (first row, end row) of each chunk, in order

    @property
    def chunks(self) -> int:
        return len(self.bounds)

    def stream_of(self, chunk: int) -> int:
        return chunk % self.streams


def align_rows(row_bytes: Mapping[str, int], align_bytes: int = CHUNK_ALIGN_BYTES) -> int:
    """The fewest rows whose bytes are a multiple of `align_bytes` in every array."""
    rows = 1
    for nbytes in row_bytes.values():
        if nbytes > 0:
            need = align_bytes // math.gcd(align_bytes, nbytes)
            rows = rows * need // math.gcd(rows, need)
    return rows


def aligned_chunk_bounds(n: int, chunks: int, align: int) -> tuple[tuple[int, int], ...]:
    """Up to `chunks` contiguous row ranges covering range(n), each start a multiple of `align`.

    All chunks but the last have the same size; rounding that size up to `align` rows can leave
    fewer chunks than asked for."""
    if n <= 0:
        return ((0, 0),)
    align = max(1, align)
    chunks = max(1, min(chunks, -(-n // align)))
    rows_per_chunk = -(-n // chunks)  # ceiling division, exact for any int
    step = -(-rows_per_chunk // align) * align
    return tuple((lo, min(n, lo + step)) for lo in range(0, n, step))


def plan_streams(problem: Problem, settings: Mapping[str, Any]) -> StreamPlan:
    """Chunks and streams for `problem`, from settings `streams`, `stream_chunks` and
    `stream_align_rows` (tests set the last to 1 to give the kernel unaligned chunk starts)."""
    streams = _positive_setting(settings, "streams", DEFAULT_STREAMS)
    chunks = _positive_setting(settings, "stream_chunks", None)
    if chunks is None:
        split_bytes = sum(problem.inputs[name].nbytes for name in problem.split)
        chunks = min(MAX_CHUNKS, max(1, -(-split_bytes // TARGET_CHUNK_BYTES)))
    align = _positive_setting(settings, "stream_align_rows", None)
    if align is None:
        align = align_rows(problem.row_bytes())
    bounds = aligned_chunk_bounds(problem.n, chunks, align)
    return StreamPlan(min(streams, len(bounds)), bounds)


# Event numbering of a streamed run: three for the run, four per chunk.
BEGIN, WHOLE_IN, END = 0, 1, 2
CHUNK_START, CHUNK_IN, CHUNK_KERNEL, CHUNK_OUT = range(4)


def chunk_event(chunk: int, mark: int) -> int:
    return 3 + 4 * chunk + mark


def event_count(plan: StreamPlan) -> int:
    return 3 + 4 * plan.chunks


class PipelineOps(Protocol):
    """What a backend enqueues for `enqueue_pipeline`; events and streams by number."""

    def record(self, event: int, stream: int) -> None: ...
    def wait(self, stream: int, event: int) -> None: ...
    def copy_whole_in(self, stream: int) -> None: ...
    def copy_in(self, chunk: int, stream: int) -> None: ...
    def launch(self, chunk: int, stream: int) -> None: ...
    def copy_out(self, chunk: int, stream: int) -> None: ...


def enqueue_pipeline(plan: StreamPlan, ops: PipelineOps) -> None:
    """Enqueue one streamed run (the order is in the module docstring); no synchronize."""
    ops.record(BEGIN, 0)
    ops.copy_whole_in(0)
    ops.record(WHOLE_IN, 0)
    for s in range(1, plan.streams):
        ops.wait(s, WHOLE_IN)  # every chunk's kernel reads the whole inputs
    last = {}
    for i in range(plan.chunks):
        s = plan.stream_of(i)
        ops.record(chunk_event(i, CHUNK_START), s)
        ops.copy_in(i, s)
        ops.record(chunk_event(i, CHUNK_IN), s)
        ops.launch(i, s)
        ops.record(chunk_event(i, CHUNK_KERNEL), s)
        ops.copy_out(i, s)
        ops.record(chunk_event(i, CHUNK_OUT), s)
        last[s] = chunk_event(i, CHUNK_OUT)
    for s in range(1, plan.streams):
        ops.wait(0, last[s])
    ops.record(END, 0)


def union_length(intervals: Sequence[tuple[float, float]]) -> float:
    """Total length covered by a set of [start, end] intervals (overlaps counted once)."""
    total, current_end = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end <= current_end:
            continue
        total += end - max(start, current_end)
        current_end = end
    return total


def launch_bound(kernel_s: float, empty_launch_s: float | None) -> bool:
    """Whether a kernel's event time is the launch rather than the work (module docstring)."""
    if empty_launch_s is None:
        return kernel_s < LAUNCH_BOUND_FLOOR_S
    return kernel_s <= LAUNCH_BOUND_FACTOR * empty_launch_s


def streamed_run_timing(plan: StreamPlan, times_s: Sequence[float], wall_s: float,
                        host_enqueue_s: float) -> RunTiming:
    """A streamed run's record from its events' times (seconds after BEGIN, by event number).

    Definitions in the module docstring. `wall_s` is the host clock around the run,
    `host_enqueue_s` the part of it the host spent enqueueing (the rest is the one wait)."""
    if len(times_s) != event_count(plan):
        raise ValueError(f"a streamed run of {plan.chunks} chunks has {event_count(plan)} events, "
                         f"got {len(times_s)} times")
    t = [float(v) for v in times_s]

    def interval(a: int, b: int) -> tuple[float, float]:
        return (t[a], max(t[a], t[b]))

    h2d = [interval(BEGIN, WHOLE_IN)]
    kernel, d2h = [], []
    for i in range(plan.chunks):
        h2d.append(interval(chunk_event(i, CHUNK_START), chunk_event(i, CHUNK_IN)))
        kernel.append(interval(chunk_event(i, CHUNK_IN), chunk_event(i, CHUNK_KERNEL)))
        d2h.append(interval(chunk_event(i, CHUNK_KERNEL), chunk_event(i, CHUNK_OUT)))
    end_s = t[END] - t[BEGIN]
    busy = {"h2d": union_length(h2d), "kernel": union_length(kernel), "d2h": union_length(d2h)}
    serial_s = sum(busy.values())
    covered_s = union_length(h2d + d2h)
    union_s = union_length(h2d + kernel + d2h)
    copies_s = busy["h2d"] + busy["d2h"]
    in_share = busy["h2d"] / copies_s if copies_s > 0 else 0.5
    device = {
        phases.TRANSFER_IN: covered_s * in_share,
        phases.COMPUTE: max(0.0, end_s - covered_s),
        phases.TRANSFER_OUT: covered_s * (1.0 - in_share),
    }
    hidden_s = max(0.0, serial_s - union_s)
    chunk_kernel_s = [b - a for a, b in kernel]
    extra = {
        "streams": plan.streams,
        "chunks": plan.chunks,
        "chunk_rows": [hi - lo for lo, hi in plan.bounds],
        "busy_s": busy,
        "serial_s": serial_s,
        "end_to_end_s": end_s,
        "overlap_hidden_s": hidden_s,
        "overlap_hidden_share": hidden_s / serial_s if serial_s > 0 else 0.0,
        "idle_s": max(0.0, end_s - union_s),
        "kernel_s": statistics.median(chunk_kernel_s),
        "host_enqueue_s": host_enqueue_s,
        "host_wait_s": wall_s - host_enqueue_s,
    }
    return RunTiming(phases_s=dict(device), wall_s=wall_s, device_s=device, extra=extra)


def compute_only_flush_bytes(problem: Problem, l2_bytes: int, settings: Mapping[str, Any],
                             free_bytes: int) -> tuple[int | None, str]:
    """The L2 flush buffer size for compute-only timing of `problem`, or None and why not."""
    if not settings.get("compute_only", True):
        return None, "turned off (settings compute_only)"
    if l2_bytes <= 0:
        return None, "the device reports no L2 size"
    if problem.device_bytes > COMPUTE_ONLY_MAX_L2 * l2_bytes:
        return None, (f"the problem's {size_text(problem.device_bytes)} exceed "
                      f"{COMPUTE_ONLY_MAX_L2} x L2; its compute phase reads from memory already")
    flush = FLUSH_L2_MULTIPLE * l2_bytes
    if flush > free_bytes:
        return None, f"no room for a {size_text(flush)} L2 flush buffer"
    return flush, ""
