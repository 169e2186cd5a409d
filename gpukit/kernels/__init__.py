"""Kernel registry. `load(spec)` finds a kernel by name, entry point, file path or module."""

from __future__ import annotations

import importlib

from gpukit.kernels.base import Check, CudaLaunch, Inputs, Kernel, Param, Work

_BUILTIN = {
    "polyval": "gpukit.kernels.polyval:Polyval",
    "blackscholes": "gpukit.kernels.blackscholes:BlackScholes",
    "mandelbrot": "gpukit.kernels.mandelbrot:Mandelbrot",
    "nbody": "gpukit.kernels.nbody:NBody",
}

NAMES = tuple(_BUILTIN)

_cache: dict[str, Kernel] = {}


def load(spec: str) -> Kernel:
    """Return the kernel named by `spec`. Cached: every process builds each kernel once.

    `spec` is a built-in name, an entry point of the `gpukit.kernels` group, `path/to/file.py:Name`
    or `package.module:Name` (see gpukit.kernels.user). The kernel's `spec` is then the string
    that finds it again in a fresh process, as worker processes do.
    """
    if spec in _cache:
        return _cache[spec]
    if spec in _BUILTIN:
        module, cls = _BUILTIN[spec].split(":")
        kernel = getattr(importlib.import_module(module), cls)()
    else:
        from gpukit.kernels.user import load_user
        kernel = load_user(spec, NAMES)
    _cache[spec] = _cache[kernel.spec] = kernel
    return kernel


__all__ = ["Check", "CudaLaunch", "Inputs", "Kernel", "NAMES", "Param", "Work", "load"]
