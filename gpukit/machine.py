"""Facts about the machine a run happened on, for the results file."""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from importlib import metadata

import numpy as np


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gil_enabled() -> bool:
    """False only on a free-threaded build running with the GIL off."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


def available_memory_bytes() -> int | None:
    """Memory this process could still allocate: the system's available memory, or less where
    a control group (a container, a batch job) caps this process below it."""
    free = _meminfo_available()
    room = _cgroup_room()
    if free is None or room is None:
        return free if room is None else room
    return min(free, room)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# A control group's limit and usage files: cgroup v2, then v1 (as mounted inside a container).
CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                 "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def _cgroup_room(files=CGROUP_FILES) -> int | None:
    """Limit minus usage of this process's memory control group; None if it has no limit."""
    for limit_file, usage_file in files:
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 1 << 60:  # v2's and v1's "no limit"
            return None
        return max(0, int(limit) - usage)
    return None


def package_version(*names: str) -> str | None:
    """Installed version of the first distribution found, without importing it."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


CACHE_ROOT = "/sys/devices/system/cpu/cpu0/cache"


def _size_bytes(text: str) -> int | None:
    """'1024K' / '32M' / '48K' as sysfs writes cache sizes, in bytes."""
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
    digits = text.rstrip("KMG")
    return int(digits) * scale if digits.isdigit() else None


def caches(root: str = CACHE_ROOT) -> dict[str, int]:
    """The first core's data caches by level ('l1d_bytes', 'l2_bytes', 'l3_bytes'), as Linux
    reports them; empty elsewhere. The analysis tells a case whose data stays in cache between
    repetitions from a ceiling measured on data larger than every cache."""
    found: dict[str, int] = {}
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return found
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            with open(os.path.join(root, entry, "level")) as f:
                level = f.read().strip()
            with open(os.path.join(root, entry, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(root, entry, "size")) as f:
                size = _size_bytes(f.read())
        except OSError:
            continue
        if kind == "Instruction" or size is None:
            continue
        found[f"l{level}{'d' if kind == 'Data' else ''}_bytes"] = size
    return found


def facts() -> dict:
    from gpukit import __version__
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_available_bytes": available_memory_bytes(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "gil_enabled": gil_enabled(),
        "gpukit": __version__,
        "numpy": np.__version__,
        "cupy": package_version("cupy", "cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x"),
        "pycuda": package_version("pycuda"),
        "caches": caches(),
    }


def load() -> dict:
    """How busy the machine is now, for a results file's before and after.

    `loadavg`: the 1, 5 and 15-minute load averages (runnable tasks, on every core together).
    `cpu_s`: the whole machine's CPU time since boot by kind, from /proc/stat (Linux), and
    `own_cpu_s`: the CPU time of this process and every process it started, those that ended
    included (their parents add their time to their own when they reap them), so that between
    two snapshots the busy time less our own is what other work took."""
    snap: dict = {"time_s": time.time(), "cores": os.cpu_count()}
    try:
        snap["loadavg"] = [round(v, 3) for v in os.getloadavg()]
    except (OSError, AttributeError):  # no load average on Windows
        snap["loadavg"] = None
    cpu = _cpu_times()
    if cpu is not None:
        snap["cpu_s"] = cpu
        own = _tree_cpu_s(os.getpid())
        if own is not None:
            snap["own_cpu_s"] = own
    return snap


# The fields of /proc/stat's "cpu" line, in the kernel's order, and what counts as idle.
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
IDLE_FIELDS = ("idle", "iowait")


def _cpu_times(path: str = "/proc/stat") -> dict[str, float] | None:
    try:
        with open(path) as f:
            first = f.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return {name: int(v) / tick for name, v in zip(CPU_FIELDS, first[1:])}


def _tree_cpu_s(root: int) -> float | None:
    """CPU seconds of `root` and its live descendants, each with its reaped children's."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:
            continue  # it ended meanwhile
        # The command name may hold spaces and parentheses: the fields follow its last ")".
        fields = text[text.rfind(")") + 2:].split()
        pid = int(name)
        parent[pid] = int(fields[1])
        cpu[pid] = sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
    if root not in cpu:
        return None
    total = 0.0
    for pid, seconds in cpu.items():
        p, hops = pid, 0
        while p not in (root, 0, 1) and p in parent and hops < 64:
            p, hops = parent[p], hops + 1
        if p == root:
            total += seconds
    return total
