"""processes: a process pool over chunks, each worker with its own interpreter and GIL.

Two ways for data to reach the workers, each a variant:
- `pickle`: every chunk's arrays are pickled to the worker and its outputs pickled back.
- `shm`: inputs are copied once per run into `multiprocessing.shared_memory` blocks that the
  workers attached to; only names and row offsets travel, and outputs are copied out at the end.

Clocks: workers stamp `time.perf_counter()` when their chunk's data is in hand and when its
compute is done. With `pickle`, "in hand" includes making the output array the worker fills and
sends back, as the other backends allocate their outputs outside the compute they time. On
Linux, macOS and Windows that clock is system-wide (CLOCK_MONOTONIC,
mach_absolute_time, QueryPerformanceCounter), so the stamps compare with the parent's, and each run
splits exactly into transfer_in (until the last worker had its data), compute (until the last
worker finished) and transfer_out (until the parent holds every output). With several chunks a
worker (--chunks-per-worker), the span up to the last finish is split by how long the workers
waited for their chunks' data against how long they computed.

Workers are never forked from a process that may hold a CUDA context (a forked CUDA context is
unusable): the default start method is forkserver where it exists, else spawn. `fork` is allowed
on request, and the runner refuses it when a GPU backend is in the same run.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import shared_memory

import numpy as np

from gpukit import phases, records
from gpukit.backends.base import (Backend, BackendTraits, RunTiming, Startup, Variant,
                                  host_phases, row_chunks, slice_rows)
from gpukit.errors import UsageError
from gpukit.kernels.base import mark_unwritten, run_impl

TRANSFERS = ("pickle", "shm")


def default_start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


# -- worker side ---------------------------------------------------------------------------------

_barrier = None
_attached: dict[str, shared_memory.SharedMemory] = {}


def _init_worker(barrier) -> None:
    global _barrier
    _barrier = barrier
    # Ctrl-C reaches the whole process group; the parent handles it (saves what was measured
    # and shuts the pool down), so a worker that also raised would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _wait_all_started() -> int:
    """Blocks until every worker runs one of these: so all of them have started and imported."""
    import gpukit.kernels  # noqa: F401  (the import is part of a worker's start)
    _barrier.wait(timeout=120)
    return multiprocessing.current_process().pid


def _run_pickled(spec, impl, params, split, whole):
    from gpukit import kernels
    kernel = kernels.load(spec)
    n = next(iter(split.values())).shape[0]
    out = kernel.alloc_outputs(n, params)
    t_ready = time.perf_counter()
    run_impl(kernel.host_impls()[impl], split, whole, out, params)
    return out, t_ready, time.perf_counter(), os.getpid()


def _waiting_share(t0: float, results) -> float:
    """Of the time workers were busy with a run, the share spent waiting for a chunk's data
    (from the run's start or the worker's previous chunk until the chunk was in hand) rather
    than computing it."""
    waiting = computing = 0.0
    by_worker: dict[int, list] = {}
    for r in results:
        by_worker.setdefault(r[3], []).append(r)
    for chunks in by_worker.values():
        free = t0
        for _out, ready, done, _pid in sorted(chunks, key=lambda r: r[1]):
            waiting += max(0.0, ready - free)
            computing += max(0.0, done - ready)
            free = max(free, done)
    busy = waiting + computing
    return waiting / busy if busy > 0 else 0.0


def _attach(name: str) -> shared_memory.SharedMemory:
    block = _attached.get(name)
    if block is None:
        # Attaching registers the name with the resource tracker, which workers share with the
        # parent (a set of names): the parent's unlink then unregisters it once for all.
        block = shared_memory.SharedMemory(name=name)
        _attached[name] = block
    return block


def _forget_except(keep: set[str]) -> None:
    for name in list(_attached):
        if name not in keep:
            _attached.pop(name).close()


def _view(layout, name):
    shm_name, shape, dtype = layout[name]
    return np.ndarray(shape, dtype=dtype, buffer=_attach(shm_name).buf)


def _run_shared(spec, impl, params, layout, split_names, whole_names, out_names, lo, hi):
    from gpukit import kernels
    _forget_except({entry[0] for entry in layout.values()})
    split = {name: _view(layout, name)[lo:hi] for name in split_names}
    whole = {name: _view(layout, name) for name in whole_names}
    out = {name: _view(layout, name)[lo:hi] for name in out_names}
    t_recv = time.perf_counter()
    run_impl(kernels.load(spec).host_impls()[impl], split, whole, out, params)
    return None, t_recv, time.perf_counter(), os.getpid()


# -- parent side ---------------------------------------------------------------------------------


def name_ipc_objects() -> None:
    """Name this process's shared memory blocks and semaphores after it (gpukit-PID-...,
    sem.mp-gpukit-PID-... in /dev/shm), so that one left behind, were gpukit killed with
    SIGKILL, says whose it is. Semaphore names come from multiprocessing's process config;
    setting its prefix changes nothing else."""
    config = getattr(multiprocessing.current_process(), "_config", None)
    if isinstance(config, dict):
        config["semprefix"] = f"/mp-gpukit-{os.getpid()}"


def _block_name() -> str:
    return f"gpukit-{os.getpid()}-{secrets.token_hex(6)}"



class ProcessesBackend(Backend):
    name = "processes"
    summary = "a process pool over chunks; arrays pickled, or in shared memory"
    parallel = True
    # Processes started by --start-method, with memory of their own: the arrays are pickled or
    # copied through shared memory (the variant's `transfer` option), and handing out the
    # chunks is timed inside transfer_in.
    traits = BackendTraits(workers=records.PROCESS, shares_memory=False,
                           moves_data=(records.PICKLE, records.SHM), phases=phases.RUN_PHASES,
                           dispatch_s="process_dispatch_s",
                           dispatch_extra_s="process_dispatch_extra_s",
                           dispatch_phase=phases.TRANSFER_IN, start_method=True)

    @classmethod
    def variants(cls, kernel):
        return [Variant(cls.name, impl, (("transfer", t),))
                for impl in sorted(kernel.host_impls()) for t in TRANSFERS]

    def open(self):
        method = self.settings.get("start_method") or default_start_method()
        if method not in multiprocessing.get_all_start_methods():
            raise UsageError(f"start method {method!r} is not available here "
                             f"(available: {', '.join(multiprocessing.get_all_start_methods())})")
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            # Workers fork from a server that has already imported NumPy and gpukit.
            context.set_forkserver_preload(["numpy", "gpukit.backends.processes", "gpukit.kernels"])
        name_ipc_objects()
        t0 = self.clock()
        barrier = context.Barrier(self.workers)
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                         initializer=_init_worker, initargs=(barrier,))
        pids = [f.result() for f in [self._pool.submit(_wait_all_started)
                                     for _ in range(self.workers)]]
        elapsed = self.clock() - t0
        if getattr(self, "_aborted", False):
            # Aborted from another thread while the pool started: its workers may have been
            # started after abort looked for them.
            self.abort()
            raise UsageError("the process pool was stopped as it started")
        self._blocks: list[shared_memory.SharedMemory] = []
        return Startup({"pool_start": elapsed},
                       {"start_method": method, "processes": len(set(pids))})

    def prepare(self, kernel, params, inputs):
        self.release()
        self._kernel, self._params, self._inputs = kernel, params, inputs
        self._impl = self.variant.impl
        self._n = next(iter(inputs.split.values())).shape[0]
        self._bounds = row_chunks(kernel, self._n,
                                  self.settings.get("chunks_per_worker", 1) * self.workers)
        self._transfer = self.variant.option("transfer")
        if self._transfer != "shm":
            return Startup()
        t0 = self.clock()
        self._layout = {}
        self._shm_views = {}
        arrays = dict(inputs.split)
        arrays.update(inputs.whole)
        shapes = {name: (a.shape, a.dtype) for name, a in arrays.items()}
        for name, dtype in kernel.output_dtypes(params).items():
            shapes[name] = ((self._n,), np.dtype(dtype))
        for name, (shape, dtype) in shapes.items():
            nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
            block = shared_memory.SharedMemory(create=True, size=nbytes, name=_block_name())
            self._blocks.append(block)
            self._layout[name] = (block.name, shape, dtype.str)
            self._shm_views[name] = np.ndarray(shape, dtype=dtype, buffer=block.buf)
        for name in kernel.output_dtypes(params):
            # New shared memory reads 0, which can pass for a result; the first (checked) run
            # must show a row nobody wrote, as every backend's outputs do.
            mark_unwritten(self._shm_views[name])
        return Startup({"shm_alloc": self.clock() - t0})

    def run(self):
        if self._transfer == "shm":
            return self._run_shm()
        return self._run_pickle()

    def _spec(self):
        return self._kernel.spec

    def _run_pickle(self):
        split, whole = self._inputs.split, self._inputs.whole
        t0 = self.clock()
        futures = [self._pool.submit(_run_pickled, self._spec(), self._impl, self._params,
                                     slice_rows(split, lo, hi), whole)
                   for lo, hi in self._bounds]
        results = [f.result() for f in futures]
        out = {name: np.concatenate([r[0][name] for r in results])
               for name in self._kernel.output_dtypes(self._params)}
        return out, self._timing(t0, results, self.clock())

    def _run_shm(self):
        split, whole = self._inputs.split, self._inputs.whole
        out_names = tuple(self._kernel.output_dtypes(self._params))
        t0 = self.clock()
        for name, arr in {**split, **whole}.items():
            np.copyto(self._shm_views[name], arr)
        futures = [self._pool.submit(_run_shared, self._spec(), self._impl, self._params,
                                     self._layout, tuple(split), tuple(whole), out_names, lo, hi)
                   for lo, hi in self._bounds]
        results = [f.result() for f in futures]
        out = {name: self._shm_views[name].copy() for name in out_names}
        return out, self._timing(t0, results, self.clock())

    def _timing(self, t0, results, t_end) -> RunTiming:
        """Split [t0, t_end] into phases from the workers' stamps (chunk out, ready, done, pid)."""
        last_recv = max(r[1] for r in results)
        last_done = max(r[2] for r in results)
        # A worker can finish before the last one has its data; the split stays exact and
        # non-negative by clamping each boundary into [t0, t_end] in order.
        b1 = min(max(last_recv, t0), t_end)
        b2 = min(max(last_done, b1), t_end)
        if len(results) > self.workers:
            # Several chunks a worker: the last chunk's data arrives after the others were
            # computed, so "until the last worker had its data" would count their compute as
            # transfer. Split the span up to the last finish by what the workers spent waiting
            # for each chunk's data against computing it.
            b1 = t0 + (b2 - t0) * _waiting_share(t0, results)
        worker_compute = [r[2] - r[1] for r in results]
        return RunTiming(host_phases(b1 - t0, b2 - b1, t_end - b2), t_end - t0,
                         extra={"worker_compute_max_s": max(worker_compute),
                                "worker_compute_min_s": min(worker_compute)})

    def release(self):
        # Views into a block must go before the block can be closed.
        self._shm_views = {}
        blocks, self._blocks = getattr(self, "_blocks", []), []
        for block in blocks:
            block.unlink()
            block.close()

    def close(self):
        self.release()
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self):
        # From another thread, while a run may wait on a hung worker: kill the workers (the pool
        # then fails that run's futures, which frees the waiting thread) and unlink the blocks;
        # their mappings go when the last view does.
        self._aborted = True
        pool, self._pool = getattr(self, "_pool", None), None
        killed = 0
        if pool is not None:
            # The executor keeps its worker processes in `_processes` (pid -> Process).
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                try:
                    process.kill()
                    killed += 1
                except (OSError, ValueError, AttributeError):
                    pass
            # A worker killed while it sent a result leaves half a message in the result pipe,
            # and the executor's thread would wait for the rest forever (and hold gpukit at
            # exit): this process's own write end is the last one open, so closing it ends
            # that read, and the executor then sees its pool broken.
            writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
            if writer is not None:
                try:
                    writer.close()
                except OSError:
                    pass
            pool.shutdown(wait=False, cancel_futures=True)
        # Unlinked, so the names leave /dev/shm, but neither closed nor let go: a NumPy view
        # does not hold its block's buffer, and the case's thread may still read one, which
        # would crash on memory that close (or a dropped block's __del__) had unmapped. The
        # memory goes when the process does.
        blocks, self._blocks = getattr(self, "_blocks", []), []
        self._unlinked = getattr(self, "_unlinked", []) + blocks
        for block in blocks:
            try:
                block.unlink()
            except OSError:
                pass
        return f"its {killed} worker process{'' if killed == 1 else 'es'} killed"
