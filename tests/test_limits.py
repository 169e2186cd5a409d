"""`gpukit limits`: the host part through the CLI as a user runs it, the cache, the pure helpers,
and (on a GPU machine) the GPU figures."""

import itertools
import json
import importlib.machinery
import sys
import types

import numpy as np
import pytest

from gpukit import ceilings, limits
from gpukit.errors import BackendUnavailable, UsageError
from gpukit.limits import gpu, host

HOST_FIGURES = [name for step in limits.host_steps(True, 1) for name in step.names]

# Loose bounds: wrong units or a broken measurement land far outside them, a loaded 2-core CI
# machine does not.
PLAUSIBLE = {
    "host_copy_1t_gbps": (0.1, 2000), "host_copy_all_gbps": (0.1, 5000),
    "host_numpy_1t_gflops": (0.01, 2000), "host_python_1t_gflops": (1e-4, 10),
    "host_python_row_s": (1e-9, 1e-5),
    "thread_start_s": (1e-7, 0.1), "thread_dispatch_s": (1e-7, 0.1),
    "process_dispatch_s": (1e-6, 1.0), "pickle_gbps": (1e-3, 200),
    "pool_start_fork_s": (1e-4, 60), "pool_start_forkserver_s": (1e-4, 60),
    "pool_start_forkserver_first_s": (1e-4, 60), "pool_start_spawn_s": (1e-4, 60),
    # Zero is a fair answer: a fan-out may add nothing beyond its first round trip.
    "thread_dispatch_extra_s": (-1e-12, 0.1), "process_dispatch_extra_s": (-1e-12, 1.0),
}
# A fan-out needs two workers: a one-core machine measures no such figure.
FANOUT = {"thread_dispatch_extra_s", "process_dispatch_extra_s"}


def _has_gpu() -> bool:
    try:
        gpu.probe()
    except BackendUnavailable:
        return False
    return True


def test_quick_limits_measure_then_reuse_the_cache_then_refresh(gpukit_cli, tmp_path):
    env = {"GPUKIT_CACHE_DIR": str(tmp_path / "cache")}
    first = gpukit_cli("limits", "--quick", "--json", str(tmp_path / "a.json"), env=env)
    assert first.returncode == 0, first.stderr
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["format"] == "gpukit-ceilings" and a["settings"]["quick"] is True
    assert set(HOST_FIGURES) == set(PLAUSIBLE)
    for name, (lo, hi) in PLAUSIBLE.items():
        if name in FANOUT and a["machine"]["cores"] < 2:
            assert name not in a["figures"]
            continue
        assert name in a["figures"], (name, a["missing"].get(name))
        assert lo < a["figures"][name] < hi, (name, a["figures"][name])
    assert a["figures"]["host_python_1t_gflops"] < a["figures"]["host_numpy_1t_gflops"]
    if not _has_gpu():
        assert a["missing"]["gpu"], "the GPU part is missing and says why"
        assert "GPU: not measured: " in first.stdout
        assert not any(name in a["figures"] for name in gpu.FIGURES)
    assert "host_copy_1t_gbps" in first.stdout and "GB/s" in first.stdout
    cached = list((tmp_path / "cache").glob("ceilings-*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["figures"] == a["figures"]

    again = gpukit_cli("limits", "--quick", "--json", str(tmp_path / "b.json"), env=env)
    assert again.returncode == 0, again.stderr
    assert "reused from the cache" in again.stdout
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["figures"] == a["figures"] and b["settings"] == a["settings"]

    fresh = gpukit_cli("limits", "--quick", "--refresh", "--json", str(tmp_path / "c.json"),
                       env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert "measured in" in fresh.stdout
    c = json.loads((tmp_path / "c.json").read_text())
    assert set(c["figures"]) == set(a["figures"]) and c["figures"] != a["figures"]
    assert json.loads(cached[0].read_text())["figures"] == c["figures"]


def test_json_into_a_missing_folder_is_a_usage_error(gpukit_cli, tmp_path):
    proc = gpukit_cli("limits", "--quick", "--json", str(tmp_path / "no" / "x.json"),
                      env={"GPUKIT_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --json: folder {tmp_path / 'no'} does not exist"]
    assert not (tmp_path / "cache").exists()


def test_a_quick_cache_serves_quick_runs_only():
    assert limits.reusable({"settings": {"quick": False}}, quick=False)
    assert limits.reusable({"settings": {"quick": False}}, quick=True)
    assert limits.reusable({"settings": {"quick": True}}, quick=True)
    assert not limits.reusable({"settings": {"quick": True}}, quick=False)
    assert not limits.reusable(None, quick=True)


def test_a_failing_step_leaves_its_reason_and_the_others_run():
    def broken():
        raise ValueError("no such thing")

    def unavailable():
        raise UsageError("not here")

    steps = [limits.Step("a", ("x_s", "y_s"), broken),
             limits.Step("b", ("z_gbps",), lambda: ({"z_gbps": 2.0}, {"zc": {"n": 1}})),
             limits.Step("c", ("w_s",), unavailable)]
    seen = []
    figures, curves, missing = {}, {}, {}
    limits.run_steps(steps, figures, curves, missing, lambda *a: seen.append(a), first=2, total=9)
    assert figures == {"z_gbps": 2.0} and curves == {"zc": {"n": 1}}
    assert missing == {"x_s": "ValueError: no such thing", "y_s": "ValueError: no such thing",
                       "w_s": "not here"}
    assert seen == [("a", 2, 9), ("b", 3, 9), ("c", 4, 9)]


def test_bandwidth_and_per_item_math():
    assert host.gbps(3e9, 1.5) == pytest.approx(2.0)
    assert host.copy_gbps(10 ** 9, 1.0) == pytest.approx(2.0)  # read + write
    assert host.per_item_s([0.2, 0.1, 0.3], 100) == pytest.approx(0.002)
    assert gpu.gbps(4096, 4e-6) == pytest.approx(1.024)
    with pytest.raises(ValueError):
        gpu.gbps(1, 0.0)


def test_numpy_rate_is_measured_on_polyvals_own_block():
    from gpukit.kernels import polyval
    assert host.FULL.numpy_block == polyval.NUMPY_BLOCK


def test_transfer_sizes_and_curves():
    sizes = gpu.TRANSFER_SIZES
    assert sizes[0] == 4 * 1024 and sizes[-1] == 1024 ** 3
    assert all(b == 4 * a for a, b in zip(sizes, sizes[1:]))
    assert gpu.QUICK.sizes == sizes[:len(gpu.QUICK.sizes)]
    curve = gpu.build_curve([4096, 1 << 30], [8e-6, 0.02], [1e-5, 0.021])
    assert curve["gbps"] == pytest.approx([4096 / 8e-6 / 1e9, (1 << 30) / 0.02 / 1e9])
    with pytest.raises(ValueError):
        gpu.build_curve([4096], [1e-6, 2e-6], [1e-6])
    assert gpu.fit_sizes(sizes, 3 * 1024 ** 3, 2) == sizes  # two 1 GiB buffers fit in 3 GiB
    assert gpu.fit_sizes(sizes, 1024 ** 3, 2)[-1] == 256 * 1024 ** 2
    with pytest.raises(BackendUnavailable):
        gpu.fit_sizes(sizes, 4096, 2)
    assert gpu.FULL.reps_for(4096) > gpu.FULL.reps_for(1 << 30) >= 3
    assert gpu.version_text(13020) == "13.2"


def test_figures_and_curves_as_text():
    assert limits.value_text("d2d_gbps", 2900.0) == "2.9 TB/s"
    assert limits.value_text("h2d_pinned_gbps", 54.93) == "54.9 GB/s"
    assert limits.value_text("fma_gflops", 61000.0) == "61 TFLOP/s"
    assert limits.value_text("host_python_1t_gflops", 0.05) == "0.05 GFLOP/s"
    assert limits.value_text("launch_cupy_s", 4.2e-6) == "4.2 us"
    assert limits.value_text("bidir_speedup", 1.654) == "1.65x"
    assert [limits.fmt_bytes(n) for n in (4096, 1 << 20, 1 << 30, 1000)] == \
        ["4 KiB", "1 MiB", "1 GiB", "1000 B"]
    rows = limits.figure_rows({"figures": {"fma_gflops": 1.0, "thread_start_s": 1e-4,
                                           "extra_s": 1.0}})
    assert [r[0] for r in rows] == ["thread_start_s", "fma_gflops", "extra_s"]
    curve = gpu.build_curve([4096, 1 << 30], [8e-6, 0.0196], [1e-5, 0.02])
    header, table = limits.transfer_rows({"h2d_pinned": curve, "d2h_pageable": curve})
    assert header == ["size", "H2D pinned", "D2H pageable"]
    assert table[0][0] == "4 KiB" and table[0][1].startswith("8 us")
    assert table[1][0] == "1 GiB" and table[1][1].endswith("54.8 GB/s")
    assert limits.transfer_rows({}) == ([], [])
    assert limits.missing_lines({"missing": {"gpu": "no driver", "fma_gflops": "x"}}) == \
        ["GPU: not measured: no driver", "fma_gflops: not measured: x"]


# -- the GPU part against a fake CuPy and PyCUDA: its logic runs in CI, without a GPU ----------


LATENCY_S = 5e-6
BANDWIDTH = {("h2d", "pinned"): 50e9, ("d2h", "pinned"): 40e9, ("h2d", "pageable"): 10e9,
             ("d2h", "pageable"): 8e9, ("d2d", "device"): 1000e9}
FMA_FLOPS = 50e12
KERNEL_S = 2e-6
TINY = gpu.GpuPlan(sizes=gpu.TRANSFER_SIZES[:3], small_reps=3, mid_reps=2, large_reps=2,
                   warmup=1, latency_count=5, bidir_bytes=64 * 1024, bidir_reps=2,
                   d2d_bytes=1 << 20, d2d_reps=2, launch_count=20, launch_sync_count=5,
                   launch_reps=2, fma_iters=64, fma_reps=2)


class FakeDevice:
    """Streams as timelines: work starts when its stream is free (and not before the host last
    waited: an idle stream is at `now`) and a copy lasts latency + bytes / bandwidth of its kind;
    copies on two streams overlap, as the copy engines let them."""

    def __init__(self, free_bytes=1 << 34):
        self.free_bytes = free_bytes
        self.timeline = {0: 0.0}
        self.now = 0.0
        self.pinned = []                  # (address, size) of every pinned host buffer
        self.device = {}                  # address -> size of device buffers
        self.next_ptr = 1 << 40
        self.log = []
        self.launches = 0
        self.context_depth = 0

    def where(self, ptr):
        if any(lo <= ptr < lo + n for lo, n in self.device.items()):
            return "device"
        return "pinned" if any(lo <= ptr < lo + n for lo, n in self.pinned) else "pageable"

    def at(self, stream_ptr):
        return max(self.timeline.get(stream_ptr, 0.0), self.now)

    def run(self, stream_ptr, seconds):
        self.timeline[stream_ptr] = self.at(stream_ptr) + seconds

    def wait(self, t):
        self.now = max(self.now, t)

    def copy(self, dst, src, nbytes, kind, stream_ptr):
        assert stream_ptr != 0, "copies run on a non-default stream"
        d, s = self.where(dst), self.where(src)
        key = {1: ("h2d", s), 2: ("d2h", d), 3: ("d2d", "device")}[kind]
        assert {1: d == "device" != s, 2: s == "device" != d, 3: d == s == "device"}[kind], key
        moved = 2 * nbytes if kind == 3 else nbytes  # a device copy reads and writes
        self.run(stream_ptr, LATENCY_S + moved / BANDWIDTH[key])
        self.log.append((key, nbytes))


def fake_cupy(dev):
    cupy = types.ModuleType("cupy")
    cupy.__version__ = "0.fake"
    cupy.uint8, cupy.float32, cupy.nan = np.uint8, np.float32, np.nan
    state = {"stream": None}
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"Fake GPU", "multiProcessorCount": 4,
                                       "l2CacheSize": 50 << 20, "totalGlobalMem": 1 << 34},
        driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13020,
        memGetInfo=lambda: (dev.free_bytes, 1 << 34),
        memcpyHostToDevice=1, memcpyDeviceToHost=2, memcpyDeviceToDevice=3,
        memcpyAsync=dev.copy)

    class Stream:
        _ptrs = itertools.count(1)

        def __init__(self, null=False, non_blocking=False):
            self.ptr = 0 if null else next(self._ptrs)
            dev.timeline.setdefault(self.ptr, 0.0)

        def synchronize(self):
            dev.wait(dev.at(self.ptr))

        def wait_event(self, event):
            dev.timeline[self.ptr] = max(dev.at(self.ptr), event.t)

        def __enter__(self):
            state["previous"], state["stream"] = state["stream"], self
            return self

        def __exit__(self, *exc):
            state["stream"] = state["previous"]

    null = Stream(null=True)

    class Event:
        def record(self, stream=None):
            self.t = dev.at((stream or null).ptr)

        def synchronize(self):
            dev.wait(self.t)

    class Array:
        def __init__(self, n, dtype):
            self.values = np.zeros(n, dtype=dtype)
            self.data = types.SimpleNamespace(ptr=dev.next_ptr)
            dev.device[dev.next_ptr] = self.values.nbytes
            dev.next_ptr += self.values.nbytes + 4096

        def fill(self, value):
            self.values.fill(value)

    class Kernel:
        def __init__(self, name):
            self.name = name

        def __call__(self, grid, block, args):
            stream = state["stream"] or null
            dev.launches += 1
            if self.name == "gpukit_empty":
                assert args == ()
                dev.run(stream.ptr, KERNEL_S)
                return
            out, iters, a, b = args
            assert isinstance(iters, np.int32) and isinstance(a, np.float32)
            threads = grid[0] * block[0]
            assert out.values.shape == (threads,)
            out.values[:] = 1.0
            dev.run(stream.ptr, 2 * gpu.FMA_CHAINS * int(iters) * threads / FMA_FLOPS)

    class RawModule:
        def __init__(self, code):
            assert 'extern "C"' in code and "gpukit_fma" in code

        def get_function(self, name):
            return Kernel(name)

    def alloc_pinned_memory(n):
        buf = bytearray(n)
        dev.pinned.append((np.frombuffer(buf, np.uint8).ctypes.data, n))
        return buf

    pool = types.SimpleNamespace(free_all_blocks=lambda: dev.log.append("freed"))
    cupy.cuda = types.SimpleNamespace(
        runtime=runtime, Stream=Stream, Event=Event, alloc_pinned_memory=alloc_pinned_memory,
        Device=lambda i: types.SimpleNamespace(use=lambda: None, synchronize=lambda: None),
        get_elapsed_time=lambda a, b: (b.t - a.t) * 1e3,
        get_current_stream=lambda: state["stream"] or null)
    cupy.empty = Array
    cupy.RawModule = RawModule
    cupy.isfinite = lambda arr: np.isfinite(arr.values)
    cupy.get_default_memory_pool = cupy.get_default_pinned_memory_pool = lambda: pool
    return cupy


def fake_pycuda(dev):
    pycuda = types.ModuleType("pycuda")
    drv = types.ModuleType("pycuda.driver")
    compiler = types.ModuleType("pycuda.compiler")

    class Context:
        def push(self):
            dev.context_depth += 1

        @staticmethod
        def pop():
            dev.context_depth -= 1

        @staticmethod
        def synchronize():
            assert dev.context_depth > 0

    class Function:
        def __call__(self, block, grid):
            assert dev.context_depth > 0 and block == (1, 1, 1)
            dev.launches += 1

        def prepare(self, arg_types):
            self.prepared = arg_types

        def prepared_call(self, grid, block):
            assert self.prepared == "" and dev.context_depth > 0
            dev.launches += 1

    class SourceModule:
        def __init__(self, source, no_extern_c=False):
            assert no_extern_c and dev.context_depth > 0

        def get_function(self, name):
            assert name == "gpukit_empty"
            return Function()

    drv.init = lambda: None
    drv.Error = RuntimeError
    drv.Context = Context
    drv.Device = lambda i: types.SimpleNamespace(retain_primary_context=Context)
    compiler.SourceModule = SourceModule
    pycuda.driver, pycuda.compiler = drv, compiler
    return {"pycuda": pycuda, "pycuda.driver": drv, "pycuda.compiler": compiler}


@pytest.fixture
def fake_device(monkeypatch):
    dev = FakeDevice()
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(dev))
    for name, module in fake_pycuda(dev).items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # what find_spec returns
        monkeypatch.setitem(sys.modules, name, module)
    return dev


def test_fake_gpu_transfer_curves_recover_each_kind_bandwidth(fake_device):
    session = gpu.Session(TINY)
    figures, curves = session.measure_transfers()
    for (direction, memory), bw in BANDWIDTH.items():
        if direction == "d2d":
            continue
        c = curves[f"{direction}_{memory}"]
        assert c["sizes_bytes"] == list(TINY.sizes)
        assert c["event_s"] == pytest.approx([LATENCY_S + n / bw for n in TINY.sizes])
        assert all(h > 0 for h in c["host_s"])
        assert figures[f"{direction}_{memory}_gbps"] == pytest.approx(
            TINY.sizes[-1] / (LATENCY_S + TINY.sizes[-1] / bw) / 1e9)
    # warm-up plus the repetitions, every kind at every size
    per_kind = [sum(1 for k, n in fake_device.log if k == key and n == size)
                for key in BANDWIDTH if key[0] != "d2d" for size in TINY.sizes]
    assert per_kind == [TINY.warmup + TINY.reps_for(n) for n in TINY.sizes] * 4
    session.close()
    assert "freed" in fake_device.log


def test_fake_gpu_bidirectional_d2d_launch_and_fma(fake_device):
    session = gpu.Session(TINY)
    n = TINY.bidir_bytes
    h2d = LATENCY_S + n / BANDWIDTH["h2d", "pinned"]
    d2h = LATENCY_S + n / BANDWIDTH["d2h", "pinned"]
    figures, curves = session.measure_bidirectional()
    assert figures["bidir_speedup"] == pytest.approx((h2d + d2h) / max(h2d, d2h))
    assert figures["bidir_pinned_gbps"] == pytest.approx(2 * n / max(h2d, d2h) / 1e9)
    figures, _ = session.measure_d2d()
    m = TINY.d2d_bytes
    assert figures["d2d_gbps"] == pytest.approx(2 * m / (LATENCY_S + 2 * m / 1000e9) / 1e9)
    figures, _ = session.measure_launch_cupy()
    assert 0 < figures["launch_cupy_s"] and 0 < figures["launch_cupy_sync_s"]
    assert fake_device.launches == 1 + TINY.launch_reps * (TINY.launch_count +
                                                           TINY.launch_sync_count)
    figures, curves = session.measure_fma()
    assert figures["fma_gflops"] == pytest.approx(FMA_FLOPS / 1e9)
    assert curves["fma"]["grid"] == 4 * gpu.FMA_BLOCKS_PER_SM
    latency, curve = session.measure_latency()
    assert latency["copy_latency_s"] == max(curve["copy_latency"]["h2d_s"],
                                            curve["copy_latency"]["d2h_s"]) > 0
    launches = fake_device.launches
    figures, _ = gpu.measure_launch_pycuda(TINY)
    assert all(figures[n] > 0 for n in ("launch_pycuda_s", "launch_pycuda_sync_s",
                                        "launch_pycuda_prepared_s"))
    assert fake_device.launches - launches == 2 + TINY.launch_reps * (
        2 * TINY.launch_count + TINY.launch_sync_count)
    assert fake_device.context_depth == 0, "PyCUDA's push is popped"


def test_fake_gpu_measure_all_keys_the_cache_by_gpu_and_says_what_is_missing(
        fake_device, monkeypatch, tmp_path):
    monkeypatch.setenv("GPUKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(limits, "host_steps", lambda quick, cores: [])
    monkeypatch.setattr(gpu, "QUICK", TINY)
    monkeypatch.setitem(sys.modules, "pycuda", None)  # PyCUDA missing: its import fails
    facts = {"hostname": "h", "cpu": "c", "cores": 2}
    data = limits.measure_all(facts, quick=True)
    assert data["machine"]["gpu"]["device"] == "Fake GPU" and not data["cached"]
    pycuda_names = {"launch_pycuda_s", "launch_pycuda_sync_s", "launch_pycuda_prepared_s"}
    assert set(data["figures"]) == set(gpu.FIGURES) - pycuda_names
    assert set(data["missing"]) == pycuda_names
    assert "PyCUDA is not installed" in data["missing"]["launch_pycuda_s"]
    assert {"h2d_pinned", "d2h_pageable", "bidirectional", "d2d", "fma"} <= set(data["curves"])
    assert data["path"] != str(ceilings.cache_path(facts))  # the GPU is part of the key
    assert limits.measure_all(facts, quick=True)["cached"]

    fake_device.free_bytes = 1000  # no room on the device: every GPU figure says why
    data = limits.measure_all(facts, refresh=True, quick=True)
    assert data["figures"] == {}
    assert set(data["missing"]) == set(gpu.FIGURES)
    assert all("not enough memory" in r for r in data["missing"].values())


# -- on a GPU machine ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session():
    try:
        gpu.probe()
    except BackendUnavailable as exc:
        pytest.skip(f"no GPU: {exc}")
    s = gpu.Session(gpu.QUICK)
    yield s
    s.close()


@pytest.mark.gpu
def test_gpu_transfers_show_latency_small_and_bandwidth_large(session):
    figures, curves = session.measure_transfers()
    for name in ("h2d_pinned", "d2h_pinned", "h2d_pageable", "d2h_pageable"):
        c = curves[name]
        assert c["sizes_bytes"][0] == 4096
        assert 1e-7 < c["event_s"][0] < 1e-4, (name, c["event_s"][0])  # microseconds
        assert 1e-6 < c["host_s"][0] < 1e-3, (name, c["host_s"][0])
        assert c["gbps"][-1] > 1.0 and c["gbps"][-1] > 3 * c["gbps"][0]  # latency-bound small
        assert figures[f"{name}_gbps"] == c["gbps"][-1]
    latency, _ = session.measure_latency()
    assert 1e-6 < latency["copy_latency_s"] < 1e-3


@pytest.mark.gpu
def test_gpu_copies_launches_and_fma_rate(session):
    bidir, _ = session.measure_bidirectional()
    assert bidir["bidir_pinned_gbps"] > 1.0 and 0.5 < bidir["bidir_speedup"] < 2.5
    d2d, _ = session.measure_d2d()
    assert d2d["d2d_gbps"] > 100
    launch, _ = session.measure_launch_cupy()
    assert 1e-7 < launch["launch_cupy_s"] < 1e-3
    assert launch["launch_cupy_s"] < launch["launch_cupy_sync_s"] < 1e-2
    fma, curve = session.measure_fma()
    assert fma["fma_gflops"] > 1000 and curve["fma"]["event_s"] > 0


@pytest.mark.gpu
def test_pycuda_launch_cost(session):
    pytest.importorskip("pycuda.driver", reason="PyCUDA is not installed")
    figures, _ = gpu.measure_launch_pycuda(gpu.QUICK)
    for name in ("launch_pycuda_s", "launch_pycuda_sync_s", "launch_pycuda_prepared_s"):
        assert 1e-7 < figures[name] < 1e-2, (name, figures[name])
    assert figures["launch_pycuda_s"] < figures["launch_pycuda_sync_s"]


@pytest.mark.parametrize("args, env, message", [
    (("--json", "/proc/x.json"), {}, "cannot write the --json ceilings to /proc/x.json"),
    ((), {"GPUKIT_CACHE_DIR": "/proc/nope"}, "cannot write the ceilings cache to /proc/nope"),
])
def test_unwritable_outputs_are_refused_before_measuring(gpukit_cli, tmp_path, args, env,
                                                         message):
    env = {"GPUKIT_CACHE_DIR": str(tmp_path / "cache"), **env}
    proc = gpukit_cli("limits", "--quick", *args, env=env)
    assert proc.returncode == 2
    # One line and no "measuring ..." before it: nothing was measured only to be thrown away.
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_ceilings_that_cannot_be_saved_after_measuring_are_still_shown(monkeypatch, capsys,
                                                                      tmp_path):
    from gpukit import cli
    monkeypatch.setenv("GPUKIT_CACHE_DIR", str(tmp_path))

    def measure_then_lose_the_cache(**kw):
        # The cache folder vanished (or filled) while measuring: save fails after the fact.
        ceilings.save({"hostname": "h", "cpu": "c", "cores": 1}, {"thread_start_s": 4.2e-5},
                      path=ceilings.Path("/proc/nope/ceilings.json"), settings={"wall_s": 1.0})
    monkeypatch.setattr(limits, "measure_all", measure_then_lose_the_cache)
    assert cli.main(["limits", "--quick"]) == 2
    captured = capsys.readouterr()
    assert "thread_start_s" in captured.out and "not stored" in captured.out
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith("error: could not write the ceilings to /proc/nope/ceilings.json")
