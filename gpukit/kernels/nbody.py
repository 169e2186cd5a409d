"""nbody: one step of all-pairs softened gravitational accelerations for n bodies, in float32.

    a_i = sum_j m_j (r_j - r_i) / (|r_j - r_i|^2 + eps^2)^(3/2),   eps^2 = SOFTENING2 (G = 1)

O(n^2) work on O(n) data, so the GPU's advantage grows with n. Bodies are uniform in the cube
[-1, 1]^3 with masses in [0.5, 1.5]. The self term (j = i) is included everywhere: its r_j - r_i
is zero, so it adds nothing, and no implementation needs a branch for it.

Inputs. The split inputs are the target bodies' positions (xi, yi, zi): a chunk computes the
accelerations of its rows. The whole inputs are all bodies (x, y, z, m), which every chunk needs.
Targets are the same bodies, so the layout moves their positions twice (28 bytes per body in
where 16 would do); the work model counts the 16 a program must move.

Error measure: max over targets i and components c of |a_ic - ref_ic| / s_ic, where
s_ic = sum_j m_j |r_jc - r_ic| / (|r_j - r_i|^2 + eps^2)^(3/2) is the sum of the terms' sizes
(computed with the float64 reference). Tolerance (TERM_ROUNDINGS + SUM_LAMBDA sqrt(n)) u,
u = 2**-24, 2.5e-5 at n = 2^8 and 7.3e-4 at 2^18:
- each term is formed with relative error <= gamma(25) ~ 25 u (a rounded difference, three
  roundings for |d|^2 + eps^2, 2 ulp for rsqrt plus half of its argument's error, three
  multiplications for m rsqrt^3 and one for the component; the NumPy form m / (r2 sqrt(r2)) is
  within the same budget), which adds at most TERM_ROUNDINGS u times the sum of the terms' sizes;
- summing n terms: the worst case gamma(n - 1) (Higham, eq. 4.4) is 1.6e-2 at 2^18, looser than
  leaving out a whole 256-body tile (1.4e-2 there), so it could not catch a wrong loop bound in
  kernels/nbody.cu. Rounding errors are instead taken as independent and of mean zero, which
  gives lambda sqrt(n) u times the sum of sizes with probability >= 1 - 2n exp(-lambda^2 / 2)
  (Higham and Mary, SIAM J. Sci. Comput. 41(5), 2019, thm 3.1), for any order, FMA or not.
  lambda = 16 would already leave a failure chance near 1e-50; SUM_LAMBDA = 24 leaves room for
  roundings that are not quite independent. The recursive order is the worst of the usual ones,
  and kernels/nbody.cu sums each target's n terms one after another in a single float32.

Measured (seed 0, REFERENCE_ROWS sampled targets; "cu order": NumPy emulation of nbody.cu's
sequential FMA sum with rsqrtf 2 ulp too large on every term; "no tile": NumPy without the last
256 bodies):

    n       python   numpy    cu order  tolerance  no tile  no 0.1% of bodies
    2^8     5.3e-8   1.7e-7   9.4e-7    2.5e-5     1        0.11 (1 body)
    2^10    5.7e-8   1.8e-7   1.5e-6    4.8e-5     0.72     0.16
    2^12    5.7e-8   1.3e-7   2.7e-6    9.3e-5     0.35     3.7e-2
    2^14    5.7e-8   1.4e-7   5.8e-6    1.9e-4     0.16     3.8e-2
    2^16    -        2.7e-7   1.5e-5    3.7e-4     1.8e-2   1.1e-2
    2^18    -        4.7e-7   2.1e-5    7.3e-4     1.4e-2   1.4e-2

so the tolerance is >= 149x what NumPy shows, >= 25x the CUDA order's, and >= 18x below what
one missing tile gives, at every default size. (The pure-Python version sums in float64 and
rounds once: its error stays near u at any n.)

For large n the float64 reference covers a sample of REFERENCE_ROWS targets (the first and last
128 and the rest evenly spaced: the ends are where tiles and chunks are partial), since all n
would cost O(n^2) float64 work for every size; every row is still checked for NaN (rows that
nobody wrote are NaN).

Work model: 20 FLOPs per pair, the convention of GPU Gems 3 ch. 31 (Nyland, Harris, Prins):
3 differences, 6 for |d|^2 + eps^2, rsqrt as 2 (a square root and a division), 3 multiplications
for m rsqrt^3 and 6 for the three multiply-adds into the accelerations; n^2 pairs.
Bytes: 16 in (position and mass) and 12 out (acceleration) per body.
"""

from __future__ import annotations

import math

import numpy as np

from gpukit.kernels.base import Check, CudaLaunch, Inputs, Kernel, Work
from gpukit.kernels.checks import failed_check, nonfinite_problem, output_problem

UNIT_ROUNDOFF = 2.0 ** -24
# eps^2 as a float32, the same value in every implementation and in kernels/nbody.cu.
SOFTENING2 = float(np.float32(1e-4))
FLOPS_PER_PAIR = 20
TERM_ROUNDINGS = 32
# lambda of the probabilistic summation bound (see the docstring).
SUM_LAMBDA = 24

OUTPUTS = ("ax", "ay", "az")
TARGETS = ("xi", "yi", "zi")
BODIES = ("x", "y", "z", "m")

# NumPy blocks: 64 targets x 2048 sources, five float32 temporaries of 512 KiB that stay in L2.
NUMPY_TARGETS = 64
NUMPY_SOURCES = 2048
REFERENCE_ROWS = 1024
REFERENCE_END_ROWS = 128
REFERENCE_SOURCES = 4096

CUDA_BLOCK = 256


def tolerance_for(n: int) -> float:
    """The largest error a correct float32 implementation may show for n bodies (docstring)."""
    return (TERM_ROUNDINGS + SUM_LAMBDA * math.sqrt(n)) * UNIT_ROUNDOFF


def bodies(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, n, 7])
    pos = rng.uniform(-1.0, 1.0, size=(3, n)).astype(np.float32)
    return {"x": pos[0], "y": pos[1], "z": pos[2],
            "m": rng.uniform(0.5, 1.5, size=n).astype(np.float32)}


def nbody_numpy(split, whole, out, params) -> None:
    """float32 blocks of targets x sources; every ufunc call releases the GIL."""
    xi, yi, zi = (split[name] for name in TARGETS)
    xs, ys, zs, ms = (whole[name] for name in BODIES)
    t, n = xi.shape[0], xs.shape[0]
    eps2 = np.float32(SOFTENING2)
    shape = (min(NUMPY_TARGETS, t), min(NUMPY_SOURCES, n))
    dx, dy, dz, r2, tmp = (np.empty(shape, dtype=np.float32) for _ in range(5))
    for lo in range(0, t, NUMPY_TARGETS):
        hi = min(t, lo + NUMPY_TARGETS)
        px, py, pz = xi[lo:hi, None], yi[lo:hi, None], zi[lo:hi, None]
        acc = [np.zeros(hi - lo, dtype=np.float32) for _ in OUTPUTS]
        for slo in range(0, n, NUMPY_SOURCES):
            shi = min(n, slo + NUMPY_SOURCES)
            b = (slice(0, hi - lo), slice(0, shi - slo))
            d = [dx[b], dy[b], dz[b]]
            np.subtract(xs[None, slo:shi], px, out=d[0])
            np.subtract(ys[None, slo:shi], py, out=d[1])
            np.subtract(zs[None, slo:shi], pz, out=d[2])
            r, w = r2[b], tmp[b]
            np.multiply(d[0], d[0], out=r)
            np.multiply(d[1], d[1], out=w)
            r += w
            np.multiply(d[2], d[2], out=w)
            r += w
            r += eps2
            np.sqrt(r, out=w)
            w *= r  # (|d|^2 + eps^2)^(3/2)
            np.divide(ms[None, slo:shi], w, out=w)  # m_j / that
            for c in range(3):
                d[c] *= w
                acc[c] += d[c].sum(axis=1)
        for name, a in zip(OUTPUTS, acc):
            out[name][lo:hi] = a


def nbody_python(split, whole, out, params) -> None:
    """Pure Python floats (float64), rounded to float32 once at the end; holds the GIL."""
    sources = list(zip(*(whole[name].tolist() for name in BODIES)))
    eps2, sqrt = SOFTENING2, math.sqrt
    result = ([], [], [])
    for px, py, pz in zip(*(split[name].tolist() for name in TARGETS)):
        ax = ay = az = 0.0
        for x, y, z, m in sources:
            dx, dy, dz = x - px, y - py, z - pz
            inv = 1.0 / sqrt(dx * dx + dy * dy + dz * dz + eps2)
            s = m * inv * inv * inv
            ax += s * dx
            ay += s * dy
            az += s * dz
        result[0].append(ax)
        result[1].append(ay)
        result[2].append(az)
    for name, values in zip(OUTPUTS, result):
        out[name][:] = values


def reference_rows(n: int) -> np.ndarray:
    """The target rows the float64 reference covers: all of them, or a sample with both ends."""
    if n <= REFERENCE_ROWS:
        return np.arange(n)
    ends = np.concatenate([np.arange(REFERENCE_END_ROWS), np.arange(n - REFERENCE_END_ROWS, n)])
    spread = np.linspace(0, n - 1, REFERENCE_ROWS - 2 * REFERENCE_END_ROWS).round().astype(np.int64)
    return np.unique(np.concatenate([ends, spread]))


class NBody(Kernel):
    name = "nbody"
    summary = ("all-pairs softened gravity, one step (float32): O(n^2) work, "
               f"{FLOPS_PER_PAIR} FLOPs per pair, on 16 bytes in and 12 out per body")
    params = ()
    # No knob: n itself is the intensity knob here (n FLOPs per byte); both the memory-light
    # small-n end and the compute-bound large-n end are in any sweep over sizes.
    default_param_sets = ({},)
    # O(n^2) pairs: 2^18 bodies is already 1.4e12 FLOPs a step, seconds on a GPU.
    default_sizes = tuple(1 << e for e in range(8, 19, 2))
    outputs = OUTPUTS
    cuda_file = "nbody.cu"
    spec = "nbody"

    def make_inputs(self, n, params, seed=0) -> Inputs:
        whole = bodies(n, seed)
        return Inputs(split={"xi": whole["x"], "yi": whole["y"], "zi": whole["z"]}, whole=whole)

    def output_dtypes(self, params):
        return {name: np.dtype(np.float32) for name in OUTPUTS}

    def reference(self, inputs, params) -> dict[str, np.ndarray]:
        rows = reference_rows(inputs.split["xi"].shape[0])
        targets = [inputs.split[name][rows].astype(np.float64)[:, None] for name in TARGETS]
        src = {name: inputs.whole[name].astype(np.float64) for name in BODIES}
        n = src["x"].shape[0]
        ref = {name: np.zeros(rows.shape[0]) for name in OUTPUTS}
        scale = {name: np.zeros(rows.shape[0]) for name in OUTPUTS}
        for lo in range(0, n, REFERENCE_SOURCES):
            hi = lo + REFERENCE_SOURCES
            d = [src[name][None, lo:hi] - t for name, t in zip(("x", "y", "z"), targets)]
            w = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + SOFTENING2
            w = src["m"][None, lo:hi] / (w * np.sqrt(w))
            for name, dc in zip(OUTPUTS, d):
                term = dc * w
                ref[name] += term.sum(axis=1)
                scale[name] += np.abs(term).sum(axis=1)
        ref["rows"] = rows
        ref.update({"scale_" + name: s for name, s in scale.items()})
        return ref

    def check(self, out, ref, inputs, params) -> Check:
        n = inputs.split["xi"].shape[0]
        tolerance = tolerance_for(n)
        measure = "max |a - ref| / sum_j |term_j|, per component"
        problem = output_problem(out, self.output_dtypes(params), n) or nonfinite_problem(out)
        if problem:
            return failed_check(tolerance, measure, problem)
        rows = ref["rows"]
        error, detail = 0.0, ""
        for name in OUTPUTS:
            got = out[name][rows].astype(np.float64)
            scale = ref["scale_" + name]
            # A body alone feels nothing: scale 0, and the error must then be exactly 0.
            rel = np.abs(got - ref[name]) / np.where(scale > 0, scale, 1.0)
            worst = int(np.argmax(rel)) if rows.shape[0] else 0
            if rows.shape[0] and rel[worst] > error:
                error = float(rel[worst])
                detail = (f"worst {name}[{int(rows[worst])}]: got {float(got[worst])!r}, "
                          f"reference {float(ref[name][worst])!r}")
        ok = error <= tolerance
        return Check(ok, error, tolerance, measure, "" if ok else detail)

    def work(self, n, params) -> Work:
        return Work(flops=float(FLOPS_PER_PAIR) * n * n, bytes_in=16 * n, bytes_out=12 * n)

    def host_impls(self):
        return {"python": nbody_python, "numpy": nbody_numpy}

    def cuda_launch(self, n, params) -> CudaLaunch:
        return CudaLaunch(function="nbody",
                          args=(*TARGETS, *BODIES, *OUTPUTS, ("n", np.int64)),
                          block=CUDA_BLOCK, grid=max(1, -(-n // CUDA_BLOCK)))
