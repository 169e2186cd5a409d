"""A user kernel whose CUDA version writes only the first half of its output, for the tests
that device outputs start unwritten (tests/test_gpu.py and tests/test_gpu_backends_fake.py)."""

import numpy as np

from gpukit.kernels.user import SimpleKernel


class WritesHalf(SimpleKernel):
    # A CUDA kernel that leaves the second half of its output alone: on a device buffer that
    # held a previous case's correct results, that half would pass the check.
    name = "writeshalf"
    outputs = ("z",)
    cuda_code = r"""
extern "C" __global__ void writeshalf(const float* x, float* z, long long n)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n / 2) z[i] = 2.0f * x[i];
}
"""
    cuda_args = ("x", "z", ("n", np.int64))

    def split_inputs(self, n, params, rng):
        return {"x": rng.standard_normal(n, dtype=np.float32)}

    def reference(self, inputs, params):
        return {"z": 2.0 * inputs.split["x"].astype(np.float64)}

    def numpy(self, split, whole, out, params):
        np.multiply(split["x"], np.float32(2), out=out["z"])
