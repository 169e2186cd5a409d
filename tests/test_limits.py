"""`gpukit limits`: the host part through the CLI as a user runs it, the cache, the pure helpers,
and (on a GPU machine) the GPU figures."""

import json
import sys

import pytest

from gpukit import ceilings, limits, units
from gpukit.errors import BackendUnavailable, UsageError
from gpukit.limits import gpu, host

import gpu_fakes

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
    assert units.gbps(3e9, 1.5) == pytest.approx(2.0)
    assert host.copy_gbps(10 ** 9, 1.0) == pytest.approx(2.0)  # read + write
    assert host.per_item_s([0.2, 0.1, 0.3], 100) == pytest.approx(0.002)
    assert units.gbps(4096, 4e-6) == pytest.approx(1.024)
    with pytest.raises(ValueError):
        units.gbps(1, 0.0)


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


def test_figures_and_curves_as_text():
    assert limits.value_text("d2d_gbps", 2900.0) == "2.9 TB/s"
    assert limits.value_text("h2d_pinned_gbps", 54.93) == "54.9 GB/s"
    assert limits.value_text("fma_gflops", 61000.0) == "61 TFLOP/s"
    assert limits.value_text("host_python_1t_gflops", 0.05) == "0.05 GFLOP/s"
    assert limits.value_text("launch_cupy_s", 4.2e-6) == "4.2 us"
    assert limits.value_text("bidir_speedup", 1.654) == "1.65x"
    assert [units.fmt_bytes(n) for n in (4096, 1 << 20, 1 << 30, 1000)] == \
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
TINY = gpu.GpuPlan(sizes=gpu.TRANSFER_SIZES[:3], small_reps=3, mid_reps=2, large_reps=2,
                   warmup=1, latency_count=5, bidir_bytes=64 * 1024, bidir_reps=2,
                   d2d_bytes=1 << 20, d2d_reps=2, launch_count=20, launch_sync_count=5,
                   launch_device_count=10, launch_reps=2, fma_iters=64, fma_reps=2)


class BandwidthGPU(gpu_fakes.FakeGPU):
    """The fake device of the GPU backend's tests, with copies that take a latency plus their
    bytes at each kind's bandwidth (a device copy reads and writes)."""

    def copy_s(self, kind, memory, nbytes):
        moved = 2 * nbytes if kind == "d2d" else nbytes
        return LATENCY_S + moved / BANDWIDTH[kind, memory]


@pytest.fixture(params=gpu_fakes.LIBRARIES)
def fake_device(request, monkeypatch):
    """The fake device behind both fake libraries; the session measures through the one named
    (the other is missing, as on a machine with one of them)."""
    dev = BandwidthGPU()
    gpu_fakes.install(monkeypatch, dev)
    other = "pycuda" if request.param == "cupy" else "cupy"
    monkeypatch.setitem(sys.modules, other, None)  # its import fails: not installed
    dev.library = request.param
    return dev


def test_fake_gpu_transfer_curves_recover_each_kind_bandwidth(fake_device):
    session = gpu.Session(TINY)
    assert session.dev.library == fake_device.library
    figures, curves = session.measure_transfers()
    for (direction, memory), bw in BANDWIDTH.items():
        if direction == "d2d":
            continue
        c = curves[f"{direction}_{memory}"]
        assert c["sizes_bytes"] == list(TINY.sizes)
        assert c["event_s"] == pytest.approx([LATENCY_S + n / bw for n in TINY.sizes])
        assert all(h >= 0 for h in c["host_s"])
        assert figures[f"{direction}_{memory}_gbps"] == pytest.approx(
            TINY.sizes[-1] / (LATENCY_S + TINY.sizes[-1] / bw) / 1e9)
    # warm-up plus the repetitions, every kind at every size
    per_kind = [fake_device.copies.count((*key, size))
                for key in BANDWIDTH if key[0] != "d2d" for size in TINY.sizes]
    assert per_kind == [TINY.warmup + TINY.reps_for(n) for n in TINY.sizes] * 4
    session.close()
    assert fake_device.context_depth == 0


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
    figures, _ = session.measure_fma()
    assert figures["fma_gflops"] == pytest.approx(gpu_fakes.FMA_FLOPS / 1e9)
    latency, curve = session.measure_latency()
    assert latency["copy_latency_s"] == max(curve["copy_latency"]["h2d_s"],
                                            curve["copy_latency"]["d2h_s"]) > 0
    session.close()
    assert fake_device.context_depth == 0, "PyCUDA's push is popped"


def test_fake_gpu_launch_figures_hold_the_queue_for_the_devices_figure(fake_device):
    session = gpu.Session(TINY)
    del fake_device.log[:]
    lib = fake_device.library
    figures, _ = session.measure_launch(lib)
    assert set(figures) == {f"launch_{lib}_s", f"launch_{lib}_sync_s", f"launch_{lib}_device_s"}
    # The device figure: empty kernels back to back behind the spin, one event pair around them.
    assert figures[f"launch_{lib}_device_s"] == pytest.approx(gpu_fakes.EMPTY_KERNEL_S)
    assert figures[f"launch_{lib}_s"] > 0 and figures[f"launch_{lib}_sync_s"] > 0
    launches = fake_device.log.count("empty")
    assert launches == 1 + TINY.launch_reps * (TINY.launch_count + TINY.launch_sync_count
                                               + TINY.launch_device_count)
    assert fake_device.log.count("spin") == TINY.launch_reps
    session.close()


def test_fake_gpu_measure_all_keys_the_cache_by_gpu_and_says_what_is_missing(
        fake_device, monkeypatch, tmp_path):
    monkeypatch.setenv("GPUKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(limits, "host_steps", lambda quick, cores: [])
    monkeypatch.setattr(gpu, "QUICK", TINY)
    facts = {"hostname": "h", "cpu": "c", "cores": 2}
    data = limits.measure_all(facts, quick=True)
    lib = fake_device.library
    other = "pycuda" if lib == "cupy" else "cupy"
    assert data["machine"]["gpu"]["device"] == "Fake GPU" and not data["cached"]
    assert data["machine"]["gpu"]["library"] == lib
    other_names = {f"launch_{other}{kind}_s" for kind in gpu.LAUNCH_KINDS}
    assert set(data["figures"]) == set(gpu.FIGURES) - other_names
    assert set(data["missing"]) == other_names
    assert f"{other} is not installed" in data["missing"][f"launch_{other}_s"]
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
    lib = session.dev.library
    launch, _ = session.measure_launch(lib)
    assert 1e-7 < launch[f"launch_{lib}_s"] < 1e-3
    assert launch[f"launch_{lib}_s"] < launch[f"launch_{lib}_sync_s"] < 1e-2
    assert 1e-8 < launch[f"launch_{lib}_device_s"] < 1e-4
    fma, curve = session.measure_fma()
    assert fma["fma_gflops"] > 1000 and curve["fma"]["event_s"] > 0


@pytest.mark.gpu
def test_pycuda_launch_cost(session):
    pytest.importorskip("pycuda.driver", reason="PyCUDA is not installed")
    figures, _ = session.measure_launch("pycuda")
    for name in ("launch_pycuda_s", "launch_pycuda_sync_s", "launch_pycuda_device_s"):
        assert 1e-8 < figures[name] < 1e-2, (name, figures[name])
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
