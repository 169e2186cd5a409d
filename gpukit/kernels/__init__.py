"""Kernel registry. `load(spec)` finds a kernel by name; later, by file path or module."""

from __future__ import annotations

import importlib

from gpukit.errors import UsageError
from gpukit.kernels.base import Check, CudaLaunch, Inputs, Kernel, Param, Work

_BUILTIN = {
    "polyval": "gpukit.kernels.polyval:Polyval",
}

NAMES = tuple(_BUILTIN)

_cache: dict[str, Kernel] = {}


def load(spec: str) -> Kernel:
    """Return the kernel named by `spec`. Cached: every process builds each kernel once."""
    if spec in _cache:
        return _cache[spec]
    if spec not in _BUILTIN:
        raise UsageError(f"unknown kernel {spec!r} (known: {', '.join(NAMES)})")
    module, cls = _BUILTIN[spec].split(":")
    kernel = getattr(importlib.import_module(module), cls)()
    _cache[spec] = kernel
    return kernel


__all__ = ["Check", "CudaLaunch", "Inputs", "Kernel", "NAMES", "Param", "Work", "load"]
