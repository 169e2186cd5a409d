"""A complete user kernel: z = a*x + y on float32 vectors (saxpy), in Python, NumPy and CUDA.

    python -m gpukit kernels --kernel examples/my_kernel.py:Saxpy
    python -m gpukit compare --kernel examples/my_kernel.py:Saxpy

Each row of x and y is one problem row: threads and processes get contiguous chunks of them
(the "split" inputs); `a` goes whole to every chunk. Leave out any implementation you don't
have: the backends that need it are listed as unavailable, with the reason, and the rest run.
"""

import numpy as np

from gpukit.kernels.user import SimpleKernel

# The CUDA version. Its arguments come in SimpleKernel's default order: split inputs, whole
# inputs, outputs, then n (set `cuda_args` for another order, or to pass parameters).
CUDA = r"""
extern "C" __global__ void saxpy(const float* x, const float* y, const float* a, float* z,
                                 long long n)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) z[i] = a[0] * x[i] + y[i];
}
"""


class Saxpy(SimpleKernel):
    name = "saxpy"
    summary = "z = a*x + y (float32): 2 FLOPs per 12 bytes moved"
    outputs = ("z",)
    flops_per_row = 2
    multiply_add_work = True  # a*x + y: the work `gpukit limits` rates a core at
    # max|z - ref| / max|ref|: a product and a sum, each rounded to float32 (2**-24 relative),
    # of terms no larger than a few times max|z|; 2**-20 leaves room, a real bug is far above.
    tolerance = 2.0 ** -20
    cuda_code = CUDA

    def split_inputs(self, n, params, rng):
        return {"x": rng.standard_normal(n, dtype=np.float32),
                "y": rng.standard_normal(n, dtype=np.float32)}

    def whole_inputs(self, n, params, rng):
        return {"a": np.array([2.5], dtype=np.float32)}

    def reference(self, inputs, params):
        x = inputs.split["x"].astype(np.float64)
        y = inputs.split["y"].astype(np.float64)
        return {"z": float(inputs.whole["a"][0]) * x + y}

    def python(self, split, whole, out, params):
        a = float(whole["a"][0])
        out["z"][:] = [a * x + y for x, y in zip(split["x"].tolist(), split["y"].tolist())]

    def numpy(self, split, whole, out, params):
        np.multiply(split["x"], whole["a"][0], out=out["z"])
        out["z"] += split["y"]
