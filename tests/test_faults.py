"""The fault campaign: what a user meets (a hung kernel, Ctrl-C, SIGTERM, a full disk, a killed
worker, damaged files, bad values), injected through the command line as a user would, each
checked for the same promises:

- the exit status says what happened (2 only for bad input, found before anything ran);
- one `error:` line, and no traceback;
- the results file loads and holds every case measured before the fault;
- no process of the run is left alive (found by a tag in their environment, which pool
  workers, the forkserver, the resource tracker and MPI ranks all inherit);
- no shared memory block or semaphore of the run is left in /dev/shm (gpukit names them after
  its process id).

The misbehaving kernel is tests/data/fault_kernel.py, told by GPUKIT_FAULT what to do.
Sizes, budgets and timeouts are tiny: the whole file runs in about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import ROOT

from gpukit import results as results_module

KERNEL = f"{ROOT}/tests/data/fault_kernel.py:Faulty"
TAG = "GPUKIT_FAULT_TEST_TAG"
SMALL = ROOT / "tests" / "data" / "cpu-small.json"  # a complete results file


def has_mpi() -> bool:
    from gpukit.backends.mpi_backend import MpiBackend
    from gpukit.errors import BackendUnavailable
    try:
        MpiBackend.check_available()
    except BackendUnavailable:
        return False
    return True


needs_mpi = pytest.mark.skipif(not has_mpi(), reason="mpi4py or mpiexec is not installed")


# -- running gpukit as a user does ---------------------------------------------------------------


class Run:
    """`python -m gpukit ARGS` in a subprocess, tagged so that its processes can be found."""

    def __init__(self, tmp_path: Path, *args, fault: str | None = None, env=None,
                 file_size_limit: int | None = None):
        self.tag = uuid.uuid4().hex
        self.ready = tmp_path / f"ready-{self.tag}"
        (tmp_path / "tmp").mkdir(exist_ok=True)
        full = dict(os.environ)
        full.pop("GPUKIT_FAULT", None)
        full.update({"PYTHONPATH": str(ROOT) + os.pathsep + full.get("PYTHONPATH", ""),
                     TAG: self.tag, "GPUKIT_FAULT_READY": str(self.ready),
                     # The fallback for results that cannot be written where asked.
                     "TMPDIR": str(tmp_path / "tmp")})
        if fault:
            full["GPUKIT_FAULT"] = fault
        full.update(env or {})

        def limit():
            if file_size_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        self.proc = subprocess.Popen([sys.executable, "-m", "gpukit", *map(str, args)], cwd=ROOT,
                                     env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, preexec_fn=limit)
        self.signalled_at = None

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Until the fault kernel has fired: the run is inside a case."""
        deadline = time.monotonic() + timeout_s
        while not self.ready.exists():
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the fault never fired"
            time.sleep(0.02)

    def send(self, signum: int) -> None:
        self.signalled_at = time.monotonic()
        self.proc.send_signal(signum)

    def finish(self, timeout_s: float = 120):
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout_s)
        self.stopped_in_s = (time.monotonic() - self.signalled_at
                             if self.signalled_at is not None else None)
        return self.proc.returncode


# The case timeout of the tests that hang a case: long enough for any legitimate case of these
# tiny sweeps on a busy 2-core machine (a pool's start included), short enough to wait for.
HANG_S = 3


def compare(out: Path, *more, backends="serial", sizes="1024,2048", impls="python",
            params="p=1", timeout_s=120):
    return ["compare", "--kernel", KERNEL, "--backends", backends, "--impls", impls, "--sizes",
            sizes, "--param", params, "--workers", "1", "--budget-s", "0.005", "--min-reps", "1",
            "--max-reps", "2", "--case-timeout-s", timeout_s, "--no-limits", "--no-progress",
            "-o", out, *more]


# -- what every fault must leave ------------------------------------------------------------------


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tagged(tag: str) -> list[int]:
    """Live processes whose environment holds the run's tag."""
    needle = f"{TAG}={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0") and _running(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def ipc_objects(pid: int) -> list[str]:
    return [name for name in os.listdir("/dev/shm") if f"gpukit-{pid}-" in name]


def check(run: Run, status: int, *words: str, results: Path | None = None,
          complete: bool | None = None, before: int = 0, errors: int = 1) -> dict | None:
    """The promises of every fault; returns the results file's data where one is expected."""
    code = run.finish()
    report = f"exit {code}\nstdout tail: {run.stdout[-1500:]}\nstderr: {run.stderr[-3000:]}"
    assert code == status, report
    assert "Traceback" not in run.stderr + run.stdout, report
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == errors, report
    for word in words:
        assert word in lines[0], report
    # The forkserver and the resource tracker end as soon as gpukit has: give them a moment.
    deadline = time.monotonic() + 10
    while tagged(run.tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tagged(run.tag) == [], "processes of the run are still alive"
    assert ipc_objects(run.proc.pid) == [], "shared memory or semaphores left in /dev/shm"
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"*{run.proc.pid}*.tmp"))
    if results is None:
        return None
    data = results_module.load(results)
    if complete is not None:
        assert data["complete"] is complete, report
    assert len(data["cases"]) >= before, report
    return data


def by_key(data: dict) -> dict:
    return {(c["label"], c["params"]["p"], c["n"]): c for c in data["cases"]}


# -- a hung case, on every backend ----------------------------------------------------------------

HUNG = [("serial", "python"), ("threads", "python"), ("processes", "python"),
        pytest.param("mpi", "numpy", marks=needs_mpi)]


@pytest.mark.parametrize("backend,impl", HUNG)
def test_a_hung_case_fails_its_session_starts_again_and_the_sweep_goes_on(tmp_path, backend,
                                                                           impl):
    out = tmp_path / "r.json"
    run = Run(tmp_path, *compare(out, backends=backend, impls=impl, sizes="1024,2048,4096",
                                 params="p=1,2", timeout_s=HANG_S), fault=f"hang:{impl}:2048")
    data = check(run, 1, "case(s) failed", results=out, complete=True)
    cases = by_key(data)
    assert len(data["cases"]) == len({(c["label"]) for c in data["cases"]}) * 6
    hung = [c for c in data["cases"] if c["n"] == 2048 and c["params"]["p"] == 1]
    assert hung and all(c["status"] == "failed" and
                        f"did not finish within {HANG_S} s" in c["reason"] for c in hung)
    for c in hung:
        # Its series stops; the other series of the same session goes on, in a new session.
        assert cases[(c["label"], 1, 4096)]["status"] == "skipped"
        first, last = cases[(c["label"], 2, 1024)], cases[(c["label"], 2, 4096)]
        assert first["status"] == last["status"] == "ok"
        assert last["session"] != first["session"]
    assert all(c["status"] == "ok" for c in data["cases"] if c["n"] == 1024)


# -- a worker or a rank killed; a kernel raising anything -----------------------------------------


def test_a_killed_pool_worker_fails_its_case_and_a_new_pool_runs_the_rest(tmp_path):
    out = tmp_path / "r.json"
    run = Run(tmp_path, *compare(out, backends="processes", sizes="1024,2048,4096",
                                 params="p=1,2"), fault="kill:python:2048")
    data = check(run, 1, "case(s) failed", results=out, complete=True)
    killed = [c for c in data["cases"] if c["status"] == "failed"]
    assert len(killed) == 2 and all("BrokenProcessPool" in c["reason"] for c in killed)
    assert all(c["status"] == "ok" for c in data["cases"] if c["params"]["p"] == 2)


@needs_mpi
def test_a_killed_mpi_rank_fails_its_case_and_a_new_job_runs_the_rest(tmp_path):
    out = tmp_path / "r.json"
    run = Run(tmp_path, *compare(out, backends="mpi", impls="numpy", sizes="1024,2048,4096",
                                 params="p=1,2"), fault="kill:numpy:2048")
    data = check(run, 1, "case(s) failed", results=out, complete=True)
    (killed,) = [c for c in data["cases"] if c["status"] == "failed"]
    assert "MPI job ended" in killed["reason"]
    assert all(c["status"] == "ok" for c in data["cases"] if c["params"]["p"] == 2)


@pytest.mark.parametrize("mode,backend,words", [
    ("exit", "serial", "SystemExit: 4"),
    ("exit", "threads", "SystemExit: 4"),
    ("interrupt", "processes", "KeyboardInterrupt"),
])
def test_a_kernel_raising_systemexit_or_keyboardinterrupt_fails_only_its_case(
        tmp_path, mode, backend, words):
    out = tmp_path / "r.json"
    run = Run(tmp_path, *compare(out, backends=backend, sizes="1024,2048,4096", params="p=1,2"),
              fault=f"{mode}:python:2048")
    data = check(run, 1, "case(s) failed", results=out, complete=True)
    failed = [c for c in data["cases"] if c["status"] == "failed"]
    assert failed and all(words in c["reason"] for c in failed)
    assert len(data["cases"]) == 6 * len({c["label"] for c in data["cases"]})


# -- signals mid-case ------------------------------------------------------------------------------

SIGNALS = [
    (signal.SIGINT, 130, "interrupted", "threads", "python"),
    (signal.SIGTERM, 143, "terminated", "processes", "python"),
    pytest.param(signal.SIGHUP, 129, "hung up", "mpi", "numpy", marks=needs_mpi),
]


@pytest.mark.parametrize("signum,status,word,backend,impl", SIGNALS)
def test_a_signal_mid_case_saves_what_was_measured_and_ends_every_process(
        tmp_path, signum, status, word, backend, impl):
    out = tmp_path / "r.json"
    run = Run(tmp_path, *compare(out, backends=backend, impls=impl), fault=f"hang:{impl}:2048")
    run.wait_ready()
    if backend != "threads":
        # The detectors see the run's processes (pool worker or ranks, and their helpers) and
        # the pool's semaphores.
        assert len(tagged(run.tag)) >= 2
        assert backend != "processes" or ipc_objects(run.proc.pid)
    run.send(signum)
    data = check(run, status, word, "measured so far are saved in", str(out), results=out,
                 complete=False)
    assert run.stopped_in_s < 2.0  # 0.1 to 0.2 s on the 2-core machine
    assert data["note"] == word
    assert {c["n"] for c in data["cases"] if c["status"] == "ok"} >= {1024}
    assert all(c["status"] == "ok" for c in data["cases"] if c["n"] == 1024)


def test_an_interrupted_run_never_replaces_a_complete_results_file(tmp_path):
    out = tmp_path / "r.json"
    shutil.copy(SMALL, out)
    kept = out.read_bytes()
    run = Run(tmp_path, *compare(out), fault="hang:python:2048")
    run.wait_ready()
    run.send(signal.SIGINT)
    beside = tmp_path / "r.incomplete.json"
    data = check(run, 130, str(beside), f"{out} holds a complete run and was kept",
                 results=beside, complete=False, before=1)
    assert out.read_bytes() == kept
    assert data["cases"][0]["n"] == 1024 and data["cases"][0]["status"] == "ok"


# -- writing results -------------------------------------------------------------------------------


def test_a_save_that_fails_everywhere_says_where_it_tried_and_leaves_nothing(tmp_path):
    out = tmp_path / "r.json"
    # `ulimit -f 1`: every file gpukit writes stops at 1 KiB, and a results file is larger.
    run = Run(tmp_path, *compare(out, sizes="1024"), file_size_limit=1024)
    check(run, 4, "could not save the results anywhere: tried", str(out), "File too large",
          str(tmp_path / "tmp"))
    assert not out.exists()
    assert not list(tmp_path.rglob("*.tmp")) and not list((tmp_path / "tmp").iterdir())


def test_results_go_to_the_temporary_folder_when_the_output_folder_is_gone(tmp_path):
    folder = tmp_path / "out"
    out = folder / "r.json"
    run = Run(tmp_path, *compare(out, timeout_s=HANG_S), fault="hang:python:2048")
    run.wait_ready()
    shutil.rmtree(folder)
    folder.write_text("a file where the folder was\n")
    fallback = tmp_path / "tmp" / f"gpukit-results-{run.proc.pid}.json"
    check(run, 4, f"could not write {out}", f"the results are in {fallback}", results=fallback,
          complete=True, before=2)


def test_a_csv_that_cannot_be_written_after_measuring_is_not_bad_input(tmp_path):
    out, folder = tmp_path / "r.json", tmp_path / "csv"
    run = Run(tmp_path, *compare(out, "--csv", folder / "t.csv", timeout_s=HANG_S),
              fault="hang:python:2048")
    run.wait_ready()
    shutil.rmtree(folder)
    folder.write_text("a file where the folder was\n")
    check(run, 4, "cannot write the CSV", f"the results are in {out}", results=out,
          complete=True, before=2)


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _socket(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return path


def _link_to_fifo(path: Path) -> Path:
    path.symlink_to(_fifo(path.with_name("pipe")))
    return path


@pytest.mark.parametrize("make,words", [
    (_fifo, "is a FIFO, not a regular file: refused"),
    (_socket, "is a socket, not a regular file: refused"),
    (_link_to_fifo, "is a symlink to"),
])
def test_output_that_is_not_a_regular_file_is_refused_before_measuring(tmp_path, make, words):
    out = make(tmp_path / "r.json")
    run = Run(tmp_path, *compare(out), fault="hang:python:1024")
    check(run, 2, words)
    assert not run.ready.exists()  # nothing ran
    assert not out.is_file()


def test_results_are_written_through_a_symlink_to_its_target(tmp_path):
    target, link = tmp_path / "real.json", tmp_path / "r.json"
    target.write_text("an old file, replaced as any regular file is\n")
    link.symlink_to(target)
    run = Run(tmp_path, *compare(link, sizes="1024"))
    check(run, 0, results=target, complete=True, before=1, errors=0)
    assert link.is_symlink() and f"{link} is a symlink: the results go to its target" in \
        run.stderr


# -- bad values, before anything runs --------------------------------------------------------------


@pytest.mark.parametrize("option,value,words", [
    ("--seed", "-1", "--seed must be 0 or more"),
    ("--sizes", "", "no sizes given"),
    ("--workers", "", "no worker counts given"),
    ("--backends", "", "no backend given"),
    ("--case-timeout-s", "nan", "--case-timeout-s must be a positive number"),
])
def test_bad_values_are_caught_before_anything_runs(tmp_path, option, value, words):
    out = tmp_path / "r.json"
    run = Run(tmp_path, *compare(out), "--dry-run", option, value, fault="hang:any:1024")
    check(run, 2, words)
    assert not out.exists() and not run.ready.exists()


# -- damaged files of every kind gpukit reads ------------------------------------------------------

GARBAGE = bytes(range(256)) * 4


def _machine_cache(tmp_path: Path, machine: dict | None = None) -> Path:
    """The cache file gpukit reads for this machine (or `machine`), with GPUKIT_CACHE_DIR set
    to tmp_path/cache by the caller."""
    from gpukit import ceilings
    from gpukit import machine as machine_facts
    path = ceilings.cache_path(machine if machine is not None else machine_facts.facts())
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_a_damaged_ceilings_cache_is_ignored_with_a_warning_and_measured_again(tmp_path,
                                                                               monkeypatch):
    from gpukit import ceilings
    monkeypatch.setenv("GPUKIT_CACHE_DIR", str(tmp_path / "cache"))
    cache = _machine_cache(tmp_path)
    cache.write_bytes(GARBAGE)
    out = tmp_path / "r.json"
    args = [a for a in compare(out, sizes="1024") if a != "--no-limits"]
    run = Run(tmp_path, *args, env={"GPUKIT_CACHE_DIR": str(tmp_path / "cache")})
    data = check(run, 0, results=out, complete=True, before=1, errors=0)
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "not JSON; ignored, measured again" in warnings[0]
    assert ceilings.load(path=cache)["figures"] == data["ceilings"]["figures"]


def test_a_damaged_ceilings_cache_with_no_limits_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUKIT_CACHE_DIR", str(tmp_path / "cache"))
    _machine_cache(tmp_path).write_text("[1, 2, 3]\n")
    out = tmp_path / "r.json"
    run = Run(tmp_path, *compare(out, sizes="1024"),
              env={"GPUKIT_CACHE_DIR": str(tmp_path / "cache")})
    data = check(run, 0, results=out, complete=True, before=1, errors=0)
    assert "warning:" in run.stderr and "ceilings" not in data


def test_report_warns_of_a_damaged_cache_and_reports_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUKIT_CACHE_DIR", str(tmp_path / "cache"))
    data = json.loads(SMALL.read_text())
    cache = _machine_cache(tmp_path, data["machine"])
    cache.write_text(json.dumps({"format": "gpukit-ceilings", "version": 1, "machine": {},
                                 "figures": "fast"}))
    run = Run(tmp_path, "report", SMALL, "--quiet",
              env={"GPUKIT_CACHE_DIR": str(tmp_path / "cache")})
    check(run, 0, errors=0)
    assert "warning:" in run.stderr and "figures should be an object" in run.stderr


CEILINGS = {
    "random bytes": GARBAGE,
    "a JSON list": b"[1, 2]",
    "figures as a string": json.dumps({"format": "gpukit-ceilings", "version": 1,
                                       "figures": "fast"}).encode(),
    "a broken curve": json.dumps({"format": "gpukit-ceilings", "version": 1, "figures": {},
                                  "curves": {"pickle": {"sizes_bytes": [1, 2],
                                                        "gbps": [0.5]}}}).encode(),
}


@pytest.mark.parametrize("damage", [*CEILINGS, "a FIFO"])
def test_report_refuses_a_damaged_ceilings_file_in_one_line(tmp_path, damage):
    path = tmp_path / "ceilings.json"
    _fifo(path) if damage == "a FIFO" else path.write_bytes(CEILINGS[damage])
    run = Run(tmp_path, "report", SMALL, "--ceilings", path)
    check(run, 2, str(path))


def _results_damage(tmp_path: Path, damage: str) -> Path:
    path = tmp_path / "bad.json"
    text = SMALL.read_text()
    if damage == "a FIFO":
        _fifo(path)
    elif damage == "random bytes":
        path.write_bytes(GARBAGE)
    elif damage == "truncated":
        path.write_text(text[:len(text) // 2])
    elif damage == "a JSON list":
        path.write_text("[]")
    elif damage == "damaged ceilings inside":
        path.write_text(json.dumps({**json.loads(text), "ceilings": {"figures": [1]}}))
    return path


RESULTS_DAMAGE = ["random bytes", "truncated", "a JSON list", "a FIFO",
                  "damaged ceilings inside"]


@pytest.mark.parametrize("damage", RESULTS_DAMAGE)
def test_report_and_diff_refuse_a_damaged_results_file_in_one_line(tmp_path, damage):
    path = _results_damage(tmp_path, damage)
    command = ("report", path) if damage in RESULTS_DAMAGE[::2] else ("diff", SMALL, path)
    run = Run(tmp_path, *command)
    check(run, 2, str(path))


@pytest.mark.parametrize("content,words", [
    (GARBAGE, "importing kernel file"),
    (b"raise SystemExit(3)\n", "SystemExit: 3"),
    (b"raise KeyboardInterrupt\n", "KeyboardInterrupt"),
    (None, "is not a regular file"),
])
def test_a_damaged_kernel_file_is_one_line_and_exit_2(tmp_path, content, words):
    path = tmp_path / "kernel.py"
    _fifo(path) if content is None else path.write_bytes(content)
    out = tmp_path / "r.json"
    args = compare(out)
    args[args.index("--kernel") + 1] = f"{path}:K"
    run = Run(tmp_path, *args)
    check(run, 2, words)
    assert not out.exists()


def test_sigterm_while_the_ceilings_are_measured_ends_that_child_and_its_pools(tmp_path):
    out = tmp_path / "r.json"
    args = [a for a in compare(out, sizes="1024") if a != "--no-limits"]
    run = Run(tmp_path, *args, env={"GPUKIT_CACHE_DIR": str(tmp_path / "empty-cache")})
    for line in run.proc.stderr:
        if line.startswith("No ceilings stored"):
            break
    deadline = time.monotonic() + 30
    while len(tagged(run.tag)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # gpukit, the `limits` child and a pool of its
    assert len(tagged(run.tag)) >= 3
    run.send(signal.SIGTERM)
    check(run, 143, "terminated")
    assert not out.exists()  # nothing was measured


def test_a_thread_that_never_ends_cannot_hold_gpukit_at_exit(tmp_path):
    # What a pool's thread does when a worker gpukit killed had sent half a result: it waits
    # for the rest for ever, and Python waits for it at exit.
    code = ("import threading\n"
            "from gpukit.cli import _leave_if_held\n"
            "threading.Thread(target=threading.Event().wait).start()\n"
            "print('everything saved and said', flush=True)\n"
            "_leave_if_held(4, wait_s=0.2)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 4 and proc.stdout == "everything saved and said\n", proc.stderr
