"""The C allocator, held steady so that every backend allocates alike.

glibc's malloc serves a block above its mmap threshold (128 KiB at start) with fresh pages from
the kernel and gives them back on free; after a large free it raises the threshold for the rest
of the process (the "dynamic mmap threshold"). So the same NumPy code pays page faults for its
temporaries in one process and not in another, depending on what that process freed before:
blackscholes' 256 KiB temporaries cost the main thread and shared-memory workers 2-3x what they
cost a pickling worker, whose unpickled arrays had raised its threshold, and that reversed
which backend won. gpukit fixes both thresholds, in this process (mallopt) and for the
processes it starts (the MALLOC_*_ variables glibc reads at start), so that no backend is
favoured by its history. `compare --default-malloc` leaves them as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# Below this, blocks come from the heap and are reused; the largest value glibc accepts on
# 64-bit systems (its default ceiling for the dynamic threshold).
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
# Free heap memory kept before it is returned to the system.
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024

# glibc's environment variables (with their trailing underscore) and mallopt parameters.
ENV = {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD_BYTES,
       "MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD_BYTES}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _glibc():
    name = ctypes.util.find_library("c")
    if name is None and os.name == "nt":
        return None  # no C library by that name on Windows, and CDLL(None) raises there
    try:
        libc = ctypes.CDLL(name)
    except (OSError, TypeError):
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def steady() -> dict:
    """Fix glibc's mmap and trim thresholds here and for child processes; say what was done.

    Values the user set in the environment are kept, not overridden."""
    libc = _glibc()
    if libc is None:
        return {"allocator": "not glibc: left as it is"}
    chosen = {}
    for name, default in ENV.items():
        value = os.environ.get(name)
        chosen[name] = int(value) if value and value.isdigit() else default
        os.environ[name] = str(chosen[name])
    ok = (libc.mallopt(_M_MMAP_THRESHOLD, chosen["MALLOC_MMAP_THRESHOLD_"]) == 1
          and libc.mallopt(_M_TRIM_THRESHOLD, chosen["MALLOC_TRIM_THRESHOLD_"]) == 1)
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    return {"allocator": f"glibc {libc.gnu_get_libc_version().decode()}",
            "mmap_threshold_bytes": chosen["MALLOC_MMAP_THRESHOLD_"],
            "trim_threshold_bytes": chosen["MALLOC_TRIM_THRESHOLD_"],
            "thresholds_fixed": ok}


def as_found() -> dict:
    """What `--default-malloc` records: the allocator left to its own thresholds."""
    libc = _glibc()
    if libc is None:
        return {"allocator": "not glibc: left as it is"}
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    return {"allocator": f"glibc {libc.gnu_get_libc_version().decode()}", "thresholds_fixed": False,
            **{k.lower().strip("_") + "_env": v for k, v in os.environ.items() if k in ENV}}
