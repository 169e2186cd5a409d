"""GPU ceilings: host<->device copies over sizes, device copy bandwidth, launch cost, FMA rate.

Measured through the GPU backend's device adapters (gpukit.backends.cupy_backend's and
pycuda_backend's), the same calls the backends time: CuPy's where it can run, else PyCUDA's,
and the launch figures through each library that can. The libraries are imported only by the
adapters, so this module imports on a machine without either; `probe` says why the GPU cannot
be measured.

Clocks (as cupyx.profiler.benchmark does it): a pair of CUDA events on a non-blocking stream
around each asynchronous copy, one synchronize after the pair, the median of several
repetitions after warm-up copies. The host clock is kept beside the events: for pinned memory
the difference is what issuing and waiting cost the program; pageable copies are synchronous
with respect to the host (the driver stages them through its own pinned buffers), so there the
two clocks agree and the events still say what the device saw.

Launch figures, per library: `launch_<lib>_s` is the host's cost to issue one launch of an
empty kernel (many queued, one synchronize, wall clock), `launch_<lib>_sync_s` a launch and a
synchronize each, and `launch_<lib>_device_s` the device's launch-to-launch time with the
queue held full: the launches are queued behind a kernel that spins for LAUNCH_HOLD_S, one
event pair around them all.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from gpukit.errors import BackendUnavailable
from gpukit.units import gbps

clock = time.perf_counter

KiB, MiB, GiB = 1024, 1024 ** 2, 1024 ** 3
# 4 KiB .. 1 GiB in powers of 4: small copies show latency, large ones bandwidth.
TRANSFER_SIZES = tuple(4 * KiB * 4 ** i for i in range(10))
DIRECTIONS = ("h2d", "d2h")
MEMORIES = ("pinned", "pageable")
LATENCY_BYTES = 4 * KiB

SOURCE_FILE = "limits.cu"
FMA_BLOCK = 256          # GPUKIT_FMA_BLOCK in kernels/limits.cu
FMA_BLOCKS_PER_SM = 8    # 2048 resident threads per SM: a full SM, 8 FMA chains each
FMA_CHAINS = 8

# Figure names this module fills: where the GPU cannot be opened, each gets the reason.
LIBRARIES = ("cupy", "pycuda")
LAUNCH_KINDS = ("", "_sync", "_device")
FIGURES = ("h2d_pinned_gbps", "d2h_pinned_gbps", "h2d_pageable_gbps", "d2h_pageable_gbps",
           "copy_latency_s", "bidir_pinned_gbps", "bidir_speedup", "d2d_gbps",
           *(f"launch_{lib}{kind}_s" for lib in LIBRARIES for kind in LAUNCH_KINDS),
           "fma_gflops")
# Longer than Python takes to queue a plan's launch_device_count launches.
LAUNCH_HOLD_S = 5e-3


@dataclass(frozen=True)
class GpuPlan:
    sizes: tuple[int, ...] = TRANSFER_SIZES
    small_reps: int = 50       # copies up to 1 MiB: microseconds each
    mid_reps: int = 20         # up to 64 MiB
    large_reps: int = 5        # a pageable GiB takes about 0.15 s
    warmup: int = 2
    latency_count: int = 200
    bidir_bytes: int = 256 * MiB
    bidir_reps: int = 5
    d2d_bytes: int = 1 * GiB
    d2d_reps: int = 10
    launch_count: int = 5000
    launch_sync_count: int = 2000
    launch_device_count: int = 200
    launch_reps: int = 5
    fma_iters: int = 65536     # milliseconds a launch on a data-center GPU
    fma_reps: int = 5

    def reps_for(self, nbytes: int) -> int:
        if nbytes <= 1 * MiB:
            return self.small_reps
        return self.mid_reps if nbytes <= 64 * MiB else self.large_reps


FULL = GpuPlan()
QUICK = GpuPlan(sizes=TRANSFER_SIZES[:8], small_reps=10, mid_reps=5, large_reps=3, warmup=1,
                latency_count=50, bidir_bytes=16 * MiB, bidir_reps=3, d2d_bytes=64 * MiB,
                d2d_reps=3, launch_count=500, launch_sync_count=200, launch_device_count=100,
                launch_reps=3,
                fma_iters=8192, fma_reps=3)


# -- pure helpers --------------------------------------------------------------------------------


def curve_name(direction: str, memory: str) -> str:
    return f"{direction}_{memory}"


def build_curve(sizes: list[int], event_s: list[float], host_s: list[float]) -> dict:
    """One transfer curve: per size, the median event time, host time and the bandwidth."""
    if not len(sizes) == len(event_s) == len(host_s):
        raise ValueError("a curve needs one event time and one host time per size")
    return {"sizes_bytes": list(sizes), "event_s": list(event_s), "host_s": list(host_s),
            "gbps": [gbps(n, t) for n, t in zip(sizes, event_s)]}


def fit_sizes(sizes: tuple[int, ...], budget_bytes: int, buffers: int) -> tuple[int, ...]:
    """The sizes for which `buffers` buffers of that size fit in `budget_bytes`."""
    fitted = tuple(s for s in sizes if s * buffers <= budget_bytes)
    if not fitted:
        raise BackendUnavailable(f"not enough memory for {buffers} buffers of {sizes[0]} bytes "
                                 f"({budget_bytes} bytes to spare)")
    return fitted


# -- the device ----------------------------------------------------------------------------------


def device_class(library: str):
    """The GPU backend's device adapter for `library`."""
    if library == "cupy":
        from gpukit.backends.cupy_backend import CupyDevice
        return CupyDevice
    from gpukit.backends.pycuda_backend import PycudaDevice
    return PycudaDevice


def usable_device_class():
    """The first library's adapter that can open GPU 0 (CuPy's, else PyCUDA's), or
    BackendUnavailable with every library's reason."""
    reasons = []
    for library in LIBRARIES:
        cls = device_class(library)
        try:
            cls.facts(0)
        except BackendUnavailable as exc:
            reasons.append(str(exc))
            continue
        return cls
    raise BackendUnavailable("no usable CUDA GPU: " + "; ".join(reasons))


def probe() -> dict:
    """Facts about GPU 0 (its name keys the ceilings cache), or BackendUnavailable with why not."""
    cls = usable_device_class()
    facts = cls.facts(0)
    return {"device": facts["device"], "sms": facts["multiprocessors"],
            "l2_bytes": facts["l2_bytes"], "memory_bytes": facts["memory_bytes"],
            "driver": facts["driver"], "runtime": facts["runtime"],
            "library": cls.library, cls.library: facts[cls.library]}


def kernel_source() -> str:
    from gpukit.kernels.base import cuda_source_path
    return cuda_source_path(SOURCE_FILE).read_text()


class Session:
    """GPU 0 through a device adapter: streams, events and the buffers every copy shares.

    Buffers are allocated once at the largest size that fits (80% of the free device memory, of
    the available host memory) and every smaller copy uses their first bytes.
    """

    def __init__(self, plan: GpuPlan, host_available_bytes: int | None = None, device=None):
        self.plan = plan
        self.dev = dev = device or usable_device_class()(0)
        self._functions: dict[str, object] = {}
        self.dev_a = self.dev_b = None
        with dev.active():
            free_bytes = dev.free_bytes()
            # Two device buffers; the host holds one pinned and one pageable buffer of the
            # largest size plus a second pinned one for the bidirectional copy.
            self.sizes = fit_sizes(plan.sizes, int(free_bytes * 0.8), 2)
            if host_available_bytes:
                self.sizes = fit_sizes(self.sizes, int(host_available_bytes * 0.8), 3)
            largest = max(self.sizes)
            self.d2d_bytes = min(plan.d2d_bytes, int(free_bytes * 0.8) // 2)
            self.bidir_bytes = min(plan.bidir_bytes, largest)
            device_bytes = max(largest, self.d2d_bytes)
            self.dev_a, self.dev_b = dev.alloc(device_bytes), dev.alloc(device_bytes)
            self.pinned = dev.pinned((largest,), np.uint8)
            self.pinned2 = dev.pinned((self.bidir_bytes,), np.uint8)
            # Written once, so the copies never meet a page that is not there yet.
            self.pageable = np.empty(largest, dtype=np.uint8)
            for host in (self.pinned, self.pinned2, self.pageable):
                host.fill(1)
            self.stream = dev.stream(non_blocking=True)
            self.stream2 = dev.stream(non_blocking=True)
            self.ev = [dev.event() for _ in range(3)]

    def function(self, name: str, arg_types=()):
        if name not in self._functions:
            self._functions[name] = self.dev.load(kernel_source(), name, arg_types)
        return self._functions[name]

    def close(self) -> None:
        dev = self.dev
        with dev.active():
            dev.synchronize(self.stream)
            for ptr in (self.dev_a, self.dev_b):
                if ptr is not None:
                    dev.free(ptr)
            self.dev_a = self.dev_b = self.pinned = self.pinned2 = self.pageable = None
            self._functions = {}
            dev.release()

    # -- timing one copy -----------------------------------------------------------------------

    def _copy(self, direction: str, memory: str, nbytes: int, stream, host=None):
        """Enqueue one copy of `nbytes` between the device buffer and a host buffer."""
        host = host if host is not None else (self.pinned if memory == "pinned"
                                               else self.pageable)
        if direction == "h2d":
            self.dev.copy_in(self.dev_a, host[:nbytes], stream)
        elif direction == "d2h":
            self.dev.copy_out(host[:nbytes], self.dev_b if memory == "bidir" else self.dev_a,
                              stream)
        else:
            self.dev.copy_device(self.dev_b, self.dev_a, nbytes, stream)

    def time_copy(self, direction: str, memory: str, nbytes: int) -> tuple[float, float]:
        """(event seconds, host seconds) of one copy on the session's stream."""
        dev, start, end, s = self.dev, self.ev[0], self.ev[1], self.stream
        t0 = clock()
        dev.record(start, s)
        self._copy(direction, memory, nbytes, s)
        dev.record(end, s)
        dev.synchronize(s)
        host_s = clock() - t0
        return dev.elapsed_s(start, end), host_s

    # -- the measurements ----------------------------------------------------------------------

    def measure_transfers(self) -> tuple[dict, dict]:
        """H2D and D2H, pinned and pageable, at every size; the four kinds take turns within
        each repetition, so a drift in the machine's state spreads over all of them."""
        kinds = [(d, m) for d in DIRECTIONS for m in MEMORIES]
        event = {k: [] for k in kinds}
        host = {k: [] for k in kinds}
        with self.dev.active():
            for nbytes in self.sizes:
                runs = {k: ([], []) for k in kinds}
                for k in kinds:
                    for _ in range(self.plan.warmup):
                        self.time_copy(*k, nbytes)
                for _ in range(self.plan.reps_for(nbytes)):
                    for k in kinds:
                        ev_s, host_s = self.time_copy(*k, nbytes)
                        runs[k][0].append(ev_s)
                        runs[k][1].append(host_s)
                for k in kinds:
                    event[k].append(statistics.median(runs[k][0]))
                    host[k].append(statistics.median(runs[k][1]))
        curves = {curve_name(*k): build_curve(list(self.sizes), event[k], host[k]) for k in kinds}
        # The figure is the largest copy's bandwidth; the curve keeps every size.
        figures = {f"{name}_gbps": curve["gbps"][-1] for name, curve in curves.items()}
        return figures, curves

    def measure_latency(self) -> tuple[dict, dict]:
        """A 4 KiB pinned copy as a program pays for it: issue, then wait for it (host clock)."""
        dev, s = self.dev, self.stream
        result = {}
        with dev.active():
            for direction in DIRECTIONS:
                times = []
                for i in range(self.plan.latency_count + 10):
                    t0 = clock()
                    self._copy(direction, "pinned", LATENCY_BYTES, s)
                    dev.synchronize(s)
                    if i >= 10:  # the first ten are warm-up
                        times.append(clock() - t0)
                result[f"{direction}_s"] = statistics.median(times)
        curve = {"bytes": LATENCY_BYTES, **result}
        return {"copy_latency_s": max(result.values())}, {"copy_latency": curve}

    def measure_bidirectional(self) -> tuple[dict, dict]:
        """H2D on one stream and D2H on another at once, against the two one after the other."""
        n, dev = self.bidir_bytes, self.dev
        e0, e1, e2 = self.ev
        s1, s2 = self.stream, self.stream2

        def both() -> float:
            dev.record(e0, s1)
            dev.wait(s2, e0)  # both copies start after the same event
            self._copy("h2d", "pinned", n, s1)
            self._copy("d2h", "bidir", n, s2, host=self.pinned2)
            dev.record(e1, s1)
            dev.record(e2, s2)
            dev.synchronize(s1)
            dev.synchronize(s2)
            return max(dev.elapsed_s(e0, e1), dev.elapsed_s(e0, e2))

        def alone(direction: str) -> float:
            dev.record(e0, s1)
            self._copy(direction, "bidir", n, s1, host=self.pinned2 if direction == "d2h"
                       else self.pinned)
            dev.record(e1, s1)
            dev.synchronize(s1)
            return dev.elapsed_s(e0, e1)

        with dev.active():
            for _ in range(self.plan.warmup):
                both()
            together, alone_h2d, alone_d2h = [], [], []
            for _ in range(self.plan.bidir_reps):
                together.append(both())
                alone_h2d.append(alone("h2d"))
                alone_d2h.append(alone("d2h"))
        t_both = statistics.median(together)
        t_seq = statistics.median(alone_h2d) + statistics.median(alone_d2h)
        curve = {"bytes_each_way": n, "together_s": t_both,
                 "h2d_alone_s": statistics.median(alone_h2d),
                 "d2h_alone_s": statistics.median(alone_d2h)}
        return ({"bidir_pinned_gbps": gbps(2 * n, t_both), "bidir_speedup": t_seq / t_both},
                {"bidirectional": curve})

    def measure_d2d(self) -> tuple[dict, dict]:
        """A device-to-device copy; bytes read + written, as copies inside one memory count."""
        n = self.d2d_bytes
        with self.dev.active():
            for _ in range(self.plan.warmup):
                self.time_copy("d2d", "device", n)
            times = [self.time_copy("d2d", "device", n)[0] for _ in range(self.plan.d2d_reps)]
        t = statistics.median(times)
        return {"d2d_gbps": gbps(2 * n, t)}, {"d2d": {"bytes": n, "event_s": t}}

    def measure_fma(self) -> tuple[dict, dict]:
        """8 independent FMA chains per thread, 2048 threads per SM; CUDA events around it."""
        dev, s = self.dev, self.stream
        with dev.active():
            fma = self.function("gpukit_fma", (None, np.int32, np.float32, np.float32))
            sms = int(type(dev).facts(0)["multiprocessors"])
            grid, block = sms * FMA_BLOCKS_PER_SM, FMA_BLOCK
            out = dev.alloc(4 * grid * block)
            args = (out, np.int32(self.plan.fma_iters), np.float32(0.9999), np.float32(1e-4))
            try:
                # Poisoned (0xFF bytes: NaN) on the kernel's own stream: every thread must write
                # its sum.
                dev.fill(out, 0xFF, 4 * grid * block, s)
                dev.launch(fma, grid, block, args, s)
                written = np.empty(grid * block, dtype=np.float32)
                dev.copy_out(written, out, s)
                dev.synchronize(s)
                if not np.isfinite(written).all():
                    raise RuntimeError("the FMA kernel left unwritten or non-finite outputs")
                start, end = self.ev[0], self.ev[1]
                times = []
                for _ in range(self.plan.fma_reps):
                    dev.record(start, s)
                    dev.launch(fma, grid, block, args, s)
                    dev.record(end, s)
                    dev.synchronize(s)
                    times.append(dev.elapsed_s(start, end))
            finally:
                dev.free(out)
        t = statistics.median(times)
        flops = 2 * FMA_CHAINS * self.plan.fma_iters * grid * block
        return ({"fma_gflops": flops / t / 1e9},
                {"fma": {"grid": grid, "block": block, "iters": self.plan.fma_iters,
                         "event_s": t}})

    def measure_launch(self, library: str) -> tuple[dict, dict]:
        """The launch figures of the module docstring through `library`'s adapter (this
        session's own, or a new one on the same primary context)."""
        dev = self.dev if self.dev.library == library else device_class(library)(0)
        return launch_figures(dev, self.plan)


def launch_figures(dev, plan: GpuPlan) -> tuple[dict, dict]:
    lib = dev.library
    with dev.active():
        source = kernel_source()
        empty = dev.load(source, "gpukit_empty", ())
        spinner = dev.load(source, "gpukit_spin", (np.int64,))
        stream = dev.stream(non_blocking=True)
        start, end = dev.event(), dev.event()
        dev.launch(empty, 1, 1, (), stream)  # loads the module: start-up, not launch cost
        dev.synchronize(stream)
        # The loops are written out rather than shared through a callable, so that no extra
        # Python call per launch is counted.
        queued, synced, device = [], [], []
        for _ in range(plan.launch_reps):
            t0 = clock()
            for _ in range(plan.launch_count):
                dev.launch(empty, 1, 1, (), stream)
            dev.synchronize(stream)
            queued.append((clock() - t0) / plan.launch_count)
            t0 = clock()
            for _ in range(plan.launch_sync_count):
                dev.launch(empty, 1, 1, (), stream)
                dev.synchronize(stream)
            synced.append((clock() - t0) / plan.launch_sync_count)
            dev.launch(spinner, 1, 1, (np.int64(round(LAUNCH_HOLD_S * 1e9)),), stream)
            dev.record(start, stream)
            for _ in range(plan.launch_device_count):
                dev.launch(empty, 1, 1, (), stream)
            dev.record(end, stream)
            dev.synchronize(stream)
            device.append(dev.elapsed_s(start, end) / plan.launch_device_count)
    return ({f"launch_{lib}_s": statistics.median(queued),
             f"launch_{lib}_sync_s": statistics.median(synced),
             f"launch_{lib}_device_s": statistics.median(device)},
            {f"launch_{lib}": {"hold_s": LAUNCH_HOLD_S, "device_count": plan.launch_device_count}})
