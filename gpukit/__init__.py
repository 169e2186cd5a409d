"""gpukit: should this numeric code run on threads, processes or the GPU, and from what size?"""

__version__ = "0.1.0"


def __getattr__(name):
    # `gpukit.array_kernel` for users' kernel files, imported on first use so that the command
    # line starts without NumPy.
    if name == "array_kernel":
        from gpukit.kernels.arrays import array_kernel
        return array_kernel
    raise AttributeError(f"module 'gpukit' has no attribute {name!r}")
