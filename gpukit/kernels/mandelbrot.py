"""mandelbrot: escape-time iteration counts of n points of the complex plane, float32 arithmetic.

The grid. n is the number of points. They lie on a W x H grid over the window
[-2.25, 0.75] x [-1.25, 1.25] with W = max(1, round(sqrt(1.2 n))) and H = ceil(n / W) (cells
about square: the window is 1.2 times as wide as tall), in row-major order, the last row cut
short when W does not divide n. Each point sits at (col + ox, row + oy) cells from the window's
corner, with one sub-cell offset (ox, oy) in [0.25, 0.75) drawn from the seed: that keeps points
off the real axis and the lines of special points such as Re c = -0.75, whose orbits are the
slowest and most sensitive of all, and breaks the mirror symmetry that would make every
difference come twice. The split inputs are the points' float32 coordinates cx, cy, so a chunk
is a run of grid points and threads, processes and the GPU all see the same numbers.

The iteration, identical in every implementation (z0 = 0):
    for it in 0 .. max_iter-1: x2 = x*x; y2 = y*y; if x2 + y2 > 4: break
                               y = (x + x)*y + cy; x = (x2 - y2) + cx
count = the `it` of the break, or max_iter if the orbit never left the disc of radius 2. The
NumPy version and the CUDA version (which uses __fmul_rn/__fadd_rn, so no FMA contraction) round
the same float32 operations in the same order and give the same counts bit for bit; the Python
version iterates in float64 like the reference.

Work per point is uneven: points inside the set run all max_iter iterations (about a fifth of
the window), most outside escape in a few. Chunking and scheduling matter for threads and
processes, and warps diverge on the GPU.

Agreement: the fraction of points whose count differs from the float64 reference, at most
1% + 4/n. Orbits of points near the set's boundary are chaotic: float32 rounding (or an FMA)
changes them after enough iterations, so some counts must differ, and which ones is luck. The
measured fraction for float32 (with and without FMA) against float64 grows with max_iter and
levels off at 0.3-0.35% (n = 2**16 and 2**20; max_iter 64 to 65536), and reaches 0.88% at small
n (300 to 40000 points, 8 seeds, max_iter 64 to 4096). 1% leaves a margin over those; the 4
points allow for tiny grids where one chaotic point is a large fraction. Real mistakes are far
outside: an off-by-one count or unwritten rows change every point outside the set (about 80% of
the window), a wrong escape radius most of them.

Work model: 8 FLOPs per iteration performed (x*x, y*y, x2+y2, x+x, *y, +cy, x2-y2, +cx; the
comparison not counted) times the mean count per point, which depends on max_iter only. It is
measured once per max_iter on a fixed 64 x 53 sample of the same window (a few percent from the
mean of any large grid). Bytes: 8 in (cx, cy) and 4 out (an int32 count) per point.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from gpukit.kernels.base import Check, CudaLaunch, Inputs, Kernel, Param, Work
from gpukit.kernels.checks import failed_check, output_problem

X_MIN, X_MAX, Y_MIN, Y_MAX = -2.25, 0.75, -1.25, 1.25
ASPECT = (X_MAX - X_MIN) / (Y_MAX - Y_MIN)
FLOPS_PER_ITERATION = 8
MAX_DIFFERING_FRACTION = 0.01
MAX_DIFFERING_EXTRA_POINTS = 4
WORK_SAMPLE_POINTS = 64 * 53

# Points per NumPy block. Each iteration is a few ufunc calls on the block's points that have
# not escaped yet, so calls shrink as points escape; with 16 Ki-point blocks they were so short
# that two threads ran 0.84x one (GIL hand-overs), with 64 Ki 1.31x (2-core dev machine,
# n=2^20, max_iter=256).
NUMPY_BLOCK = 64 * 1024
CUDA_BLOCK = 128


def grid_shape(n: int) -> tuple[int, int]:
    """(W, H): columns and rows of the grid that holds n points, row-major, last row partial."""
    width = max(1, round(math.sqrt(n * ASPECT)))
    return width, -(-n // width)


def points(n: int, seed: int) -> dict[str, np.ndarray]:
    width, height = grid_shape(n)
    ox, oy = np.random.default_rng([seed, 3]).uniform(0.25, 0.75, size=2)
    i = np.arange(n)
    col, row = i % width, i // width
    cx = X_MIN + (col + ox) * ((X_MAX - X_MIN) / width)
    cy = Y_MIN + (row + oy) * ((Y_MAX - Y_MIN) / height)
    return {"cx": cx.astype(np.float32), "cy": cy.astype(np.float32)}


def escape_counts(cx: np.ndarray, cy: np.ndarray, max_iter: int, count: np.ndarray) -> None:
    """Counts for arrays of one float dtype (float32 or float64), iterating only live points."""
    dt = cx.dtype.type
    four = dt(4.0)
    x = np.zeros_like(cx)
    y = np.zeros_like(cx)
    live = np.arange(cx.shape[0])
    count[:] = max_iter
    for it in range(max_iter):
        x2 = x * x
        y2 = y * y
        gone = (x2 + y2) > four
        if gone.any():
            count[live[gone]] = it
            stay = ~gone
            live, x, y, x2, y2, cx, cy = (a[stay] for a in (live, x, y, x2, y2, cx, cy))
            if live.shape[0] == 0:
                return
        y = (x + x) * y
        y += cy
        x = x2 - y2
        x += cx


def mandelbrot_numpy(split, whole, out, params) -> None:
    """float32, a block of points at a time, dropping escaped points as they go."""
    cx, cy, count = split["cx"], split["cy"], out["count"]
    for lo in range(0, cx.shape[0], NUMPY_BLOCK):
        hi = lo + NUMPY_BLOCK
        escape_counts(cx[lo:hi], cy[lo:hi], params["max_iter"], count[lo:hi])


def mandelbrot_python(split, whole, out, params) -> None:
    """Pure Python floats (float64, like the reference); holds the GIL."""
    max_iter = params["max_iter"]
    counts = []
    for a, b in zip(split["cx"].tolist(), split["cy"].tolist()):
        x = y = 0.0
        it = 0
        while it < max_iter:
            x2 = x * x
            y2 = y * y
            if x2 + y2 > 4.0:
                break
            y = (x + x) * y + b
            x = (x2 - y2) + a
            it += 1
        counts.append(it)
    out["count"][:] = counts


@functools.lru_cache(maxsize=32)
def mean_count(max_iter: int) -> float:
    """Mean count per point over a fixed sample of the window (float64)."""
    sample = points(WORK_SAMPLE_POINTS, seed=0)
    count = np.empty(WORK_SAMPLE_POINTS, dtype=np.int64)
    escape_counts(sample["cx"].astype(np.float64), sample["cy"].astype(np.float64), max_iter,
                  count)
    return float(count.mean())


class Mandelbrot(Kernel):
    name = "mandelbrot"
    summary = ("escape-time counts on an n-point grid (float32 arithmetic, int32 counts); "
               "uneven work per point")
    params = (Param("max_iter", default=256,
                    help="iteration cap: points inside the set run all of them (8 FLOPs each)",
                    minimum=1, maximum=1 << 16),)
    default_param_sets = ({"max_iter": 64}, {"max_iter": 1024})
    outputs = ("count",)
    cuda_file = "mandelbrot.cu"
    spec = "mandelbrot"

    def make_inputs(self, n, params, seed=0) -> Inputs:
        return Inputs(split=points(n, seed), whole={})

    def output_dtypes(self, params):
        return {"count": np.dtype(np.int32)}

    def reference(self, inputs, params):
        cx, cy = inputs.split["cx"], inputs.split["cy"]
        count = np.empty(cx.shape[0], dtype=np.int32)
        for lo in range(0, cx.shape[0], NUMPY_BLOCK):
            hi = lo + NUMPY_BLOCK
            escape_counts(cx[lo:hi].astype(np.float64), cy[lo:hi].astype(np.float64),
                          params["max_iter"], count[lo:hi])
        return {"count": count}

    def check(self, out, ref, inputs, params) -> Check:
        n = inputs.split["cx"].shape[0]
        tolerance = MAX_DIFFERING_FRACTION + MAX_DIFFERING_EXTRA_POINTS / max(n, 1)
        measure = "fraction of points whose count differs from the float64 reference"
        problem = output_problem(out, self.output_dtypes(params), n)
        if problem:
            return failed_check(tolerance, measure, problem)
        count = out["count"]
        outside = int(np.count_nonzero((count < 0) | (count > params["max_iter"])))
        if outside:
            return failed_check(tolerance, measure, f"{outside} counts are outside "
                                f"[0, {params['max_iter']}] (unwritten rows hold -1)")
        differs = np.flatnonzero(count != ref["count"])
        error = differs.shape[0] / max(n, 1)
        ok = error <= tolerance
        detail = "" if ok else (
            f"{differs.shape[0]} of {n} counts differ; first at i={int(differs[0])}: got "
            f"{int(count[differs[0]])}, reference {int(ref['count'][differs[0]])}")
        return Check(ok, error, tolerance, measure, detail)

    def work(self, n, params) -> Work:
        iterations = mean_count(params["max_iter"]) * n
        return Work(flops=FLOPS_PER_ITERATION * iterations, bytes_in=8 * n, bytes_out=4 * n)

    def host_impls(self):
        return {"python": mandelbrot_python, "numpy": mandelbrot_numpy}

    def cuda_launch(self, n, params) -> CudaLaunch:
        return CudaLaunch(function="mandelbrot",
                          args=("cx", "cy", "count", ("n", np.int64), ("max_iter", np.int32)),
                          block=CUDA_BLOCK, grid=max(1, -(-n // CUDA_BLOCK)))
