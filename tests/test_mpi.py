"""The mpi backend: real ranks through the launcher, failures, and the CLI with mpi cases.

Needs mpi4py and an mpiexec (`pip install -e '.[test,mpi]'`); skipped with the reason otherwise.
The launcher's command line is checked without MPI.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpukit import kernels
from gpukit.backends import mpi_backend, mpi_launch
from gpukit.backends.base import Variant
from gpukit.backends.mpi_backend import MpiBackend
from gpukit.backends.mpi_launch import MpiError, launcher_command
from gpukit.errors import BackendUnavailable
from gpukit.phases import RUN_PHASES

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"k": 4}


def _mpi_reason() -> str | None:
    try:
        MpiBackend.check_available()
    except BackendUnavailable as exc:
        return str(exc)
    return None


MPI_REASON = _mpi_reason()
needs_mpi = pytest.mark.skipif(MPI_REASON is not None, reason=f"mpi backend: {MPI_REASON}")


def _session(ranks: int, **settings) -> MpiBackend:
    backend = MpiBackend(Variant("mpi", "numpy"), ranks, {"mpi_timeout_s": 30, **settings})
    backend.startup = backend.open()
    return backend


def _run_checked(backend: MpiBackend, n: int):
    kernel = kernels.load("polyval")
    inputs = kernel.make_inputs(n, PARAMS)
    backend.prepare(kernel, PARAMS, inputs)
    out, timing = backend.run()
    check = kernel.check(out, kernel.reference(inputs, PARAMS), inputs, PARAMS)
    assert check.ok, (n, check)
    return timing


def _assert_gone(pids):
    assert pids
    deadline = time.monotonic() + 5
    while any(mpi_launch._running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if mpi_launch._running(p)], "ranks left running"


# -- without MPI -------------------------------------------------------------------------------


def test_open_mpi_command_as_root_oversubscribes_and_exports():
    cmd = launcher_command("/x/mpiexec", mpi_launch.OPENMPI, 16, export=("A", "B"), euid=0,
                           python="/py")
    assert cmd == ["/x/mpiexec", "-n", "16", "--allow-run-as-root", "--oversubscribe",
                   "-x", "A", "-x", "B", "/py", "-m", "gpukit.backends.mpi_worker"]


def test_open_mpi_command_with_hostfile_as_user():
    cmd = launcher_command("mpiexec", mpi_launch.OPENMPI, 4, "/h", ("A",), euid=1000, python="p")
    assert cmd == ["mpiexec", "-n", "4", "--hostfile", "/h", "-x", "A", "p", "-m",
                   "gpukit.backends.mpi_worker"]


def test_mpich_command_needs_no_flags():
    assert launcher_command("mpiexec", mpi_launch.MPICH, 2, export=("A",), euid=0,
                            python="p") == ["mpiexec", "-n", "2", "p", "-m",
                                            "gpukit.backends.mpi_worker"]
    assert launcher_command("mpiexec", mpi_launch.MPICH, 2, "/h", euid=0,
                            python="p")[3:5] == ["-f", "/h"]


def test_unavailable_without_mpi4py_or_launcher(monkeypatch):
    monkeypatch.setattr(mpi_backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendUnavailable, match="mpi4py is not installed"):
        MpiBackend.check_available()
    monkeypatch.undo()
    if mpi_backend.importlib.util.find_spec("mpi4py") is None:
        return
    monkeypatch.setattr(mpi_backend, "find_launcher", lambda: None)
    with pytest.raises(BackendUnavailable, match="no mpiexec"):
        MpiBackend.check_available()


def test_rank_rows_cover_n_even_when_n_is_below_the_rank_count():
    from gpukit.backends.mpi_worker import rank_rows
    assert rank_rows(5, 2) == [(0, 3), (3, 5)]
    assert rank_rows(1, 3) == [(0, 1), (1, 1), (1, 1)]


# -- real ranks ----------------------------------------------------------------------------------


@needs_mpi
def test_facts_from_check_available():
    facts = MpiBackend.check_available()
    assert facts["mpi_library"] and facts["mpi4py"].startswith("4")
    assert Path(facts["launcher"]).name == "mpiexec"


@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2])
def test_ranks_agree_with_reference(ranks):
    backend = _session(ranks)
    try:
        startup = backend.startup
        assert startup.steps_s["mpi_launch"] > 0
        facts = startup.facts
        assert facts["ranks"] == ranks and sum(facts["ranks_per_host"].values()) == ranks
        assert facts["hosts"] and facts["mpi_library"] and facts["mpi4py"]
        assert f" -n {ranks} " in facts["launcher"]
        assert facts["launcher"].endswith("-m gpukit.backends.mpi_worker")
        # n below the rank count, n not divisible by it, and one a bit larger.
        for n in (1, 3, 1001, 40_000):
            for _ in range(2):  # a second run reuses every buffer
                timing = _run_checked(backend, n)
                assert set(timing.phases_s) == set(RUN_PHASES)
                assert all(v >= 0 for v in timing.phases_s.values())
                assert math.isclose(sum(timing.phases_s.values()), timing.wall_s,
                                    rel_tol=1e-9, abs_tol=1e-12)
                assert timing.extra["host_roundtrip_s"] >= timing.wall_s
                assert timing.extra["rank_compute_max_s"] >= timing.extra["rank_compute_min_s"]
            backend.release()
        pids = backend.rank_pids
        assert len(pids) == ranks
    finally:
        backend.close()
        backend.close()  # safe twice
    _assert_gone(pids)


@needs_mpi
def test_a_dead_rank_fails_the_case_and_the_next_prepare_relaunches():
    backend = _session(2, mpi_fault="die")
    try:
        pids = backend.rank_pids
        kernel = kernels.load("polyval")
        inputs = kernel.make_inputs(100, PARAMS)
        backend.prepare(kernel, PARAMS, inputs)
        t0 = time.monotonic()
        with pytest.raises(MpiError, match="a rank died") as err:
            backend.run()
        assert time.monotonic() - t0 < 10, "not noticed before the timeout"
        assert "job killed" in str(err.value)
        _assert_gone(pids)
        backend.release()  # what the runner does after a failure: must not raise
        # The sweep goes on: the next problem starts a fresh job.
        backend.settings["mpi_fault"] = None
        backend.prepare(kernel, PARAMS, inputs)
        assert backend.run()[0]["y"].shape == (100,)
        assert set(backend.rank_pids).isdisjoint(pids)
    finally:
        backend.close()


@needs_mpi
def test_a_hung_rank_times_out_and_is_killed():
    backend = _session(2, mpi_fault="hang", mpi_timeout_s=1.5)
    try:
        pids = backend.rank_pids
        kernel = kernels.load("polyval")
        backend.prepare(kernel, PARAMS, kernel.make_inputs(100, PARAMS))
        t0 = time.monotonic()
        with pytest.raises(MpiError, match="no answer from rank 0 within 1.5 s"):
            backend.run()
        assert time.monotonic() - t0 < 5
        _assert_gone(pids)
    finally:
        backend.close()


@needs_mpi
def test_compare_cli_runs_mpi_cases(tmp_path):
    out = tmp_path / "results.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "gpukit", "compare", "--backends", "serial,mpi",
                           "--sizes", "1024,4096", "--workers", "1,2", "--param", "k=4",
                           "--budget-s", "0.05", "--no-progress", "-o", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    mpi_cases = [c for c in data["cases"] if c["backend"] == "mpi"]
    assert {(c["n"], c["workers"]) for c in mpi_cases} == {(n, w) for n in (1024, 4096)
                                                           for w in (1, 2)}
    assert all(c["status"] == "ok" for c in data["cases"]), [c["reason"] for c in data["cases"]]
    assert data["backends"]["mpi"]["available"]
    sessions = [s for s in data["sessions"] if s["variant"]["backend"] == "mpi"]
    assert sorted(s["startup"]["facts"]["ranks"] for s in sessions) == [1, 2]
    for case in mpi_cases:
        run = case["runs"][0]
        assert math.isclose(sum(run["phases_s"].values()), run["wall_s"], rel_tol=1e-9,
                            abs_tol=1e-12)
        assert "control_channel_s" in run["extra"]
