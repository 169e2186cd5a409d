"""threads: a thread pool over contiguous chunks, sharing the process's memory.

With the `python` implementation the GIL lets one thread run at a time, so more threads add
only overhead; with `numpy` every ufunc call releases the GIL and the chunks run in parallel.
Nothing is copied, so transfer_in and transfer_out are zero by construction.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from gpukit import phases
from gpukit.backends.base import (Backend, BackendTraits, RunTiming, Startup, Variant,
                                  host_phases, row_chunks, slice_rows)
from gpukit.records import THREAD
from gpukit.kernels.base import run_impl


def _noop() -> None:
    return None


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
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gpukit")
        # Threads start lazily; one round of no-op tasks makes the startup figure real.
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
