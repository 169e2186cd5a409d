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
x from L2 rather than HBM; an L2 flush for compute-only timing is a separate, later change.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gpukit import phases
from gpukit.backends.base import RunTiming, Variant
from gpukit.errors import KernelError, UsageError
from gpukit.kernels.base import CudaLaunch, Inputs, Kernel

# Host memory for the copies: the user's NumPy arrays as they are (the driver stages them through
# its own pinned buffer), or page-locked buffers the backend fills once in prepare().
MEMORY_KINDS = ("pageable", "pinned")


def cuda_variants(backend: str, kernel: Kernel) -> list[Variant]:
    if kernel.cuda_file is None:
        return []
    return [Variant(backend, "cuda", (("memory", kind),)) for kind in MEMORY_KINDS]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem as a GPU backend sees it: arrays to copy in, outputs to copy out, the launch."""

    n: int
    inputs: dict[str, np.ndarray]  # split then whole inputs, C-contiguous, in H2D order
    outputs: dict[str, np.dtype]  # output name -> dtype; each output has n rows
    launch: CudaLaunch
    scalars: dict[str, np.generic]  # typed value of each scalar argument, by name

    @property
    def device_bytes(self) -> int:
        return (sum(a.nbytes for a in self.inputs.values())
                + sum(self.n * dtype.itemsize for dtype in self.outputs.values()))

    def args(self, arrays: Mapping[str, Any]) -> tuple:
        """The kernel's arguments in signature order: device buffers by name, typed scalars."""
        return tuple(arrays[a] if isinstance(a, str) else self.scalars[a[0]]
                     for a in self.launch.args)


def make_problem(kernel: Kernel, params: Mapping[str, int], inputs: Inputs) -> Problem:
    rows = {a.shape[0] for a in inputs.split.values()}
    if len(rows) != 1:
        raise KernelError(f"kernel {kernel.name}: split inputs disagree on their row count {rows}")
    n = rows.pop()
    arrays = {name: np.ascontiguousarray(a) for name, a in {**inputs.split, **inputs.whole}.items()}
    outputs = {name: np.dtype(dt) for name, dt in kernel.output_dtypes(params).items()}
    launch = kernel.cuda_launch(n, params)
    scalars = {}
    for arg in launch.args:
        if isinstance(arg, str):
            if arg not in arrays and arg not in outputs:
                raise KernelError(f"kernel {kernel.name}: CUDA argument {arg!r} is neither an "
                                  f"input nor an output")
            continue
        name, scalar_type = arg
        # `n` is the problem size; any other scalar is a kernel parameter.
        value = n if name == "n" else params.get(name)
        if value is None:
            raise KernelError(f"kernel {kernel.name}: CUDA scalar {name!r} is neither n nor "
                              f"a parameter")
        scalars[name] = scalar_type(value)
    return Problem(n, arrays, outputs, launch, scalars)


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


def version_text(cuda_version: int) -> str:
    """CUDA's integer versions (13020) as text ("13.2")."""
    return f"{cuda_version // 1000}.{cuda_version % 1000 // 10}"


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
