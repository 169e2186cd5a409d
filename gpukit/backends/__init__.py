"""Backend registry: names map to classes; no if-chains on backend names anywhere else."""

from __future__ import annotations

import importlib

from gpukit.backends.base import Backend, RunTiming, Startup, Variant
from gpukit.errors import UsageError

# name -> "module:Class". Modules are imported on first use; none of them imports an optional
# library (cupy, pycuda, mpi4py) at module level, so listing backends never fails.
_PATHS = {
    "serial": "gpukit.backends.serial:SerialBackend",
    "threads": "gpukit.backends.threads:ThreadsBackend",
    "processes": "gpukit.backends.processes:ProcessesBackend",
    "cupy": "gpukit.backends.cupy_backend:CupyBackend",
    "pycuda": "gpukit.backends.pycuda_backend:PycudaBackend",
    "mpi": "gpukit.backends.mpi_backend:MpiBackend",
}

NAMES = tuple(_PATHS)

# What `compare` runs when no --backends is given: one machine's question. The mpi backend is
# for spreading ranks over machines and is run when named.
DEFAULTS = ("serial", "threads", "processes", "cupy", "pycuda")


def get(name: str) -> type[Backend]:
    try:
        path = _PATHS[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r} (known: {', '.join(NAMES)})") from None
    module, cls = path.split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["Backend", "DEFAULTS", "NAMES", "RunTiming", "Startup", "Variant", "get"]
