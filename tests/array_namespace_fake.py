"""CuPy's array namespace on the fake GPU of tests/gpu_fakes.py, for array-namespace kernels.

Device memory there is host memory at real addresses, so a fake device array is a NumPy array
over that memory (a subclass whose `.data.ptr` is its address, as CuPy's is). Every operation
of the namespace runs as NumPy at once, on the current stream's behalf: it refuses a host array
(CuPy does not take NumPy arrays), needs a current stream (the backend must make its own
current, or the work would land on the legacy default stream), writes its result into a new
device allocation and is queued on that stream for KERNEL_S of the SMs, so the run's events
see it between the copies in and the copies out. The namespace has only NAMES, the way CuPy
lacks what it lacks: any other name is an AttributeError, as on a real `cupy`.
"""

from __future__ import annotations

import types

import numpy as np
from gpu_fakes import KERNEL_S

# What the fake namespace offers beyond dtypes: enough for the tests' functions.
NAMES = ("abs", "exp", "log", "log1p", "sqrt", "maximum", "minimum", "mean", "std", "sum",
         "multiply", "add", "subtract", "divide", "negative", "greater", "less", "where",
         "ascontiguousarray", "asarray")
DTYPES = ("float16", "float32", "float64", "int32", "int64", "bool_", "complex64", "complex128")


def install(cupy, gpu):
    """Give the fake `cupy` module (gpu_fakes.fake_cupy) its array namespace on `gpu`."""

    class ndarray(np.ndarray):
        """A fake device array: a NumPy array over fake device memory."""

        def __new__(cls, shape, dtype=float, memptr=None):
            # CuPy's constructor over memory the caller allocated (cupy.cuda.alloc).
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            return np.ndarray.__new__(cls, shape, dtype,
                                      buffer=gpu.view(memptr.ptr, max(1, nbytes)))

        @property
        def data(self):
            return types.SimpleNamespace(ptr=self.ctypes.data)

        def __array_ufunc__(self, ufunc, method, *args, **kwargs):
            if method != "__call__" or kwargs.get("out") is not None:
                return NotImplemented
            return run(ufunc.__name__, ufunc, args, kwargs)

        def __array_function__(self, func, types_, args, kwargs):
            return run(func.__name__, func, args, kwargs)

    def on_device(value) -> ndarray:
        """A new device allocation holding `value` (CuPy's reductions give 0-d arrays)."""
        value = np.asarray(value)
        ptr = gpu.alloc(value.nbytes)
        arr = np.ndarray(value.shape, value.dtype, buffer=gpu.view(ptr, max(1, value.nbytes)))
        arr[...] = value
        return arr.view(ndarray)

    def to_host(value, name):
        if isinstance(value, ndarray):
            return value.view(np.ndarray)
        if isinstance(value, np.ndarray):
            raise TypeError(f"Unsupported type {type(value)}")  # as CuPy says it
        if isinstance(value, (list, tuple)):
            return type(value)(to_host(v, name) for v in value)
        return value

    def run(name, func, args, kwargs):
        assert gpu.current is not None, f"cupy.{name} on the legacy default stream"
        result = func(*(to_host(a, name) for a in args),
                      **{k: to_host(v, name) for k, v in kwargs.items()})
        gpu.enqueue(gpu.current, "sm", KERNEL_S, f"xp.{name}")
        if isinstance(result, tuple):
            return tuple(on_device(r) for r in result)
        return on_device(result)

    def operation(name):
        func = getattr(np, name)
        return lambda *args, **kwargs: run(name, func, args, kwargs)

    def ascontiguousarray(a):
        # CuPy returns the array itself when it is already C-contiguous: no kernel, no copy.
        if isinstance(a, ndarray) and a.flags.c_contiguous:
            return a
        return run("ascontiguousarray", np.ascontiguousarray, (a,), {})

    for name in NAMES:
        setattr(cupy, name, operation(name))
    cupy.ascontiguousarray = ascontiguousarray
    for name in DTYPES:
        setattr(cupy, name, getattr(np, name))
    cupy.ndarray = ndarray
    return cupy
