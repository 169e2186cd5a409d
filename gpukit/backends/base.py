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
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from gpukit import phases
from gpukit.kernels.base import Inputs, Kernel

Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way a backend can run a kernel: `impl` plus backend options (transfer, memory)."""

    backend: str
    impl: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return "/".join([self.backend, self.impl, *(v for _, v in self.options)])

    def option(self, name: str, default: str | None = None) -> str | None:
        return dict(self.options).get(name, default)

    def to_json(self) -> dict:
        return {"backend": self.backend, "impl": self.impl, "options": dict(self.options),
                "label": self.label}


@dataclasses.dataclass
class RunTiming:
    """One repetition: seconds per phase, the host wall clock around it, and extra clocks.

    `phases_s` holds the phases this backend can separate (transfer_in, compute, transfer_out).
    `wall_s` is the host clock around the whole repetition, synchronized at the end, and is the
    end-to-end figure. `device_s` holds the same phases from CUDA events where a GPU ran them,
    and `extra` anything a backend wants to keep beside them (per-worker clocks, streams, ...).
    """

    phases_s: dict[str, float]
    wall_s: float
    device_s: dict[str, float] | None = None
    extra: dict[str, Any] | None = None

    def to_json(self) -> dict:
        data = {"phases_s": self.phases_s, "wall_s": self.wall_s}
        if self.device_s is not None:
            data["device_s"] = self.device_s
        if self.extra:
            data["extra"] = self.extra
        return data


@dataclasses.dataclass
class Startup:
    """What a session paid once before its first run, by named step, in seconds."""

    steps_s: dict[str, float] = dataclasses.field(default_factory=dict)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return float(sum(self.steps_s.values()))

    def to_json(self) -> dict:
        return {"steps_s": self.steps_s, "total_s": self.total_s, "facts": self.facts}


class Backend(abc.ABC):
    """A session of one backend variant at one worker count."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # True for backends whose worker count is a sweep axis (threads, processes, mpi).
    parallel: ClassVar[bool] = False
    # True for backends that run on a GPU (a CUDA context must never be forked).
    gpu: ClassVar[bool] = False

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


def slice_rows(arrays: Mapping[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
    return {name: arr[lo:hi] for name, arr in arrays.items()}
