"""GPU ceilings: host<->device copies over sizes, device copy bandwidth, launch cost, FMA rate.

CuPy and PyCUDA are imported inside the functions that use them, so this module imports on a
machine without either; `probe` says why the GPU cannot be measured.

Clocks (as METHOD.md and cupyx.profiler.benchmark do it): a pair of CUDA events on a
non-blocking stream around each cudaMemcpyAsync, one synchronize after the pair, the median of
several repetitions after warm-up copies. The host clock is kept beside the events: for pinned
memory the difference is what issuing and waiting cost the program; pageable copies are
synchronous with respect to the host (the driver stages them through its own pinned buffers),
so there the two clocks agree and the events still say what the device saw.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from gpukit.errors import BackendUnavailable

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
FIGURES = ("h2d_pinned_gbps", "d2h_pinned_gbps", "h2d_pageable_gbps", "d2h_pageable_gbps",
           "copy_latency_s", "bidir_pinned_gbps", "bidir_speedup", "d2d_gbps", "launch_cupy_s",
           "launch_cupy_sync_s", "launch_pycuda_s", "launch_pycuda_sync_s",
           "launch_pycuda_prepared_s", "fma_gflops")


@dataclass(frozen=True)
class GpuPlan:
    sizes: tuple[int, ...] = TRANSFER_SIZES
    small_reps: int = 50       # copies up to 1 MiB: microseconds each
    mid_reps: int = 20         # up to 64 MiB
    large_reps: int = 5        # a pageable GiB takes about 0.15 s
    warmup: int = 2
    latency_count: int = 200
    bidir_bytes: int = 256 * MiB   # as in CEILINGS.md
    bidir_reps: int = 5
    d2d_bytes: int = 1 * GiB
    d2d_reps: int = 10
    launch_count: int = 5000
    launch_sync_count: int = 2000
    launch_reps: int = 5
    fma_iters: int = 65536     # about 5 ms a launch on an H100
    fma_reps: int = 5

    def reps_for(self, nbytes: int) -> int:
        if nbytes <= 1 * MiB:
            return self.small_reps
        return self.mid_reps if nbytes <= 64 * MiB else self.large_reps


FULL = GpuPlan()
QUICK = GpuPlan(sizes=TRANSFER_SIZES[:8], small_reps=10, mid_reps=5, large_reps=3, warmup=1,
                latency_count=50, bidir_bytes=16 * MiB, bidir_reps=3, d2d_bytes=64 * MiB,
                d2d_reps=3, launch_count=500, launch_sync_count=200, launch_reps=3,
                fma_iters=8192, fma_reps=3)


# -- pure helpers --------------------------------------------------------------------------------


def gbps(nbytes: float, seconds: float) -> float:
    if not seconds > 0:
        raise ValueError(f"a bandwidth needs a positive time, got {seconds!r} s")
    return nbytes / seconds / 1e9


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


def version_text(cuda_version: int) -> str:
    """CUDA's integer versions (13020) as text ("13.2")."""
    return f"{cuda_version // 1000}.{cuda_version % 1000 // 10}"


# -- the device ----------------------------------------------------------------------------------


def probe() -> dict:
    """Facts about GPU 0 (its name keys the ceilings cache), or BackendUnavailable with why not."""
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailable(f"CuPy is not installed ({exc}); on a CUDA machine run "
                                 "pip install '.[cuda]'") from None
    except Exception as exc:  # a broken install raises more than ImportError
        raise BackendUnavailable(f"CuPy failed to import: {type(exc).__name__}: {exc}") from None
    runtime = cupy.cuda.runtime
    try:
        count = runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, or a driver older than the runtime
        raise BackendUnavailable(f"no usable CUDA GPU (no device or no driver): {exc}") from None
    if count < 1:
        raise BackendUnavailable("no CUDA GPU is visible")
    props = runtime.getDeviceProperties(0)
    name = props["name"]
    return {
        "device": name.decode() if isinstance(name, bytes) else str(name),
        "sms": int(props["multiProcessorCount"]),
        "l2_bytes": int(props["l2CacheSize"]),
        "memory_bytes": int(props["totalGlobalMem"]),
        "driver": version_text(runtime.driverGetVersion()),
        "runtime": version_text(runtime.runtimeGetVersion()),
        "cupy": cupy.__version__,
    }


def kernel_source() -> str:
    from gpukit.kernels.base import cuda_source_path
    return cuda_source_path(SOURCE_FILE).read_text()


class Session:
    """GPU 0 through CuPy: streams, events and the buffers every copy measurement shares.

    Buffers are allocated once at the largest size that fits (half the free device memory, a
    third of the available host memory) and every smaller copy uses their first bytes.
    """

    def __init__(self, plan: GpuPlan, host_available_bytes: int | None = None):
        import cupy as cp
        import numpy as np
        self.cp, self.np, self.plan = cp, np, plan
        self.rt = cp.cuda.runtime
        self.device = cp.cuda.Device(0)
        self.device.use()
        free_bytes, _ = self.rt.memGetInfo()
        # Two device buffers; the host holds one pinned and one pageable buffer of the largest
        # size plus a second pinned one for the bidirectional copy.
        self.sizes = fit_sizes(plan.sizes, int(free_bytes * 0.8), 2)
        if host_available_bytes:
            self.sizes = fit_sizes(self.sizes, int(host_available_bytes * 0.8), 3)
        largest = max(self.sizes)
        self.d2d_bytes = min(plan.d2d_bytes, int(free_bytes * 0.8) // 2)
        self.bidir_bytes = min(plan.bidir_bytes, largest)
        device_bytes = max(largest, self.d2d_bytes)
        self.dev_a = cp.empty(device_bytes, dtype=cp.uint8)
        self.dev_b = cp.empty(device_bytes, dtype=cp.uint8)
        self.pinned = self._pinned(largest)
        self.pinned2 = self._pinned(self.bidir_bytes)
        # Written once, so the copies never meet a page that is not there yet.
        self.pageable = np.empty(largest, dtype=np.uint8)
        for host in (self.pinned, self.pinned2, self.pageable):
            host.fill(1)
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.stream2 = cp.cuda.Stream(non_blocking=True)
        self.ev = [cp.cuda.Event() for _ in range(3)]
        self._module = None

    def _pinned(self, nbytes: int):
        mem = self.cp.cuda.alloc_pinned_memory(nbytes)
        return self.np.frombuffer(mem, dtype=self.np.uint8, count=nbytes)

    @property
    def module(self):
        if self._module is None:
            self._module = self.cp.RawModule(code=kernel_source())
        return self._module

    def close(self) -> None:
        self.device.synchronize()
        self.dev_a = self.dev_b = self.pinned = self.pinned2 = self.pageable = None
        self._module = None
        self.cp.get_default_memory_pool().free_all_blocks()
        self.cp.get_default_pinned_memory_pool().free_all_blocks()

    # -- timing one copy -----------------------------------------------------------------------

    def _endpoints(self, direction: str, memory: str):
        host = self.pinned if memory == "pinned" else self.pageable
        hptr, dptr = host.ctypes.data, self.dev_a.data.ptr
        if direction == "h2d":
            return dptr, hptr, self.rt.memcpyHostToDevice
        return hptr, dptr, self.rt.memcpyDeviceToHost

    def time_copy(self, dst: int, src: int, nbytes: int, kind: int) -> tuple[float, float]:
        """(event seconds, host seconds) of one cudaMemcpyAsync on the session's stream."""
        start, end = self.ev[0], self.ev[1]
        s = self.stream
        t0 = clock()
        start.record(s)
        self.rt.memcpyAsync(dst, src, nbytes, kind, s.ptr)
        end.record(s)
        end.synchronize()
        host_s = clock() - t0
        return self.cp.cuda.get_elapsed_time(start, end) * 1e-3, host_s

    # -- the measurements ----------------------------------------------------------------------

    def measure_transfers(self) -> tuple[dict, dict]:
        """H2D and D2H, pinned and pageable, at every size; the four kinds take turns within
        each repetition, so a drift in the machine's state spreads over all of them."""
        kinds = [(d, m) for d in DIRECTIONS for m in MEMORIES]
        ends = {k: self._endpoints(*k) for k in kinds}
        event = {k: [] for k in kinds}
        host = {k: [] for k in kinds}
        for nbytes in self.sizes:
            runs = {k: ([], []) for k in kinds}
            for k in kinds:
                dst, src, kind = ends[k]
                for _ in range(self.plan.warmup):
                    self.time_copy(dst, src, nbytes, kind)
            for _ in range(self.plan.reps_for(nbytes)):
                for k in kinds:
                    dst, src, kind = ends[k]
                    ev_s, host_s = self.time_copy(dst, src, nbytes, kind)
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
        s = self.stream
        result = {}
        for direction in DIRECTIONS:
            dst, src, kind = self._endpoints(direction, "pinned")
            times = []
            for i in range(self.plan.latency_count + 10):
                t0 = clock()
                self.rt.memcpyAsync(dst, src, LATENCY_BYTES, kind, s.ptr)
                s.synchronize()
                if i >= 10:  # the first ten are warm-up
                    times.append(clock() - t0)
            result[f"{direction}_s"] = statistics.median(times)
        curve = {"bytes": LATENCY_BYTES, **result}
        return {"copy_latency_s": max(result.values())}, {"copy_latency": curve}

    def measure_bidirectional(self) -> tuple[dict, dict]:
        """H2D on one stream and D2H on another at once, against the two one after the other."""
        n = self.bidir_bytes
        h2d = (self.dev_a.data.ptr, self.pinned.ctypes.data, n, self.rt.memcpyHostToDevice)
        d2h = (self.pinned2.ctypes.data, self.dev_b.data.ptr, n, self.rt.memcpyDeviceToHost)
        e0, e1, e2 = self.ev
        s1, s2 = self.stream, self.stream2

        def both() -> float:
            e0.record(s1)
            s2.wait_event(e0)  # both copies start after the same event
            self.rt.memcpyAsync(*h2d, s1.ptr)
            self.rt.memcpyAsync(*d2h, s2.ptr)
            e1.record(s1)
            e2.record(s2)
            e1.synchronize()
            e2.synchronize()
            return max(self.cp.cuda.get_elapsed_time(e0, e1),
                       self.cp.cuda.get_elapsed_time(e0, e2)) * 1e-3

        for _ in range(self.plan.warmup):
            both()
        together, alone_h2d, alone_d2h = [], [], []
        for _ in range(self.plan.bidir_reps):
            together.append(both())
            alone_h2d.append(self.time_copy(*h2d)[0])
            alone_d2h.append(self.time_copy(*d2h)[0])
        t_both = statistics.median(together)
        t_seq = statistics.median(alone_h2d) + statistics.median(alone_d2h)
        curve = {"bytes_each_way": n, "together_s": t_both,
                 "h2d_alone_s": statistics.median(alone_h2d),
                 "d2h_alone_s": statistics.median(alone_d2h)}
        return ({"bidir_pinned_gbps": gbps(2 * n, t_both), "bidir_speedup": t_seq / t_both},
                {"bidirectional": curve})

    def measure_d2d(self) -> tuple[dict, dict]:
        """cudaMemcpyAsync device to device; bytes read + written, as CEILINGS.md counts them."""
        n = self.d2d_bytes
        args = (self.dev_b.data.ptr, self.dev_a.data.ptr, n, self.rt.memcpyDeviceToDevice)
        for _ in range(self.plan.warmup):
            self.time_copy(*args)
        times = [self.time_copy(*args)[0] for _ in range(self.plan.d2d_reps)]
        t = statistics.median(times)
        return {"d2d_gbps": gbps(2 * n, t)}, {"d2d": {"bytes": n, "event_s": t}}

    def measure_launch_cupy(self) -> tuple[dict, dict]:
        """An empty RawKernel: `count` launches then one synchronize (queued), and a synchronize
        after every launch. Launched on the current (null) stream, as PyCUDA's calls are."""
        cp = self.cp
        empty = self.module.get_function("gpukit_empty")
        stream = cp.cuda.get_current_stream()
        grid, block = (1,), (1,)
        empty(grid, block, ())  # loads the module: start-up, not launch cost
        stream.synchronize()
        queued, synced = [], []
        for _ in range(self.plan.launch_reps):
            t0 = clock()
            for _ in range(self.plan.launch_count):
                empty(grid, block, ())
            stream.synchronize()
            queued.append((clock() - t0) / self.plan.launch_count)
            t0 = clock()
            for _ in range(self.plan.launch_sync_count):
                empty(grid, block, ())
                stream.synchronize()
            synced.append((clock() - t0) / self.plan.launch_sync_count)
        return ({"launch_cupy_s": statistics.median(queued),
                 "launch_cupy_sync_s": statistics.median(synced)}, {})

    def measure_fma(self) -> tuple[dict, dict]:
        """8 independent FMA chains per thread, 2048 threads per SM; CUDA events around it."""
        cp, np = self.cp, self.np
        fma = self.module.get_function("gpukit_fma")
        sms = int(self.rt.getDeviceProperties(0)["multiProcessorCount"])
        grid, block = sms * FMA_BLOCKS_PER_SM, FMA_BLOCK
        out = cp.empty(grid * block, dtype=cp.float32)
        args = (out, np.int32(self.plan.fma_iters), np.float32(0.9999), np.float32(1e-4))
        start, end = self.ev[0], self.ev[1]
        with self.stream:
            # Poisoned on the kernel's own stream (a non-blocking one would not wait for the
            # default stream): every thread must write its sum.
            out.fill(cp.nan)
            fma((grid,), (block,), args)
            self.stream.synchronize()
            if not bool(cp.isfinite(out).all()):
                raise RuntimeError("the FMA kernel left unwritten or non-finite outputs")
            times = []
            for _ in range(self.plan.fma_reps):
                start.record(self.stream)
                fma((grid,), (block,), args)
                end.record(self.stream)
                end.synchronize()
                times.append(cp.cuda.get_elapsed_time(start, end) * 1e-3)
        t = statistics.median(times)
        flops = 2 * FMA_CHAINS * self.plan.fma_iters * grid * block
        return ({"fma_gflops": flops / t / 1e9},
                {"fma": {"grid": grid, "block": block, "iters": self.plan.fma_iters,
                         "event_s": t}})


def measure_launch_pycuda(plan: GpuPlan) -> tuple[dict, dict]:
    """The same empty kernel through PyCUDA on the primary context (the one CuPy uses): a plain
    call and a prepared call, `count` launches then one synchronize, and a plain call with a
    synchronize after each."""
    try:
        import pycuda.driver as drv
        from pycuda.compiler import SourceModule
    except ImportError as exc:
        raise BackendUnavailable(f"PyCUDA is not installed ({exc}); on a CUDA machine run "
                                 "pip install '.[cuda]'") from None
    from gpukit.backends.pycuda_backend import PycudaDevice
    # The primary context, retained for the life of the process as the pycuda backend does: a
    # context object dropped here would be detached in its destructor while CuPy still uses it.
    with PycudaDevice(0).active():
        module = SourceModule(kernel_source(), no_extern_c=True)  # nvcc, for this GPU's arch
        empty = module.get_function("gpukit_empty")
        grid, block = (1, 1), (1, 1, 1)
        empty(block=block, grid=grid)  # the first call loads the module
        drv.Context.synchronize()
        # The loops are written out rather than shared through a callable, so no extra Python
        # call per launch is counted that CuPy's loop above does not have.
        plain = []
        for _ in range(plan.launch_reps):
            t0 = clock()
            for _ in range(plan.launch_count):
                empty(block=block, grid=grid)
            drv.Context.synchronize()
            plain.append((clock() - t0) / plan.launch_count)
        synced = []
        for _ in range(plan.launch_reps):
            t0 = clock()
            for _ in range(plan.launch_sync_count):
                empty(block=block, grid=grid)
                drv.Context.synchronize()
            synced.append((clock() - t0) / plan.launch_sync_count)
        empty.prepare("")
        empty.prepared_call(grid, block)
        drv.Context.synchronize()
        prepared = []
        for _ in range(plan.launch_reps):
            t0 = clock()
            for _ in range(plan.launch_count):
                empty.prepared_call(grid, block)
            drv.Context.synchronize()
            prepared.append((clock() - t0) / plan.launch_count)
    return {"launch_pycuda_s": statistics.median(plain),
            "launch_pycuda_sync_s": statistics.median(synced),
            "launch_pycuda_prepared_s": statistics.median(prepared)}, {}
