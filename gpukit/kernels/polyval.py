"""polyval: y[i] = c[0] + c[1]*x[i] + ... + c[k]*x[i]**k, by Horner's rule, in float32.

`k` is the intensity knob: 2k FLOPs for every 8 bytes moved (4 in, 4 out), so small k is bound
by memory and transfers and large k by arithmetic.

Error measure. Float32 Horner's rule on float32 data satisfies, for every point,
    |y_hat - y| <= gamma(2k) * sum_j |c_j| |x|^j,    gamma(m) = m u / (1 - m u),  u = 2**-24
(Higham, Accuracy and Stability of Numerical Algorithms, eq. 5.3), and storing y in float32 adds
at most u * |y| <= u * sum_j |c_j| |x|^j. Dividing each point's error by its own
sum_j |c_j| |x|^j makes the bound independent of cancellation and of k's growth of the sum, so
the check is `max_i |y_hat_i - y_i| / s_i <= gamma(2k) + u`: a rigorous bound, not a guessed
tolerance, and it holds with or without fused multiply-add (an FMA rounds once where the plain
version rounds twice).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gpukit.kernels.base import Check, CudaLaunch, Inputs, Kernel, Param, Work

UNIT_ROUNDOFF = 2.0 ** -24

# Points per block in the NumPy implementation: x and the accumulator (2 x 1 MiB) stay in the
# L2 of a current server core, or its share of L3, while all k Horner steps run over them, and
# every thread of a full machine still has its blocks in cache. Each ufunc call is then ~100 us
# of work, so its ~1 us of call overhead and the GIL hand-over around it stay small. Measured on
# the 2-core dev machine (k=64, n=2^22, best of 15): two threads ran 1.47x one thread with
# 32 Ki-point blocks (calls of a few us), 1.77x with 256 Ki, 1.90x with 1 Mi points (8 MiB a
# thread, which 16 threads would take out of cache).
NUMPY_BLOCK = 256 * 1024

# Block for the float64 reference and error measure (four float64 arrays of this length).
REFERENCE_BLOCK = 16 * 1024

# The CUDA launch: threads per block and points per thread, equal to POLYVAL_BLOCK and
# POLYVAL_POINTS in kernels/polyval.cu (tests/test_cuda_compile.py checks). Each block takes one
# tile of CUDA_BLOCK * CUDA_POINTS_PER_THREAD points; the kernel's grid-stride loop keeps any
# grid correct, so a mismatch would cost speed, not results.
CUDA_BLOCK = 256
CUDA_POINTS_PER_THREAD = 16


def gamma(m: int) -> float:
    mu = m * UNIT_ROUNDOFF
    return mu / (1.0 - mu)


def coefficients(k: int, seed: int) -> np.ndarray:
    """k+1 float32 coefficients in [-1, -0.1] u [0.1, 1]: random signs, never zero."""
    rng = np.random.default_rng([seed, k, 1])
    magnitude = rng.uniform(0.1, 1.0, size=k + 1)
    sign = rng.choice(np.array([-1.0, 1.0]), size=k + 1)
    return (sign * magnitude).astype(np.float32)


def points(n: int, seed: int) -> np.ndarray:
    """n float32 points in [-1, -0.05] u [0.05, 1]: random signs, never zero.

    |x| <= 1 keeps x**k from overflowing at any k; the sum of |c_j x^j| stays below k + 1.
    """
    rng = np.random.default_rng([seed, n, 2])
    magnitude = rng.uniform(0.05, 1.0, size=n).astype(np.float32)
    sign = np.where(rng.integers(0, 2, size=n, dtype=np.int8) == 0, -1, 1).astype(np.float32)
    return magnitude * sign


def _horner_numpy(x: np.ndarray, c: np.ndarray, y: np.ndarray, block: int) -> None:
    """Horner's rule block by block; every in-place ufunc call releases the GIL."""
    top = c[-1]
    rest = c[-2::-1]
    for lo in range(0, x.shape[0], block):
        xb = x[lo:lo + block]
        acc = y[lo:lo + block]
        acc.fill(top)
        for cj in rest:
            np.multiply(acc, xb, out=acc)
            np.add(acc, cj, out=acc)


def polyval_numpy(split, whole, out, params) -> None:
    _horner_numpy(split["x"], whole["c"], out["y"], NUMPY_BLOCK)


def polyval_python(split, whole, out, params) -> None:
    """Pure Python: floats and a loop, so the GIL is held throughout (by design)."""
    coeffs = [float(v) for v in whole["c"][::-1]]
    top, rest = coeffs[0], coeffs[1:]
    ys = []
    append = ys.append
    for x in split["x"].tolist():
        acc = top
        for cj in rest:
            acc = acc * x + cj
        append(acc)
    # Python floats are doubles; rounding to float32 once at the end makes this a more accurate
    # evaluation than float32 Horner, which the same bound covers.
    out["y"][:] = ys


class Polyval(Kernel):
    name = "polyval"
    summary = "degree-k polynomial at n points by Horner's rule (float32); 2k FLOPs per 8 bytes"
    params = (Param("k", default=16, help="polynomial degree: FLOPs per point are 2k",
                    minimum=1, maximum=1 << 20),)
    default_param_sets = ({"k": 2}, {"k": 64})
    outputs = ("y",)
    cuda_file = "polyval.cu"
    spec = "polyval"
    multiply_add_work = True  # Horner's rule: one multiply and one add a step

    def make_inputs(self, n: int, params: Mapping[str, int], seed: int = 0) -> Inputs:
        return Inputs(split={"x": points(n, seed)}, whole={"c": coefficients(params["k"], seed)})

    def output_dtypes(self, params):
        return {"y": np.dtype(np.float32)}

    def reference(self, inputs: Inputs, params) -> dict[str, np.ndarray]:
        x = inputs.split["x"]
        c = inputs.whole["c"].astype(np.float64)
        y = np.empty(x.shape[0], dtype=np.float64)
        scale = np.empty_like(y)
        abs_c = np.abs(c)
        for lo in range(0, x.shape[0], REFERENCE_BLOCK):
            xb = x[lo:lo + REFERENCE_BLOCK].astype(np.float64)
            ab = np.abs(xb)
            acc, s = y[lo:lo + REFERENCE_BLOCK], scale[lo:lo + REFERENCE_BLOCK]
            acc.fill(c[-1])
            s.fill(abs_c[-1])
            for j in range(c.shape[0] - 2, -1, -1):
                acc *= xb
                acc += c[j]
                s *= ab
                s += abs_c[j]
        return {"y": y, "scale": scale}

    def check(self, out, ref, inputs, params) -> Check:
        y = out["y"]
        tolerance = gamma(2 * params["k"]) + UNIT_ROUNDOFF
        measure = "max |y - ref| / sum|c_j x^j|"
        if y.shape != ref["y"].shape or y.dtype != np.float32:
            return Check(False, float("inf"), tolerance, measure,
                         f"expected float32 {ref['y'].shape}, got {y.dtype} {y.shape}")
        if not np.all(np.isfinite(y)):
            bad = int(np.count_nonzero(~np.isfinite(y)))
            return Check(False, float("inf"), tolerance, measure,
                         f"{bad} of {y.shape[0]} outputs are NaN or inf (unwritten?)")
        rel = np.abs(y.astype(np.float64) - ref["y"]) / ref["scale"]
        worst = int(np.argmax(rel))
        error = float(rel[worst])
        detail = "" if error <= tolerance else (
            f"worst at i={worst}: got {float(y[worst])!r}, reference {float(ref['y'][worst])!r}")
        return Check(error <= tolerance, error, tolerance, measure, detail)

    def work(self, n: int, params) -> Work:
        k = params["k"]
        return Work(flops=2.0 * k * n, bytes_in=4 * n + 4 * (k + 1), bytes_out=4 * n)

    def host_impls(self):
        return {"python": polyval_python, "numpy": polyval_numpy}

    def cuda_launch(self, n: int, params) -> CudaLaunch:
        return CudaLaunch(
            function="polyval",
            args=("x", "c", "y", ("n", np.int64), ("k", np.int32)),
            block=CUDA_BLOCK,
            grid=max(1, -(-n // (CUDA_BLOCK * CUDA_POINTS_PER_THREAD))),
        )
