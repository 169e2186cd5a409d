"""Array-namespace kernels on the GPU backend, through the host fakes: a plain function run under
the (fake) CuPy namespace on device arrays, its copies and its compute timed with events as for
every GPU case, its outputs checked against the float64 reference; PyCUDA refused with the
reason; and the failures only CuPy shows, each failing its own case in one line.

The fake CuPy (tests/gpu_fakes.py) with its array namespace (tests/array_namespace_fake.py)
queues every operation of the function on the current stream for KERNEL_S, so the compute
phase counts the function's operations."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import array_namespace_fake
import gpu_fakes
import numpy as np
import pytest
from gpu_fakes import D2H_S, H2D_S, KERNEL_S, FakeGPU

from gpukit import kernels, phases, runner
from gpukit.backends.cupy_backend import CupyBackend
from gpukit.results import Results
from gpukit.timing import Budget

ROOT = Path(__file__).resolve().parent.parent
MPI = shutil.which("mpiexec") is not None
PLAIN = {"compute_only": False, "compile_cold": False}

FUNCTIONS = '''
import numpy
import gpukit


def softplus(x, xp=numpy):
    return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0)


def zscore(x, xp=numpy):
    return (x - xp.mean(x)) / xp.std(x)


@gpukit.array_kernel(inputs=lambda n, rng: {"a": rng.standard_normal((n, 4)),
                                             "b": rng.standard_normal((n, 4))})
def rowdot(a, b, xp=numpy):
    return {"dot": xp.sum(a * b, axis=1), "count": xp.sum(a > 0, axis=1)}


def cube_root(x, xp=numpy):
    return xp.cbrt(x)


def mixes_in_a_host_array(x, xp=numpy):
    return x + numpy.ones(x.shape[0], dtype=x.dtype)


def float64_on_the_gpu(x, xp=numpy):
    return x.astype(xp.float64) if xp.__name__ == "cupy" else x


def returns_a_host_array(x, xp=numpy):
    return numpy.asarray(xp.abs(x))


def drops_a_row_on_the_gpu(x, xp=numpy):
    return x[:-1] if xp.__name__ == "cupy" else x
'''


@pytest.fixture(scope="module")
def functions(tmp_path_factory):
    path = tmp_path_factory.mktemp("xp") / "functions.py"
    path.write_text(FUNCTIONS)
    return path


@pytest.fixture
def gpu(monkeypatch):
    gpu = FakeGPU()
    gpu_fakes.install(monkeypatch, gpu)
    array_namespace_fake.install(sys.modules["cupy"], gpu)
    return gpu


def session_for(kernel, memory, settings=PLAIN):
    variant = next(v for v in CupyBackend.variants(kernel) if v.option("memory") == memory)
    session = CupyBackend(variant, 1, settings)
    session.open()
    return session


def check(kernel, out, inputs, params=None):
    params = params or {}
    result = kernel.check(out, kernel.reference(inputs, params), inputs, params)
    assert result.ok, result
    return result


def test_the_gpu_offers_the_function_on_cupy_and_pycuda_says_why_not(gpu, functions):
    kernel = kernels.load(f"{functions}:softplus")
    assert [v.label for v in CupyBackend.variants(kernel)] == ["cupy/xp/pageable",
                                                               "cupy/xp/pinned"]
    status = runner.probe_backends(("cupy", "pycuda"), kernel)
    assert status["cupy"]["available"]
    assert not status["pycuda"]["available"]
    assert status["pycuda"]["reason"] == (
        "softplus is an array-namespace function and pycuda runs CUDA C only (a kernel class "
        "with CUDA C runs here: docs/own-kernel.md)")


@pytest.mark.parametrize("memory", ["pageable", "pinned"])
def test_a_run_copies_in_calls_the_function_on_the_stream_and_copies_out(gpu, functions, memory):
    kernel = kernels.load(f"{functions}:softplus")
    session = session_for(kernel, memory)
    inputs = kernel.make_inputs(1000, {}, seed=3)
    prepared = session.prepare(kernel, {}, inputs)
    # The first call, in prepare, is where CuPy compiles each operation on first use.
    assert {"alloc", "first_call"} <= set(prepared.steps_s)
    assert ("pin" in prepared.steps_s) == (memory == "pinned")
    assert "compile" not in prepared.steps_s
    assert prepared.facts["launch_figures"].startswith("not measured")

    del gpu.log[:]
    out, timing = session.run()
    operations = ["xp.abs", "xp.negative", "xp.exp", "xp.log1p", "xp.maximum", "xp.add"]
    assert gpu.log == ["event", "h2d", "event", *operations, "event", "d2h", "event", "sync"]
    check(kernel, out, inputs)
    expected = dict(zip(phases.RUN_PHASES, (H2D_S, len(operations) * KERNEL_S, D2H_S)))
    assert timing.phases_s == pytest.approx(expected)
    assert timing.device_s == timing.phases_s
    assert set(timing.extra["host_phases_s"]) == set(phases.RUN_PHASES)
    session.close()


def test_the_compute_only_figure_calls_the_function_on_resident_data(gpu, functions):
    kernel = kernels.load(f"{functions}:softplus")
    session = session_for(kernel, "pinned", {"compile_cold": False, "compute_only_reps": 2})
    inputs = kernel.make_inputs(500, {})
    prepared = session.prepare(kernel, {}, inputs)
    assert prepared.facts["l2_flush_bytes"] > 0
    del gpu.log[:]
    out, timing = session.run()
    check(kernel, out, inputs)
    # Each rep: the flush, then the function's six operations between its events.
    assert gpu.log.count("memset") == 2 and gpu.log.count("xp.log1p") == 3
    assert timing.extra["compute_only_runs_s"] == pytest.approx([6 * KERNEL_S] * 2)
    session.close()


def test_several_outputs_and_a_whole_array_function_on_the_gpu(gpu, functions):
    rowdot = kernels.load(f"{functions}:rowdot")
    session = session_for(rowdot, "pinned")
    inputs = rowdot.make_inputs(257, {})
    session.prepare(rowdot, {}, inputs)
    del gpu.log[:]
    out, timing = session.run()
    assert set(out) == {"dot", "count"} and out["count"].dtype == np.int64
    check(rowdot, out, inputs)
    assert gpu.log.count("h2d") == 2 and gpu.log.count("d2h") == 2
    assert timing.phases_s[phases.TRANSFER_OUT] == pytest.approx(2 * D2H_S)
    session.close()

    zscore = kernels.load(f"{functions}:zscore")
    assert zscore.rowwise is False
    session = session_for(zscore, "pageable")
    inputs = zscore.make_inputs(3000, {})
    session.prepare(zscore, {}, inputs)
    out, _timing = session.run()
    check(zscore, out, inputs)
    session.close()


@pytest.mark.parametrize("func,words", [
    # an operation CuPy lacks, found before the function is called
    ("cube_root", "cube_root under cupy: the function uses xp.cbrt, which cupy lacks"),
    # a call that works under NumPy and fails under CuPy
    ("mixes_in_a_host_array", ("mixes_in_a_host_array under cupy raised TypeError: Unsupported "
                               "type <class 'numpy.ndarray'>")),
    ("float64_on_the_gpu", ("float64_on_the_gpu under cupy, output 'out' is float64, but "
                            "float32 under numpy")),
    ("returns_a_host_array", ("returns_a_host_array under cupy, output 'out' is a ndarray, not "
                              "a cupy array (does it call numpy rather than xp?)")),
    # an output with the wrong number of rows
    ("drops_a_row_on_the_gpu", ("drops_a_row_on_the_gpu under cupy, output 'out' has shape "
                                "(99,), expected (100,): every output has one value per row of "
                                "the inputs")),
])
def test_what_only_cupy_refuses_fails_its_own_cases_in_one_line(gpu, functions, func, words):
    kernel = kernels.load(f"{functions}:{func}")  # NumPy takes it: it loads
    sweep = runner.Sweep(kernel, ({},), (100, 200), (1,), ("serial", "cupy"),
                         budget=Budget(budget_s=0.0, min_reps=1, max_reps=1), settings=PLAIN)
    results = runner.Runner(sweep, Results({}, sweep.to_json())).run()
    by = {(c["backend"], c["n"], c["variant"]["options"].get("memory")): c for c in results.cases}
    assert by[("serial", 100, None)]["status"] == "ok"
    assert by[("serial", 200, None)]["status"] == "ok"
    for memory in ("pageable", "pinned"):
        first, second = by[("cupy", 100, memory)], by[("cupy", 200, memory)]
        assert first["status"] == "failed", first
        assert first["reason"] == (f"kernel {func}, xp implementation on cupy/xp/{memory} x1: "
                                   f"{words}"), first["reason"]
        assert second["status"] == "skipped"


def test_softplus_through_the_runner_on_every_backend_checked_against_its_reference(
        gpu, functions):
    kernel = kernels.load(f"{functions}:softplus")
    sweep = runner.Sweep(kernel, ({},), (1000, 4099), (1, 2),
                         ("serial", "threads", "processes", "cupy", "pycuda"), impls=("numpy",),
                         budget=Budget(budget_s=0.0, min_reps=1, max_reps=2), settings=PLAIN)
    results = runner.Runner(sweep, Results({}, sweep.to_json())).run()
    labels = {c["label"] for c in results.cases}
    # --impls names CPU implementations: the GPU's xp variants run whatever it says.
    assert {"cupy/xp/pageable", "cupy/xp/pinned", "serial/numpy", "threads/numpy"} <= labels
    assert not any(c["backend"] == "pycuda" for c in results.cases)
    assert results.data["backends"]["pycuda"]["available"] is False
    for case in results.cases:
        assert case["status"] == "ok", case
        assert case["check"]["ok"] and case["check"]["error"] < 1e-6
    gpu_case = next(c for c in results.cases if c["backend"] == "cupy")
    assert gpu_case["summary"]["phases_s"][phases.COMPUTE]["median"] == pytest.approx(
        6 * KERNEL_S)


SITE = """
import sys
sys.path.insert(0, {tests!r})
import array_namespace_fake
import gpu_fakes
gpu = gpu_fakes.install_globally()
array_namespace_fake.install(sys.modules["cupy"], gpu)
"""


def test_softplus_in_a_file_of_its_own_through_compare_on_every_backend_and_the_fake_gpu(
        gpukit_cli, tmp_path):
    # Every Python the command starts (gpukit, its workers, the MPI ranks) imports this
    # sitecustomize, which puts the fake CuPy, with its array namespace, and PyCUDA in place.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE.format(tests=str(Path(__file__).parent)))
    own = tmp_path / "softplus.py"
    own.write_text("import numpy\n\n\ndef softplus(x, xp=numpy):\n"
                   "    return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0)\n")
    output = tmp_path / "all.json"
    backends = "serial,threads,processes,cupy,pycuda" + (",mpi" if MPI else "")
    result = gpukit_cli("compare", "--kernel", f"{own}:softplus", "--backends", backends,
                        "--sizes", "1000,4099", "--workers", "1,2", "--budget-s", "0.01",
                        "--min-reps", "1", "--max-reps", "3", "--no-progress",
                        "-o", str(output), env={"PYTHONPATH": f"{site}{os.pathsep}{ROOT}"})
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(output.read_text())
    assert data["sweep"]["kernel"] == "softplus"
    assert data["backends"]["cupy"]["facts"]["cupy"] == "0.fake"
    assert "runs CUDA C only" in data["backends"]["pycuda"]["reason"]
    backends_run = {c["backend"] for c in data["cases"]}
    assert backends_run == {"serial", "threads", "processes", "cupy"} | ({"mpi"} if MPI else set())
    for case in data["cases"]:
        assert case["status"] == "ok", case
        assert case["check"]["ok"] and case["check"]["error"] < 1e-6, case
    gpu = [c for c in data["cases"] if c["backend"] == "cupy"]
    assert {c["label"] for c in gpu} == {"cupy/xp/pageable", "cupy/xp/pinned"}
    # The fake device's clock: six operations of KERNEL_S each between the copies.
    assert all(c["summary"]["phases_s"][phases.COMPUTE]["median"] == pytest.approx(6 * KERNEL_S)
               for c in gpu)
    assert "pycuda" in result.stdout + result.stderr
