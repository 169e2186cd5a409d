"""The command line as a user runs it: a subprocess, its exit code, its JSON."""

import json
import subprocess

import pytest

from gpukit.commands import parse_count, parse_param_sets, parse_sizes
from gpukit.errors import UsageError


def test_compare_runs_and_writes_versioned_results(gpukit_cli, tmp_path):
    out = tmp_path / "r.json"
    proc = gpukit_cli("compare", "--sizes", "1024,2^14", "--workers", "1,2", "--param", "k=3",
                      "--budget-s", "0.01", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["format"] == "gpukit-results" and data["version"] == 1
    assert data["complete"] is True
    m = data["machine"]
    assert m["cores"] >= 1 and m["numpy"] and isinstance(m["gil_enabled"], bool)
    labels = {(c["label"], c["workers"]) for c in data["cases"]}
    for label in ("serial/numpy", "serial/python", "threads/python", "threads/numpy",
                  "processes/numpy/pickle", "processes/numpy/shm"):
        assert (label, 1) in labels
    assert ("threads/numpy", 2) in labels and ("serial/numpy", 2) not in labels
    for case in data["cases"]:
        assert case["status"] == "ok", case
        assert case["check"]["ok"] and case["check"]["error"] <= case["check"]["tolerance"]
        assert len(case["runs"]) >= 3
        assert case["summary"]["wall_s"]["median"] > 0
        assert case["params"] == {"k": 3}
    # GPU backends are reported with a reason on a machine without one, never silently dropped.
    for name in ("cupy", "pycuda"):
        entry = data["backends"][name]
        assert entry["available"] or entry["reason"]
    starts = {s["startup"]["facts"].get("start_method") for s in data["sessions"]
              if s["variant"]["backend"] == "processes"}
    assert starts and None not in starts and "fork" not in starts
    assert "serial/numpy" in proc.stdout and "results written to" in proc.stdout


def test_backends_lists_each_with_reason(gpukit_cli):
    proc = gpukit_cli("backends")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert set(lines) >= {"serial", "threads", "processes", "cupy", "pycuda"}
    assert "available" in lines["serial"]
    for name in ("cupy", "pycuda"):
        assert "available" in lines[name]  # 'available' or 'unavailable  <reason>'


@pytest.mark.parametrize("args,message", [
    (["compare", "--backends", "serial,gpu"], "unknown backend 'gpu'"),
    (["compare", "--kernel", "nope"], "unknown kernel 'nope'"),
    (["compare", "--sizes", "0"], "size must be positive"),
    (["compare", "--sizes", "ten"], "size must be a positive integer"),
    (["compare", "--sizes", "2^4..2^2"], "needs A <= B"),
    (["compare", "--sizes", "1024,2^-2"], "size must be a positive integer"),
    (["compare", "--sizes", "1e400"], "size '1e400' is too large (at most 2^62)"),
    (["compare", "--sizes", "2^99999999999"], "size '2^99999999999' is too large (at most 2^62)"),
    (["compare", "--sizes", "2^100"], "size '2^100' is too large (at most 2^62)"),
    (["compare", "--sizes", "2^63"], "size '2^63' is too large (at most 2^62)"),
    (["compare", "--workers", "2^-1"], "workers must be a positive integer"),
    (["compare", "--workers", "1,x"],
     "workers must be a positive integer (like 1, 4, 16), got 'x'"),
    (["compare", "--workers", ","], "no worker counts given"),
    (["compare", "--workers", "0"], "workers must be positive"),
    (["compare", "--workers", "1,-2"], "workers must be positive"),
    (["compare", "--param", "k=0"], "k must be >= 1"),
    (["compare", "--param", "k"], "--param takes NAME=V1,V2"),
    (["compare", "--sizes", "2^45"], "GiB of host memory"),
    (["compare", "--budget-s", "-1"], "--budget-s must be a positive"),
    (["compare", "--min-reps", "5", "--max-reps", "2"], "--min-reps <= --max-reps"),
    (["compare", "--chunks-per-worker", "0"], "--chunks-per-worker must be a positive"),
    (["compare", "--nope"], "unrecognized arguments"),
    (["compare", "-o", "."], "is a folder"),
    (["compare", "--backends", "mpi", "--mpi-hostfile", "/no/such/hosts"],
     "MPI host file /no/such/hosts does not exist"),
    (["compare", "--mpi-timeout-s", "0"], "--mpi-timeout-s must be a positive"),
    (["compare", "--csv", "/proc/gpukit/cases.csv"], "cannot write the CSV"),
])
def test_bad_input_is_one_line_and_exit_2(gpukit_cli, tmp_path, args, message):
    proc = gpukit_cli(*args, *(() if "-o" in args else ("-o", str(tmp_path / "never.json"))))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "never.json").exists()


def test_require_gpu_exits_3_without_a_gpu(gpukit_cli, tmp_path):
    from gpukit import kernels, runner
    status = runner.probe_backends(("cupy", "pycuda"), kernels.load("polyval"))
    if any(s["available"] for s in status.values()):
        pytest.skip("a GPU backend is available here")
    proc = gpukit_cli("compare", "--require-gpu", "--sizes", "1024", "-o", str(tmp_path / "r.json"))
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --require-gpu")


def test_fork_refused_beside_a_gpu_backend_or_allowed_without(gpukit_cli, tmp_path):
    proc = gpukit_cli("compare", "--start-method", "fork", "--backends", "serial,processes",
                      "--impls", "numpy", "--sizes", "1024", "--workers", "2", "--budget-s", "0.01",
                      "-o", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert {s["startup"]["facts"]["start_method"] for s in data["sessions"]
            if s["variant"]["backend"] == "processes"} == {"fork"}


def test_results_go_to_a_temporary_file_when_the_output_cannot_be_written_at_the_end(tmp_path):
    from gpukit.commands import compare

    class Results:
        saved = []
        data = {"complete": True}

        def save(self, path):
            if str(path).startswith(str(tmp_path)):
                raise OSError(28, "No space left on device")
            self.saved.append(path)
            return path

    path, error = compare.save_results(Results(), tmp_path / "r.json")
    assert Results.saved == [path] and "gpukit-results-" in str(path)
    assert "No space left on device" in error and str(path) in error


def test_parse_sizes_and_counts():
    assert parse_sizes("2^10..2^16:4") == (1024, 4096, 16384, 65536)
    assert parse_sizes("1024,64k,1e3,2^10") == (1000, 1024, 65536)
    assert parse_count("3m", "size") == 3 * 1024 * 1024
    with pytest.raises(UsageError):
        parse_sizes("1.5")
    with pytest.raises(UsageError):
        parse_sizes(",")


def test_results_file_is_readable_by_others(tmp_path):
    import os
    import stat

    from gpukit.results import Results
    path = Results({}, {}).save(tmp_path / "r.json")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_ctrl_c_saves_what_was_measured_and_exits_130_without_tracebacks(tmp_path):
    # A terminal's Ctrl-C signals the whole process group: gpukit and its pool workers.
    import os
    import signal
    import sys
    import time
    from conftest import ROOT
    out = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpukit", "compare", "--backends", "serial,processes",
         "--impls", "numpy", "--sizes", "2^16..2^24", "--workers", "1,2",
         "--budget-s", "0.5", "-o", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Until the second size starts: the pools are up and busy, the sweep takes well over 10 s.
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("measuring n=2^17"):
            break
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=120)
    stderr = "".join(seen) + stderr
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    data = json.loads(out.read_text())
    assert data["complete"] is False


def test_the_same_param_twice_adds_its_values(gpukit_cli, tmp_path):
    from gpukit import kernels
    polyval = kernels.load("polyval")
    assert parse_param_sets(polyval, ["k=2", "k=4,2"]) == ({"k": 2}, {"k": 4})
    out = tmp_path / "r.json"
    proc = gpukit_cli("compare", "--backends", "serial", "--impls", "numpy", "--sizes", "1024",
                      "--workers", "1", "--param", "k=2", "--param", "k=4", "--budget-s", "0.01",
                      "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(c["params"]["k"] for c in json.loads(out.read_text())["cases"]) == [2, 4]


def test_a_run_interrupted_before_any_case_finished_says_so(tmp_path, monkeypatch, capsys):
    from gpukit import cli, runner

    def interrupted_at_once(self, availability):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner.Runner, "run", interrupted_at_once)
    monkeypatch.setenv("GPUKIT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    code = cli.main(["compare", "--backends", "serial", "--sizes", "1024", "--workers", "1",
                     "--no-progress", "-o", str(out)])
    assert code == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("0 cases measured (interrupted) in ") and str(out) in last
    assert json.loads(out.read_text())["cases"] == []


def test_compare_measures_ceilings_once_where_none_are_stored(gpukit_cli, tmp_path):
    env = {"GPUKIT_CACHE_DIR": str(tmp_path / "cache")}
    args = ("compare", "--backends", "serial", "--impls", "numpy", "--sizes", "1024",
            "--budget-s", "0.01", "--no-progress")
    skipped = gpukit_cli(*args, "--no-limits", "-o", str(tmp_path / "n.json"), env=env)
    assert skipped.returncode == 0, skipped.stderr
    assert "No ceilings stored" not in skipped.stderr and not (tmp_path / "cache").exists()
    assert "ceilings" not in json.loads((tmp_path / "n.json").read_text())
    assert "`gpukit limits` measures this machine's" in skipped.stdout

    first = gpukit_cli(*args, "-o", str(tmp_path / "a.json"), env=env)
    assert first.returncode == 0, first.stderr
    assert "No ceilings stored for this machine: measuring them once" in first.stderr
    stored = json.loads((tmp_path / "a.json").read_text())["ceilings"]
    assert stored["settings"]["quick"] is True and stored["figures"]["host_copy_1t_gbps"] > 0
    assert "from `gpukit limits` --quick" in first.stdout

    again = gpukit_cli(*args, "-o", str(tmp_path / "b.json"), env=env)
    assert again.returncode == 0, again.stderr
    assert "No ceilings stored" not in again.stderr
    assert json.loads((tmp_path / "b.json").read_text())["ceilings"]["figures"] == \
        stored["figures"]


def test_compare_help_groups_its_options_and_shows_examples(gpukit_cli):
    result = gpukit_cli("compare", "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    groups = ["what to run:", "the sweep:", "repetitions and limits:", "MPI:", "output:",
              "examples:", "exit status:"]
    at = [text.index(g) for g in groups]
    assert at == sorted(at), "the groups come in this order"
    # Each option's default is said in its help, not left to the reader to guess.
    assert "(default: 0.1)" in text and "(default: 600)" in text
    assert "gpukit compare --kernel softplus.py:softplus" in text
