"""What a backend is: a way of running a kernel, timing its own phases on the right clock.

A backend class is looked up by name in the registry (`gpukit.backends.REGISTRY`). The runner:

1. asks `cls.variants(kernel)` which variants it offers (implementation and options),
2. calls `cls.check_available()` once; `BackendUnavailable` carries the reason,
3. opens one session per (variant, workers) with `cls(variant, workers, settings)`, whose
   `open()` does the startup work (pool start, CUDA context, compile) and returns its timing,
4. calls `session.prepare(kernel, params, inputs)` once per problem (pinned buffers, shared memory
   blocks, device allocations: reused across repetitions as a user would),
5. calls `session.run()` for every timed repetition and `session.close()` at the end,
6. or `session.abort()`, from another thread, when a case hangs or the run is stopped.

Every call of one session comes from one thread (not always the main one): see gpukit.runner.

The library raises; it never prints. Optional imports (cupy, pycuda, mpi4py) live inside the
backend that needs them.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from gpukit import phases
from gpukit.kernels.base import Inputs, Kernel
from gpukit.records import BackendTraits, RunTiming, Startup, Variant

# The run records live in gpukit.records, which reading results needs without the backends;
# they are named here too (see __all__), where backends have always found them.

Clock = Callable[[], float]


class Backend(abc.ABC):
    """A session of one backend variant at one worker count."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # True for backends whose worker count is a sweep axis (threads, processes, mpi).
    parallel: ClassVar[bool] = False
    # True for backends that run on a GPU (a CUDA context must never be forked).
    gpu: ClassVar[bool] = False
    # What the model and the findings need to know of it; the results file keeps a copy.
    traits: ClassVar[BackendTraits] = BackendTraits()

    def __init__(self, variant: Variant, workers: int, settings: Mapping[str, Any] | None = None,
                 clock: Clock = time.perf_counter):
        self.variant = variant
        self.workers = workers
        self.settings = dict(settings or {})
        self.clock = clock

    # -- discovery ---------------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def variants(cls, kernel: Kernel) -> list[Variant]:
        """Variants this backend offers for `kernel` (empty if the kernel lacks what it needs)."""

    @classmethod
    def check_available(cls) -> dict[str, Any]:
        """Raise BackendUnavailable with the reason, or return facts (library versions, device)."""
        return {}

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> Startup:
        """Start pools, contexts; return what it cost. Called once per session."""
        return Startup()

    @abc.abstractmethod
    def prepare(self, kernel: Kernel, params: Mapping[str, int], inputs: Inputs) -> Startup:
        """Get ready to run one problem (compile, allocate, attach); return one-off costs."""

    @abc.abstractmethod
    def run(self) -> tuple[dict[str, np.ndarray], RunTiming]:
        """Run the prepared problem once; return host outputs and this repetition's timing."""

    def release(self) -> None:
        """Free what `prepare` allocated for the current problem."""

    def close(self) -> None:
        """Stop pools, free everything. Safe to call twice."""

    def abort(self) -> str | None:
        """Stop at once, from another thread, while a call of this session may never return
        (a hung case, Ctrl-C): kill its processes, free its shared memory, without waiting on
        anything the hung call holds. Say what was done; None where nothing can be (a Python
        thread cannot be killed: the runner leaves it on its daemon thread). close() may follow.
        """
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def host_phases(transfer_in_s: float, compute_s: float, transfer_out_s: float) -> dict[str, float]:
    return {phases.TRANSFER_IN: transfer_in_s, phases.COMPUTE: compute_s,
            phases.TRANSFER_OUT: transfer_out_s}


def chunk_bounds(n: int, chunks: int, allow_empty: bool = False) -> list[tuple[int, int]]:
    """Split range(n) into `chunks` contiguous pieces whose sizes differ by at most one.

    Pools take fewer chunks than asked when n is small; MPI ranks, which all exist anyway, take
    empty ones (`allow_empty`)."""
    chunks = max(1, chunks if allow_empty else min(chunks, n))
    base, extra = divmod(n, chunks)
    bounds, lo = [], 0
    for i in range(chunks):
        hi = lo + base + (1 if i < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def row_chunks(kernel: Kernel, n: int, chunks: int,
               allow_empty: bool = False) -> list[tuple[int, int]]:
    """`chunk_bounds` for a kernel whose rows may be cut; for one that must see whole arrays
    (`kernel.rowwise` False), one chunk of every row, and empty ones after it where
    `allow_empty` asks for `chunks` of them (MPI ranks exist anyway)."""
    if kernel.rowwise:
        return chunk_bounds(n, chunks, allow_empty)
    return [(0, n)] + [(n, n)] * (max(1, chunks) - 1 if allow_empty else 0)


def slice_rows(arrays: Mapping[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
    return {name: arr[lo:hi] for name, arr in arrays.items()}


__all__ = ["Backend", "BackendTraits", "Clock", "RunTiming", "Startup", "Variant", "chunk_bounds",
           "host_phases", "slice_rows"]
