"""The sweep's rules, with a fake backend whose timings are made up (and outputs real)."""

import time

import pytest

from gpukit import backends, kernels, runner
from gpukit.backends.base import Backend, RunTiming, Startup, Variant, host_phases
from gpukit.errors import BackendUnavailable
from gpukit.results import Results
from gpukit.timing import Budget

EVENTS = []


class FakeBackend(Backend):
    """Computes with NumPy; claims n * 1 us per run; can be told to fail."""

    name = "fake"
    parallel = True

    @classmethod
    def variants(cls, kernel):
        return [Variant("fake", "numpy"), Variant("fake", "numpy", (("mode", "wrong"),)),
                Variant("fake", "numpy", (("mode", "crash"),))]

    def open(self):
        EVENTS.append(("open", self.variant.label, self.workers))
        return Startup({"pool_start": 0.5})

    def prepare(self, kernel, params, inputs):
        self.kernel, self.params, self.inputs = kernel, params, inputs
        self.n = inputs.split["x"].shape[0]
        return Startup()

    def run(self):
        mode = self.variant.option("mode")
        if mode == "crash" and self.n >= 4000:
            raise RuntimeError("device fell off the bus")
        out = self.kernel.alloc_outputs(self.n, self.params)
        self.kernel.host_impls()["numpy"](self.inputs.split, self.inputs.whole, out, self.params)
        if mode == "wrong" and self.n >= 4000:
            out["y"][-1] += 1.0
        t = self.n * 1e-6
        return out, RunTiming(host_phases(0.0, t, 0.0), t)

    def close(self):
        EVENTS.append(("close", self.variant.label, self.workers))


class MissingBackend(FakeBackend):
    name = "missing"

    @classmethod
    def check_available(cls):
        raise BackendUnavailable("no such device here")


@pytest.fixture
def fake_registry(monkeypatch):
    real_get = backends.get
    fakes = {"fake": FakeBackend, "missing": MissingBackend}
    monkeypatch.setattr(backends, "get", lambda name: fakes.get(name) or real_get(name))
    EVENTS.clear()


def sweep(**kw):
    args = dict(kernel=kernels.load("polyval"), param_sets=({"k": 2},),
                sizes=(1000, 4000, 16000, 64000), workers=(1, 2), backends=("fake", "missing"),
                budget=Budget(budget_s=0.0, min_reps=3, max_reps=3), run_limit_s=0.01)
    args.update(kw)
    return runner.Sweep(**args)


def run(s):
    results = Results({}, s.to_json())
    runner.Runner(s, results).run()
    return results


def cases(results, label, workers=1):
    return {c["n"]: c for c in results.cases if c["label"] == label and c["workers"] == workers}


def test_larger_sizes_skipped_once_predicted_over_the_limit(fake_registry):
    res = run(sweep())
    plain = cases(res, "fake/numpy")
    assert [plain[n]["status"] for n in (1000, 4000, 16000, 64000)] == \
        ["ok", "ok", "skipped", "skipped"]
    assert "predicted 0.016 s" in plain[16000]["reason"]
    assert plain[4000]["summary"]["wall_s"]["median"] == pytest.approx(0.004)
    assert len(plain[4000]["runs"]) == 3


def test_wrong_result_fails_the_case_and_stops_the_series_only(fake_registry):
    res = run(sweep())
    wrong = cases(res, "fake/numpy/wrong", 2)
    assert wrong[1000]["status"] == "ok"
    assert wrong[4000]["status"] == "failed"
    assert "disagrees with the reference" in wrong[4000]["reason"]
    assert wrong[4000]["check"]["ok"] is False
    assert "runs" not in wrong[4000]  # never timed
    assert wrong[16000]["status"] == "skipped"
    assert cases(res, "fake/numpy", 2)[4000]["status"] == "ok"


def test_a_crashing_backend_fails_its_case_and_the_sweep_goes_on(fake_registry):
    res = run(sweep())
    crash = cases(res, "fake/numpy/crash")
    assert crash[4000]["status"] == "failed"
    assert "device fell off the bus" in crash[4000]["reason"]
    assert len(res.cases) == 3 * 2 * 4  # every planned case has a record


def test_unavailable_backend_is_recorded_with_its_reason(fake_registry):
    res = run(sweep())
    assert res.data["backends"]["missing"] == {**res.data["backends"]["missing"],
                                               "available": False, "reason": "no such device here"}
    assert not [c for c in res.cases if c["backend"] == "missing"]


def test_sessions_open_once_and_close(fake_registry):
    run(sweep())
    opens = [e for e in EVENTS if e[0] == "open"]
    closes = [e for e in EVENTS if e[0] == "close"]
    assert len(opens) == len(set(opens)) == 6
    assert sorted(o[1:] for o in opens) == sorted(c[1:] for c in closes)


def test_order_is_by_size_then_shuffled_by_seed(fake_registry):
    s = sweep(run_limit_s=100.0)
    ordered = runner.order(runner.plan(s, runner.probe_backends(s.backends, s.kernel)), seed=1)
    sizes = [c.n for c in ordered]
    assert sizes == sorted(sizes)
    again = runner.order(runner.plan(s, runner.probe_backends(s.backends, s.kernel)), seed=1)
    other = runner.order(runner.plan(s, runner.probe_backends(s.backends, s.kernel)), seed=2)
    assert ordered == again and ordered != other


def test_interrupt_keeps_what_was_measured(fake_registry, monkeypatch):
    s = sweep(run_limit_s=100.0)
    results = Results({}, s.to_json())
    calls = []

    def progress(done, total, record):
        calls.append(record)
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.Runner(s, results, progress).run()
    assert len(results.cases) == 5
    assert [e for e in EVENTS if e[0] == "close"]  # sessions were closed on the way out


def test_memory_check_before_allocating():
    from gpukit.errors import UsageError
    s = sweep(sizes=(1 << 40,), backends=("serial",))
    with pytest.raises(UsageError, match="needs about .* GiB of host memory"):
        runner.check_fits(s)


def test_memory_needed_is_what_the_docstring_counts():
    # polyval: 4 bytes in and 4 out a point (plus k+1 coefficients); inputs and outputs once and
    # again for pickling or shared memory, and 8 + 8 bytes of float64 reference and error scale.
    from gpukit import kernels
    kernel = kernels.load("polyval")
    n, params = 1 << 20, {"k": 2}
    assert runner.host_memory_needed(kernel, n, params) == 2 * (8 * n + 12) + 16 * n


def test_memory_check_heeds_a_control_group_limit(tmp_path):
    from gpukit import machine
    limit, usage = tmp_path / "memory.max", tmp_path / "memory.current"
    limit.write_text("1073741824\n")
    usage.write_text("73741824\n")
    files = ((str(tmp_path / "absent"), str(usage)), (str(limit), str(usage)))
    assert machine._cgroup_room(files) == 1_000_000_000
    limit.write_text("max\n")  # cgroup v2: no limit
    assert machine._cgroup_room(files) is None
    limit.write_text(f"{2**63 - 4096}\n")  # cgroup v1: no limit
    assert machine._cgroup_room(files) is None


class HangingGpuBackend(FakeBackend):
    """A GPU backend's shape (gpu=True, no abort of its own, a context bound to the thread that
    opened it) whose kernel never returns from n=4000 on."""

    name = "hanging"
    parallel = False
    gpu = True
    released = None  # a threading.Event, set when the test is done with the hung thread

    @classmethod
    def variants(cls, kernel):
        return [Variant("hanging", "cuda")]

    def open(self):
        import threading
        self.thread = threading.current_thread()
        return super().open()

    def run(self):
        import threading
        import time
        assert threading.current_thread() is self.thread  # every call on the opening thread
        while self.n >= 4000 and not self.released.is_set():
            time.sleep(0.01)
        return super().run()


def test_a_hung_gpu_case_fails_on_its_timeout_and_is_abandoned_on_a_daemon_thread(monkeypatch):
    import threading
    monkeypatch.setattr(HangingGpuBackend, "released", threading.Event())
    real_get = backends.get
    monkeypatch.setattr(backends, "get", lambda name: HangingGpuBackend if name == "hanging"
                        else FakeBackend if name == "fake" else real_get(name))
    res = run(sweep(backends=("hanging", "fake"), case_timeout_s=0.3, run_limit_s=100.0))
    hung = cases(res, "hanging/cuda")
    assert [hung[n]["status"] for n in (1000, 4000, 16000, 64000)] == \
        ["ok", "failed", "skipped", "skipped"]
    assert "did not finish within 0.3 s" in hung[4000]["reason"]
    assert "left to run until gpukit exits" in hung[4000]["reason"]
    assert all(c["status"] == "ok" for c in res.cases if c["label"] == "fake/numpy")
    stuck = [t for t in threading.enumerate() if t.name.startswith("gpukit hanging/cuda")]
    assert stuck and all(t.daemon for t in stuck)  # it cannot hold the process at exit
    HangingGpuBackend.released.set()


class SlowStartBackend(FakeBackend):
    """A session whose start takes until it is aborted (a pool whose workers never come up)."""

    name = "slowstart"
    parallel = False
    aborted = None  # a threading.Event

    @classmethod
    def variants(cls, kernel):
        return [Variant("slowstart", "numpy")]

    def open(self):
        self.aborted.wait(30)
        return super().open()

    def abort(self):
        self.aborted.set()
        return "stopped"


def test_ctrl_c_while_a_session_starts_aborts_that_session(monkeypatch):
    import _thread
    import threading
    monkeypatch.setattr(SlowStartBackend, "aborted", threading.Event())
    real_get = backends.get
    monkeypatch.setattr(backends, "get", lambda name: SlowStartBackend if name == "slowstart"
                        else real_get(name))
    threading.Timer(0.3, _thread.interrupt_main).start()  # Ctrl-C, as the main thread sees it
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run(sweep(backends=("slowstart",)))
    assert SlowStartBackend.aborted.is_set()
    assert time.monotonic() - t0 < 10
