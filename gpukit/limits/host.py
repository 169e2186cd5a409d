"""Host ceilings: memory copy bandwidth, what threads and process pools cost, one core's rates.

Each `measure_*` function measures one group of figures and returns them by their names in
gpukit.ceilings.FIGURES, in the units the names carry. All timing is `time.perf_counter` around
the work, repeated: costs (a start, a dispatch) are the median of the repetitions; ceilings (a
bandwidth, a rate) the best, as STREAM reports them, since a ceiling is what the machine can do
and a slower repetition only met other load.

NumPy is imported inside the functions that use it, not at the top: process-pool workers import
this module to find their task functions, and the pool-start figures are meant to be the pools'
own cost (interpreter start, the start method's work), not that plus importing NumPy. A backend
whose workers import NumPy pays that on top.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

from gpukit.units import gbps

clock = time.perf_counter

START_METHODS = ("fork", "forkserver", "spawn")


@dataclass(frozen=True)
class HostPlan:
    """How much to measure; the default keeps the host part near 10 s on 2 cores."""
    copy_bytes: int = 512 * 1024 ** 2   # large enough to leave every cache
    copy_reps: int = 5
    pool_reps: int = 3                  # spawn on 2 cores: about 1 s each
    dispatch_count: int = 300
    thread_count: int = 300
    # Pickling slows per byte as messages grow (1.7 GB/s at 1 MiB, 0.4 at 64 MiB on 2 cores):
    # a curve, so the model prices each task's message at its own size.
    pickle_sizes: tuple[int, ...] = tuple(m * 1024 ** 2 for m in (1, 4, 16, 64))
    pickle_reps: int = 3
    numpy_block: int = 256 * 1024       # polyval's NUMPY_BLOCK (a test checks)
    numpy_steps: int = 250
    # Steps per timed batch: about 1 ms, shorter than a scheduler's time slice, so that on a
    # machine shared with other work the best batch still ran undisturbed. Timing all 250
    # steps at once (about 10 ms) read 8 GFLOP/s where polyval's 64-step blocks ran at 16, on
    # the 2-core dev VM under load.
    numpy_batch: int = 25
    python_points: int = 3000
    python_degree: int = 64
    reps: int = 3


FULL = HostPlan()
QUICK = HostPlan(copy_bytes=64 * 1024 ** 2, copy_reps=2, pool_reps=1, dispatch_count=50,
                 thread_count=50, pickle_sizes=(1024 ** 2, 16 * 1024 ** 2), pickle_reps=2,
                 numpy_steps=25, numpy_batch=5, python_points=300, reps=1)


# -- pure helpers --------------------------------------------------------------------------------


def copy_gbps(nbytes: int, seconds: float) -> float:
    """A copy of `nbytes` reads them and writes them: 2 * nbytes moved."""
    return gbps(2 * nbytes, seconds)


def per_item_s(batch_times_s: list[float], count: int) -> float:
    """The median batch time over the batch's size: cost per item."""
    return statistics.median(batch_times_s) / count


# -- process-pool workers: top-level, so they pickle by name; they import nothing -------------

_barrier = None


def _init_worker(barrier) -> None:
    global _barrier
    _barrier = barrier


def _wait_all_started() -> int:
    """Blocks until every worker runs one: a pool is started when all its workers are."""
    _barrier.wait(timeout=120)
    return os.getpid()


def _noop() -> None:
    return None


def _echo(value):
    return value


# -- process pools -------------------------------------------------------------------------------


def start_pool(method: str, workers: int) -> tuple[float, ProcessPoolExecutor]:
    """Start a pool of `workers` processes and wait until every one runs; (seconds, pool).

    ProcessPoolExecutor starts forkserver and spawn workers on demand and reuses idle ones, so
    `workers` quick tasks might all run on one; the barrier makes each worker take one task.
    """
    context = multiprocessing.get_context(method)
    t0 = clock()
    barrier = context.Barrier(workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=_init_worker, initargs=(barrier,))
    try:
        pids = [f.result() for f in [pool.submit(_wait_all_started) for _ in range(workers)]]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    elapsed = clock() - t0
    if len(set(pids)) != workers:
        pool.shutdown()
        raise RuntimeError(f"{method} pool: {len(set(pids))} distinct workers ran, not {workers}")
    return elapsed, pool


def measure_first_forkserver_pool(workers: int) -> dict:
    """A program's first forkserver pool: the server's own start (it imports the main module,
    then forks every worker) comes on top of the workers'. Later pools find it running."""
    from multiprocessing import forkserver
    if "forkserver" not in multiprocessing.get_all_start_methods():
        raise RuntimeError("forkserver is not available on this platform")
    # A private attribute, read only to refuse a figure that would be a later pool's because an
    # earlier measurement in this process already started the server.
    if getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None) is not None:
        raise RuntimeError("the forkserver was already running in this process")
    elapsed, pool = start_pool("forkserver", workers)
    pool.shutdown(wait=True)
    return {"pool_start_forkserver_first_s": elapsed}


def measure_pool_start(method: str, plan: HostPlan, workers: int) -> dict:
    """Median time to start a pool of `workers` processes with `method` (for forkserver, with
    its server already running: measure_first_forkserver_pool runs first)."""
    if method not in multiprocessing.get_all_start_methods():
        raise RuntimeError(f"start method {method!r} is not available here")
    times = []
    for _ in range(plan.pool_reps):
        elapsed, pool = start_pool(method, workers)
        pool.shutdown(wait=True)
        times.append(elapsed)
    return {f"pool_start_{method}_s": statistics.median(times)}


def default_start_method() -> str:
    """The processes backend's default: forkserver where it exists, else spawn."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def measure_process_pool(plan: HostPlan, workers: int) -> tuple[dict, dict]:
    """Round trip of an empty task, what each further task of a fan-out adds, and pickling an
    array to a worker and back over sizes, on a warm pool started as the processes backend
    starts its pools. `pickle_gbps` is the largest size's rate; the curve has them all."""
    import numpy as np
    _, pool = start_pool(default_start_method(), workers)
    try:
        batches = _dispatch_batches(pool, plan)
        pool_extra = _fanout_extra_s(pool, workers, plan, per_item_s(batches, plan.dispatch_count))
        # The first echoes make the worker import NumPy and grow its buffers for a large
        # message (the first 1 MiB echo ran 10x slower than the next): start-up, not pickling.
        pool.submit(_echo, np.ones(1)).result()
        pool.submit(_echo, np.ones(plan.pickle_sizes[0] // 8)).result()
        round_trip = per_item_s(batches, plan.dispatch_count)
        rates = [_pickle_gbps(pool, nbytes, plan.pickle_reps, round_trip)
                 for nbytes in plan.pickle_sizes]
    finally:
        pool.shutdown(wait=True)
    figures = {"process_dispatch_s": round_trip, "pickle_gbps": rates[-1],
               **_fanout(pool_extra, "process_dispatch_extra_s")}
    return figures, {"pickle": {"sizes_bytes": list(plan.pickle_sizes), "gbps": rates}}


PICKLE_BYTES_PER_REP = 16 * 1024 ** 2


def _pickle_gbps(pool, nbytes: int, reps: int, round_trip_s: float) -> float:
    """An array of `nbytes` pickled to a worker and back: bytes per second each way, the best of
    `reps`, without the task's round trip (the model prices that apart, as dispatch)."""
    import numpy as np
    array = np.ones(nbytes // 8, dtype=np.float64)
    times = []
    # Small messages take a few ms a round trip: more of them, so that on a machine shared with
    # other work the best one ran undisturbed (as many bytes in all as `reps` of 16 MiB).
    for _ in range(max(reps, reps * PICKLE_BYTES_PER_REP // max(1, nbytes))):
        t0 = clock()
        back = pool.submit(_echo, array).result()
        times.append(clock() - t0)
    if back.shape != array.shape:
        raise RuntimeError("the pickled array came back with another shape")
    best = min(times)
    return gbps(2 * array.nbytes, max(best - round_trip_s, best / 2))


def _dispatch_batches(pool, plan: HostPlan) -> list[float]:
    """Seconds per batch of `dispatch_count` empty tasks, each awaited, on a warmed-up pool."""
    for _ in range(10):
        pool.submit(_noop).result()
    batches = []
    for _ in range(plan.reps):
        t0 = clock()
        for _ in range(plan.dispatch_count):
            pool.submit(_noop).result()
        batches.append(clock() - t0)
    return batches


def _fanout_extra_s(pool, workers: int, plan: HostPlan, round_trip_s: float) -> float | None:
    """What each task beyond the first adds when `workers` empty tasks go to the pool at once
    and are all awaited, as a backend hands out one run. Their round trips overlap, so a run of
    W tasks costs about one round trip plus W - 1 of this, far less than W round trips. None
    with one worker, where there is no fan-out to measure."""
    if workers < 2:
        return None
    rounds = max(1, plan.dispatch_count // workers)
    batches = []
    for _ in range(plan.reps):
        t0 = clock()
        for _ in range(rounds):
            for f in [pool.submit(_noop) for _ in range(workers)]:
                f.result()
        batches.append(clock() - t0)
    return max(0.0, per_item_s(batches, rounds) - round_trip_s) / (workers - 1)


def _fanout(extra_s: float | None, name: str) -> dict:
    return {} if extra_s is None else {name: extra_s}


# -- threads -------------------------------------------------------------------------------------


def measure_threads(plan: HostPlan, workers: int) -> dict:
    """Start + join of one thread, an empty task's round trip through a thread pool, and what
    each further task of a fan-out adds."""
    starts = []
    for _ in range(plan.reps):
        t0 = clock()
        for _ in range(plan.thread_count):
            t = threading.Thread(target=_noop)
            t.start()
            t.join()
        starts.append(clock() - t0)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        batches = _dispatch_batches(pool, plan)
        round_trip = per_item_s(batches, plan.dispatch_count)
        extra = _fanout_extra_s(pool, workers, plan, round_trip)
    return {"thread_start_s": per_item_s(starts, plan.thread_count),
            "thread_dispatch_s": round_trip, **_fanout(extra, "thread_dispatch_extra_s")}


# -- memory bandwidth ----------------------------------------------------------------------------


def measure_copy(plan: HostPlan, workers: int) -> dict:
    """NumPy copy of a large array on one thread, and split over `workers` threads.

    Both buffers are written once first, so page faults are not timed. np.copyto releases the GIL,
    so the threads copy their slices at once.
    """
    import numpy as np
    from gpukit.backends.base import chunk_bounds
    src = np.empty(plan.copy_bytes, dtype=np.uint8)
    dst = np.empty_like(src)
    src.fill(1)
    dst.fill(0)
    one = []
    for _ in range(plan.copy_reps):
        t0 = clock()
        np.copyto(dst, src)
        one.append(clock() - t0)
    bounds = chunk_bounds(src.shape[0], workers)

    def copy_slice(lo_hi):
        lo, hi = lo_hi
        np.copyto(dst[lo:hi], src[lo:hi])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(copy_slice, bounds))  # the threads start here, untimed
        many = []
        for _ in range(plan.copy_reps):
            t0 = clock()
            list(pool.map(copy_slice, bounds))
            many.append(clock() - t0)
    if dst[-1] != 1:
        raise RuntimeError("the copy did not reach the end of the array")
    return {"host_copy_1t_gbps": copy_gbps(src.nbytes, min(one)),
            "host_copy_all_gbps": copy_gbps(src.nbytes, min(many))}


# -- one core's arithmetic -----------------------------------------------------------------------


def measure_numpy_rate(plan: HostPlan) -> dict:
    """Horner steps as polyval's NumPy implementation runs them: in-place multiply and add on a
    cache-sized float32 block, 2 FLOPs per element per step, one thread; the best of short
    batches of steps."""
    import numpy as np
    x = np.linspace(0.5, 0.99, plan.numpy_block, dtype=np.float32)
    acc = np.ones(plan.numpy_block, dtype=np.float32)
    c = np.float32(0.25)
    for _ in range(10):
        np.multiply(acc, x, out=acc)
        np.add(acc, c, out=acc)
    batch = max(1, min(plan.numpy_batch, plan.numpy_steps))
    times = []
    for _ in range(plan.reps * max(1, plan.numpy_steps // batch)):
        t0 = clock()
        for _ in range(batch):
            np.multiply(acc, x, out=acc)
            np.add(acc, c, out=acc)
        times.append(clock() - t0)
    flops = 2 * plan.numpy_block * batch
    return {"host_numpy_1t_gflops": flops / min(times) / 1e9}


def _python_horner(xs: list[float], coeffs: list[float]) -> float:
    total = 0.0
    for x in xs:
        acc = 1.0
        for cj in coeffs:
            acc = acc * x + cj
        total += acc
    return total


def _python_rows(x, out) -> None:
    """What a pure-Python implementation pays per row besides its arithmetic: the row out of
    NumPy, one turn of the loop, the result appended and written back into NumPy."""
    ys = []
    append = ys.append
    for v in x.tolist():
        append(v)
    out[:] = ys


def measure_python_rate(plan: HostPlan) -> dict:
    """The pure-Python loop polyval's python implementation runs: one multiply and one add per
    step on Python floats, 2 FLOPs; and the cost of a row around such a loop, which dominates
    where there are few steps per row."""
    import numpy as np
    xs = [0.5 + 0.49 * i / plan.python_points for i in range(plan.python_points)]
    coeffs = [0.25] * plan.python_degree
    _python_horner(xs[:10], coeffs)
    times = []
    for _ in range(plan.reps):
        t0 = clock()
        _python_horner(xs, coeffs)
        times.append(clock() - t0)
    flops = 2 * plan.python_points * plan.python_degree
    rows = plan.python_points * plan.python_degree  # as many rows as the loop above has steps
    x = np.linspace(0.5, 0.99, rows, dtype=np.float32)
    out = np.empty_like(x)
    row_times = []
    for _ in range(plan.reps):
        t0 = clock()
        _python_rows(x, out)
        row_times.append(clock() - t0)
    return {"host_python_1t_gflops": flops / min(times) / 1e9,
            "host_python_row_s": min(row_times) / rows}
