"""What every kernel's check needs, built-in or a user's: whether the outputs are there with the
right shape and dtype, whether any value is NaN or inf, and a failed `Check` saying why.

The runner holds each backend's outputs to `output_problem` before a kernel's own check.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gpukit.kernels.base import Check

__all__ = ["failed_check", "nonfinite_problem", "normwise_error", "output_problem",
           "reference_problem"]


def output_problem(out: Mapping[str, np.ndarray], dtypes: Mapping[str, np.dtype],
                   n: int) -> str | None:
    """Why `out` is not n rows of each expected output and dtype, or None if it is."""
    for name, dtype in dtypes.items():
        arr = out.get(name)
        if arr is None:
            return f"output {name!r} is missing"
        if not isinstance(arr, np.ndarray):
            return f"output {name!r} is a {type(arr).__name__}, not a NumPy array"
        if arr.shape != (n,) or arr.dtype != np.dtype(dtype):
            return (f"output {name!r} is {arr.dtype} with shape {arr.shape}, expected "
                    f"{np.dtype(dtype)} with shape {(n,)}")
    return None


def nonfinite_problem(out: Mapping[str, np.ndarray]) -> str | None:
    """Why a float output holds NaN or inf (an unwritten row is NaN), or None."""
    for name, arr in out.items():
        if np.issubdtype(arr.dtype, np.floating):
            bad = int(np.count_nonzero(~np.isfinite(arr)))
            if bad:
                return f"{bad} of {arr.shape[0]} values of {name!r} are NaN or inf (unwritten?)"
    return None


def failed_check(tolerance: float, measure: str, detail: str) -> Check:
    return Check(False, float("inf"), tolerance, measure, detail)


def reference_problem(name: str, ref: np.ndarray) -> str | None:
    """Why output `name` cannot be checked against its reference, or None."""
    bad = int(np.count_nonzero(~np.isfinite(ref)))
    if bad:
        # A NaN in the reference turns every comparison with it false: anything would pass.
        return (f"the reference's {name!r} has {bad} NaN or inf value(s), so no output can be "
                f"checked against it")
    return None


def normwise_error(out: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """max|out - ref| / max|ref| (absolute where the reference is all zero), and where the worst
    element is."""
    if out.size == 0:
        return 0.0, 0
    diff = np.abs(out.astype(ref.dtype) - ref) if out.dtype.kind != "b" \
        else np.abs(out.astype(np.int8) - ref.astype(np.int8))
    scale = float(np.max(np.abs(ref)))
    rel = diff / scale if scale > 0 else diff
    worst = int(np.argmax(rel))
    return float(rel[worst]), worst
