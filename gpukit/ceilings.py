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
import math
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


# The columns that readers of a curve take without looking: the model's pickling curve, and the
# transfer table of `gpukit limits`.
CURVE_COLUMNS = {"pickle": ("sizes_bytes", "gbps"),
                 **{f"{way}_{memory}": ("sizes_bytes", "event_s", "gbps")
                    for way in ("h2d", "d2h") for memory in ("pinned", "pageable")}}


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
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise NotSaved(f"could not write the ceilings to {path}: {exc.strerror or exc}",
                       data) from None
    return path


class Damaged(UsageError):
    """A ceilings file that is not one, or is one no longer (truncated, hand-edited): given on
    the command line it is bad input; as a cache it is ignored, with a warning, and measured
    again."""


def load(machine: dict | None = None, path: Path | None = None) -> dict | None:
    """The stored ceilings for this machine, or None if `limits` has not measured them here;
    `Damaged` when a file is there but cannot be used."""
    path = Path(path or cache_path(machine or {}))
    if path.exists() and not path.is_file():
        raise Damaged(f"{path} is not a regular file; a ceilings file is one")
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Damaged(f"cannot read the ceilings file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise Damaged(f"{path} is not a gpukit ceilings file: it is not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise Damaged(f"{path} is not a gpukit ceilings file")
    problem = structure_problem(data)
    if problem:
        raise Damaged(f"{path} is a damaged ceilings file: {problem}")
    if data.get("version", 0) > FORMAT_VERSION:
        return None  # a newer gpukit's: measured again here rather than misread
    return data


def cached(machine: dict) -> tuple[dict | None, str | None]:
    """This machine's cache file, or None and, where a damaged one was set aside, why: the
    caller warns and measures again (the next save replaces it)."""
    try:
        return load(machine), None
    except Damaged as exc:
        return None, f"{exc}; ignored, measured again"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def structure_problem(data: dict) -> str | None:
    """What a reader of the figures, curves and reasons would trip on, or None."""
    if not _number(data.get("version", 0)):
        return f"version is {data.get('version')!r:.40}"
    for name, kind in (("machine", dict), ("figures", dict), ("curves", dict),
                       ("missing", dict), ("settings", dict)):
        if name in data and not isinstance(data[name], kind):
            return f"{name} should be an object, not {type(data[name]).__name__}"
    for name, value in (data.get("figures") or {}).items():
        if value is not None and not _number(value):
            return f"figures.{name} should be a number, not {value!r:.40}"
    for name, reason in (data.get("missing") or {}).items():
        if not isinstance(reason, str):
            return f"missing.{name} should be a string"
    for name, curve in (data.get("curves") or {}).items():
        if not isinstance(curve, dict):
            return f"curves.{name} should be an object"
        columns = {key: value for key, value in curve.items() if isinstance(value, list)}
        for key in CURVE_COLUMNS.get(name, ()):
            if key not in columns:
                return f"curves.{name}.{key} should be a list"
        sizes = columns.get("sizes_bytes")
        for key, values in columns.items():
            # Sizes and rates are positive (the model interpolates their logarithms).
            low = 0 if key in ("sizes_bytes", "gbps") else -1
            if sizes is not None and len(values) != len(sizes) or \
                    not all(_number(v) and v > low for v in values):
                what = "positive numbers" if low == 0 else "numbers"
                return f"curves.{name}.{key} should hold {what}, one per size"
    return None
