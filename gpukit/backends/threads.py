"""threads: a thread pool over contiguous chunks, sharing the process's memory.

With the `python` implementation the GIL lets one thread run at a time, so more threads add
only overhead; with `numpy` every ufunc call releases the GIL and the chunks run in parallel.
Nothing is copied, so transfer_in and transfer_out are zero by construction.

The pool is gpukit's own, of daemon threads: concurrent.futures joins its pool threads when the
interpreter exits, so one kernel call that never returns would keep gpukit from exiting after
the runner gave the case up (a Python thread cannot be killed).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

from gpukit import phases
from gpukit.backends.base import (Backend, BackendTraits, RunTiming, Startup, Variant,
                                  host_phases, row_chunks, slice_rows)
from gpukit.records import THREAD
from gpukit.kernels.base import run_impl


def _noop() -> None:
    return None


class DaemonPool:
    """A fixed number of daemon threads taking calls from one queue; submit returns a Future.
    Started at once (ThreadPoolExecutor starts its threads as calls come)."""

    def __init__(self, workers: int, name: str = "gpukit"):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            future, fn, args = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # a kernel's SystemExit fails its case, as any error
                future.set_exception(exc)
            del call, future, fn, args  # no chunk stays referenced while the thread waits

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self._calls.put((future, fn, args))
        return future

    def shutdown(self, wait: bool = True) -> None:
        for _ in self._threads:
            self._calls.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


class ThreadsBackend(Backend):
    name = "threads"
    summary = "a thread pool over chunks (python holds the GIL, numpy releases it)"
    parallel = True
    # Threads of the caller's interpreter on its arrays: nothing moves, a GIL-holding loop runs
    # one thread at a time, and handing out the chunks is timed inside compute.
    traits = BackendTraits(workers=THREAD, shares_gil=True, dispatch_s="thread_dispatch_s",
                           dispatch_extra_s="thread_dispatch_extra_s",
                           dispatch_phase=phases.COMPUTE)

    @classmethod
    def variants(cls, kernel):
        return [Variant(cls.name, impl) for impl in sorted(kernel.host_impls())]

    def open(self):
        t0 = self.clock()
        self._pool = DaemonPool(self.workers)
        # One round of no-op tasks: every thread has run once, as after a user's first call.
        for f in [self._pool.submit(_noop) for _ in range(self.workers)]:
            f.result()
        return Startup({"pool_start": self.clock() - t0}, {"threads": self.workers})

    def prepare(self, kernel, params, inputs):
        self._kernel, self._params, self._inputs = kernel, params, inputs
        self._impl = kernel.host_impls()[self.variant.impl]
        self._n = next(iter(inputs.split.values())).shape[0]
        self._bounds = row_chunks(kernel, self._n,
                                  self.settings.get("chunks_per_worker", 1) * self.workers)
        return Startup()

    def run(self):
        out = self._kernel.alloc_outputs(self._n, self._params)
        split, whole, params = self._inputs.split, self._inputs.whole, self._params
        t0 = self.clock()
        futures = [self._pool.submit(run_impl, self._impl, slice_rows(split, lo, hi), whole,
                                     slice_rows(out, lo, hi), params)
                   for lo, hi in self._bounds]
        for f in futures:
            f.result()
        elapsed = self.clock() - t0
        return out, RunTiming(host_phases(0.0, elapsed, 0.0), elapsed)

    def close(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)
            self._pool = None

    def abort(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            self._pool = None
            pool.shutdown(wait=False)  # the idle threads end; a hung one runs on, a daemon
        return None
