"""gpukit: should this numeric code run on threads, processes or the GPU, and from what size?"""

__version__ = "0.1.0"
