"""What a kernel is: inputs, a float64 reference, a check, a work model and its implementations.

A kernel knows nothing about where it runs. Backends split its `split` inputs along axis 0 into
chunks, hand every chunk the `whole` inputs too, and let an implementation fill the matching
rows of each output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gpukit.errors import KernelError, UsageError

# An implementation fills `out` (views of this chunk's output rows) from `split` (this chunk's
# rows of the split inputs) and `whole` (inputs every chunk sees). It returns nothing.
HostImpl = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray],
                     Mapping[str, np.ndarray], Mapping[str, Any]], None]

HOST_IMPLS = ("python", "numpy")


@dataclasses.dataclass(frozen=True)
class Param:
    """One kernel parameter: an integer knob such as polyval's degree `k`."""

    name: str
    default: int
    help: str
    minimum: int = 1
    maximum: int | None = None

    def parse(self, text: str | int) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise UsageError(f"parameter {self.name} must be an integer, got {text!r}") from None
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            upper = f" and <= {self.maximum}" if self.maximum is not None else ""
            raise UsageError(f"parameter {self.name} must be >= {self.minimum}{upper}, got {value}")
        return value


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Host arrays for one problem: `split` rows go to chunks, `whole` arrays go to every chunk."""

    split: dict[str, np.ndarray]
    whole: dict[str, np.ndarray]

    @property
    def nbytes(self) -> int:
        return (sum(a.nbytes for a in self.split.values())
                + sum(a.nbytes for a in self.whole.values()))


@dataclasses.dataclass(frozen=True)
class Work:
    """The work model of one problem: what any implementation must at least compute and move."""

    flops: float
    bytes_in: int
    bytes_out: int

    @property
    def bytes_total(self) -> int:
        return self.bytes_in + self.bytes_out


@dataclasses.dataclass(frozen=True)
class Check:
    """How far an output is from the float64 reference, and how far it may be."""

    ok: bool
    error: float
    tolerance: float
    measure: str
    detail: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CudaLaunch:
    """How the GPU backends call a kernel's CUDA C function for one problem.

    `args` names, in order, the device arrays (inputs or outputs) and scalar parameters of the
    `extern "C"` function; scalars carry an explicit NumPy type so that both CuPy and PyCUDA pass
    exactly the bytes the C signature expects.
    """

    function: str
    args: tuple[str | tuple[str, type], ...]
    block: int
    grid: int


class Kernel:
    """Base class. Subclasses set the class attributes and implement the methods."""

    name: str = ""
    summary: str = ""
    params: tuple[Param, ...] = ()
    # Defaults for `compare` when the user names none: one memory-bound and one compute-bound set.
    default_param_sets: tuple[dict[str, int], ...] = ({},)
    # Sizes for `compare` when the user names none: n = 2^10, 2^12, ..., 2^24 suits work that
    # grows linearly with n; a kernel whose work grows faster sets a smaller range.
    default_sizes: tuple[int, ...] = tuple(1 << e for e in range(10, 25, 2))
    outputs: tuple[str, ...] = ()
    # File name under the kernels/ source folder, or None for a kernel without a GPU version.
    cuda_file: str | None = None
    # How to find this kernel again in another process (see gpukit.kernels.load).
    spec: str = ""
    # Its FLOPs are multiply-adds, the work `gpukit limits` rates a core at. Otherwise (exp,
    # log, compares, divisions...) the model rates the kernel by its own serial run instead.
    multiply_add_work: bool = False
    # Its rows are independent, so the split inputs may be cut into chunks of rows (threads,
    # processes, MPI ranks). False: every problem runs whole, on one worker.
    rowwise: bool = True
    # A function written against an array namespace (gpukit.kernels.arrays) rather than CUDA C:
    # a GPU runs it through its library's NumPy-style namespace, `device_outputs(xp, ...)`.
    array_function: bool = False

    # -- definition ------------------------------------------------------------------------

    def make_inputs(self, n: int, params: Mapping[str, int], seed: int = 0) -> Inputs:
        raise NotImplementedError

    def output_dtypes(self, params: Mapping[str, int]) -> dict[str, np.dtype]:
        raise NotImplementedError

    def reference(self, inputs: Inputs, params: Mapping[str, int]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def check(self, out: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray],
              inputs: Inputs, params: Mapping[str, int]) -> Check:
        raise NotImplementedError

    def work(self, n: int, params: Mapping[str, int]) -> Work:
        raise NotImplementedError

    def host_impls(self) -> dict[str, HostImpl]:
        """The CPU implementations this kernel has, by name ('python', 'numpy')."""
        return {}

    def cuda_launch(self, n: int, params: Mapping[str, int]) -> CudaLaunch:
        raise NotImplementedError(f"kernel {self.name} has no CUDA version")

    # -- helpers shared by every kernel ----------------------------------------------------

    def resolve_params(self, given: Mapping[str, Any] | None = None) -> dict[str, int]:
        known = {p.name: p for p in self.params}
        given = dict(given or {})
        unknown = sorted(set(given) - set(known))
        if unknown:
            names = ", ".join(known) or "none"
            raise UsageError(f"kernel {self.name} has no parameter {unknown[0]!r} "
                             f"(it has: {names})")
        return {name: p.parse(given.get(name, p.default)) for name, p in known.items()}

    def alloc_outputs(self, n: int, params: Mapping[str, int]) -> dict[str, np.ndarray]:
        """Output arrays marked unwritten (NaN, or -1 for integers), so that a row nobody wrote
        fails the check."""
        out = {}
        for name, dtype in self.output_dtypes(params).items():
            out[name] = mark_unwritten(np.empty(n, dtype=dtype))
        return out

    def cuda_source(self) -> str:
        if self.cuda_file is None:
            raise NotImplementedError(f"kernel {self.name} has no CUDA version")
        return cuda_source_path(self.cuda_file).read_text()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "summary": self.summary,
            "params": [dataclasses.asdict(p) for p in self.params],
            "implementations": sorted(self.host_impls()) + (["cuda"] if self.cuda_file else []),
            "spec": self.spec,
        }


def run_impl(impl: Callable, split: Mapping, whole: Mapping, out: dict, params: Mapping) -> None:
    """Call a host implementation, which must write into `out`'s arrays. One that binds a new
    array to `out[name]` instead would seem to work where the caller reads `out` back (one
    thread) and not where `out` holds views of shared arrays (chunks, shared memory): say so."""
    given = dict(out)
    impl(split, whole, out, params)
    check_in_place(given, out)


def check_in_place(given: Mapping, out: Mapping) -> None:
    """KernelError if an implementation bound a new array to an output name; `given` is a copy
    of `out` from before the call. Apart from `run_impl` so that a backend timing one call can
    keep this bookkeeping outside its clock."""
    for name, arr in given.items():
        if out.get(name) is not arr:
            raise KernelError(f"it replaced out[{name!r}] with a new array instead of writing "
                              f"into it: write out[{name!r}][:] = ... (or use out=)")


def check_cuda_args(kernel: Kernel, launch: CudaLaunch, inputs: Inputs,
                    params: Mapping[str, int]) -> None:
    """Every CUDA argument is an input, an output, `n` or a parameter (KernelError if not)."""
    arrays = {*inputs.split, *inputs.whole}
    for arg in launch.args:
        if isinstance(arg, str):
            if arg not in arrays and arg not in kernel.outputs:
                raise KernelError(f"kernel {kernel.name}: CUDA argument {arg!r} is neither an "
                                  f"input nor an output")
        elif arg[0] != "n" and arg[0] not in params:
            raise KernelError(f"kernel {kernel.name}: CUDA scalar {arg[0]!r} is neither n nor "
                              f"a parameter")


def mark_unwritten(arr: np.ndarray) -> np.ndarray:
    """Fill an output array with what no kernel writes: NaN, or -1 for integer outputs."""
    arr.fill(np.nan if np.issubdtype(arr.dtype, np.floating) else -1)
    return arr


def cuda_source_path(file_name: str) -> Path:
    """Find a .cu file: inside the installed package, else in the checkout's kernels/ folder."""
    here = Path(__file__).resolve().parent.parent
    for folder in (here / "cuda", here.parent / "kernels"):
        path = folder / file_name
        if path.is_file():
            return path
    raise FileNotFoundError(f"CUDA source {file_name} is in neither {here / 'cuda'} "
                            f"nor {here.parent / 'kernels'}")
