"""Three NumPy-style functions that gpukit runs on every backend, with no CUDA C.

    python -m gpukit kernels --kernel examples/array_kernels.py:softplus
    python -m gpukit compare --kernel examples/array_kernels.py:softplus

Each takes its arrays of n rows as positional parameters and the array namespace as `xp`:
NumPy on the CPU backends, CuPy on the GPU. gpukit infers the rest from a small trial run.
"""

import numpy

import gpukit


def softplus(x, xp=numpy):
    """Element-wise: log(1 + e^x), without overflow for large x."""
    return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0)


@gpukit.array_kernel(
    # n rows of 32 samples each: the inputs are 2-D, the outputs one value per row.
    inputs=lambda n, rng: rng.standard_normal((n, 32), dtype=numpy.float32),
    flops_per_row=4 * 32,
)
def row_stats(samples, xp=numpy):
    """A reduction per row: each row's mean and root-mean-square."""
    mean = xp.mean(samples, axis=1)
    rms = xp.sqrt(xp.mean(samples * samples, axis=1))
    return {"mean": mean, "rms": rms}


def zscore(x, xp=numpy):
    """Needs whole arrays: each value's distance from the mean of all, in standard deviations."""
    return (x - xp.mean(x)) / xp.std(x)
