"""Machine ceilings: the hardware limits each measured case is held against.

`gpukit limits` measures them and stores them here, one cache file per machine (keyed by host,
CPU and GPU), so `compare` and `report` can use them without paying for them every run. Every
figure is optional: a CPU-only machine has no GPU figures, and a reader says which it lacks.

Names carry their units. Bandwidths count bytes moved one way for transfers and bytes read plus
bytes written for copies inside one memory (as device-to-device copy benchmarks do).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gpukit.errors import UsageError

FORMAT = "gpukit-ceilings"
FORMAT_VERSION = 1

# name -> what it is. The keys a model or report may read; `limits` fills what it can measure.
FIGURES = {
    # host
    "host_copy_1t_gbps": "NumPy copy of a large array on one thread (read + write)",
    "host_copy_all_gbps": "the same copy split over all cores with threads",
    "host_numpy_1t_gflops": "NumPy in-cache float32 multiply and add, one thread",
    "host_python_1t_gflops": "pure-Python float multiply-add loop, one thread",
    "host_python_row_s": "pure Python, per NumPy row: read with tolist, looped, written back",
    "thread_start_s": "start and join one thread",
    "thread_dispatch_s": "round trip of one empty task through a thread pool",
    "process_dispatch_s": "round trip of one empty task through a process pool",
    "thread_dispatch_extra_s": "each further task when one per core goes to a thread pool at once",
    "process_dispatch_extra_s":
        "each further task when one per core goes to a process pool at once",
    "pool_start_fork_s": "start a process pool of all cores (fork)",
    "pool_start_forkserver_s": "start a process pool of all cores (forkserver, server running)",
    "pool_start_forkserver_first_s": "a program's first forkserver pool: the server's start too",
    "pool_start_spawn_s": "start a process pool of all cores (spawn)",
    "pickle_gbps": "pickling an array to another process and back, per direction (the largest)",
    # GPU
    "h2d_pageable_gbps": "host to device, pageable host memory, large copy",
    "h2d_pinned_gbps": "host to device, pinned host memory, large copy",
    "d2h_pageable_gbps": "device to host, pageable host memory, large copy",
    "d2h_pinned_gbps": "device to host, pinned host memory, large copy",
    "bidir_pinned_gbps": "H2D and D2H at once on two streams, both directions together",
    "bidir_speedup": "the two copies at once vs one after the other (times, same sizes)",
    "copy_latency_s": "a 4 KiB copy, either way",
    "d2d_gbps": "device-to-device copy (read + write)",
    "launch_cupy_s": "empty kernel through CuPy, queued: the host's cost to issue one",
    "launch_cupy_sync_s": "empty kernel through CuPy, with synchronize",
    "launch_cupy_device_s": "empty kernels through CuPy, queue held full: the device's time each",
    "launch_pycuda_s": "empty kernel through PyCUDA's prepared call, queued: the host's cost",
    "launch_pycuda_sync_s": "empty kernel through PyCUDA's prepared call, with synchronize",
    "launch_pycuda_device_s": "empty kernels through PyCUDA, queue held full: the device's time",
    "fma_gflops": "float32 FMA rate of the GPU",
}


class NotSaved(UsageError):
    """Ceilings were measured but could not be written; `data` holds them, so that the command
    can still show what minutes of measuring found."""

    def __init__(self, message: str, data: dict):
        super().__init__(message)
        self.data = data


def cache_dir() -> Path:
    base = os.environ.get("GPUKIT_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "gpukit" if xdg else Path.home() / ".cache" / "gpukit"


def machine_key(machine: dict) -> str:
    """Host, CPU and GPU: a new card or another host gets its own ceilings."""
    gpu = (machine.get("gpu") or {}).get("device", "no-gpu")
    text = f"{machine.get('hostname')}|{machine.get('cpu')}|{machine.get('cores')}|{gpu}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def cache_path(machine: dict) -> Path:
    return cache_dir() / f"ceilings-{machine_key(machine)}.json"


def save(machine: dict, figures: dict, curves: dict | None = None,
         missing: dict | None = None, path: Path | None = None,
         settings: dict | None = None) -> Path:
    """Write ceilings; `missing` maps a figure name (or 'gpu') to why it was not measured.

    `settings` says how they were measured (e.g. {"quick": true}), so a reader can tell a smoke
    test's rough figures from a full measurement."""
    path = path or cache_path(machine)
    data = {"format": FORMAT, "version": FORMAT_VERSION, "machine": machine,
            "figures": figures, "curves": curves or {}, "missing": missing or {},
            "settings": settings or {}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise NotSaved(f"could not write the ceilings to {path}: {exc.strerror or exc}",
                       data) from None
    return path


def load(machine: dict | None = None, path: Path | None = None) -> dict | None:
    """The stored ceilings for this machine, or None if `limits` has not measured them here."""
    path = path or cache_path(machine or {})
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("format") != FORMAT or data.get("version", 0) > FORMAT_VERSION:
        return None
    return data
