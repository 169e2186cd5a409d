"""The scripts under bench/ run on the GPU machine, where each call costs device time: they must
at least parse and start here."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHELL_SCRIPTS = sorted((ROOT / "bench").glob("*.sh"))
PYTHON_SCRIPTS = sorted((ROOT / "bench").glob("*.py"))


def test_there_are_bench_scripts():
    assert {p.name for p in SHELL_SCRIPTS} >= {"gpu_checks.sh", "fetch_device_wheels.sh",
                                               "cpu_baseline.sh"}
    assert {p.name for p in PYTHON_SCRIPTS} >= {"gpu_bench.py", "limits_gpu_check.py"}


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_script_parses(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("stages", [["nope"], ["limits", "nope"], ["bench", "kernels"]])
def test_gpu_checks_refuses_an_unknown_stage_before_doing_anything(tmp_path, stages):
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_checks.sh"), *stages],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")})
    assert proc.returncode == 2 and f"unknown stage {stages[-1]}" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing installed, made or measured


def test_gpu_checks_runs_its_stage_functions_through_bash():
    # `timeout` runs programs, not shell functions: each stage runs as `bash -c FUNCTION`, which
    # sees the function only if it is exported.
    text = (ROOT / "bench" / "gpu_checks.sh").read_text()
    functions = set(re.findall(r"^(\w+)\(\) \{", text, re.MULTILINE))
    exported = set(re.search(r"^export -f (.+)$", text, re.MULTILINE).group(1).split())
    stages = re.search(r"^STAGES=\((.+)\)$", text, re.MULTILINE).group(1).split()
    assert {s if s != "compare" else "compare_polyval" for s in stages} <= exported <= functions


def gpu_checks(*args, env=None, timeout=120):
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu_checks.sh"), *args],
                          capture_output=True, text=True, timeout=timeout, env=full)


def test_gpu_checks_dry_run_is_a_line_a_stage_and_a_total_that_fits_one_call():
    proc = gpu_checks("--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    stages = [line.split()[0] for line in lines[:-1]]
    assert stages == ["facts", "tests", "limits", "bench", "compare", "extra"]
    limits = {line.split()[0]: int(re.search(r"(\d+) s", line).group(1)) for line in lines[:-1]}
    assert limits == {"facts": 20, "tests": 90, "limits": 45, "bench": 120, "compare": 120,
                      "extra": 25}
    total = int(re.fullmatch(r"total: (\d+) s", lines[-1]).group(1))
    assert sum(limits.values()) == total <= 420


SLOW_PYTHON = """#!/bin/sh
# Stands in for python3: starts measuring, and on SIGINT saves and stops, as gpukit does.
echo started > "$STAGE_DIR/started.txt"
trap 'echo saved > "$STAGE_DIR/saved.txt"; exit 130' INT
sleep 60 &
wait
"""


def test_gpu_checks_cuts_a_stage_at_its_limit_and_names_what_did_not_run(tmp_path):
    # Six seconds in all, and a python3 that would take a minute: limits gets the six seconds,
    # is interrupted (and saves), and nothing is left for facts.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python3").write_text(SLOW_PYTHON)
    (tmp_path / "bin" / "python3").chmod(0o755)
    out = tmp_path / "out"
    proc = gpu_checks("limits", "facts", env={
        "OUT": str(out), "GPUKIT_CHECKS_TOTAL_S": "6",
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    summary = (out / "summary.txt").read_text().splitlines()
    assert proc.returncode == 0, proc.stderr
    assert summary[0] == f"limits: CUT at its limit of 6 s (what it saved is in {out / 'limits'})"
    assert (out / "limits" / "saved.txt").exists()  # SIGINT reached the command: it saved
    assert summary[1].startswith("facts: NOT RUN, out of time"), summary
    assert summary[2].startswith("total: ")
    assert {line.split(":")[0] for line in summary[3:]} == {"tests", "bench", "compare", "extra"}
    assert all(line.endswith("not run (not asked for)") for line in summary[3:])
    assert not (out / "facts" / "log.txt").exists()


CURAND_PYTHON = """#!/bin/sh
# Stands in for python3 on a machine where PyCUDA's libcurand is only in CuPy's nvidia wheels.
case "$*" in
    "-c import pycuda.driver"*)
        case ":$LD_LIBRARY_PATH:" in
            *":$FAKE_LIBS:"*) case "$*" in *"imports now"*) echo "pycuda: imports now" ;; esac
                              exit 0 ;;
        esac
        echo "ImportError: libcurand.so.10: cannot open shared object file" >&2
        exit 1 ;;
    -) cat > /dev/null; echo "$FAKE_LIBS" ;;
    *) echo "$LD_LIBRARY_PATH" > "$STAGE_DIR/ld-library-path.txt" ;;
esac
"""


def test_gpu_checks_puts_the_python_packages_cuda_libraries_on_the_loader_path(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python3").write_text(CURAND_PYTHON)
    (tmp_path / "bin" / "python3").chmod(0o755)
    out, libs = tmp_path / "out", "/site/nvidia/curand/lib:/site/nvidia/cuda_runtime/lib"
    proc = gpu_checks("facts", "tests", env={
        "OUT": str(out), "FAKE_LIBS": libs, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    log = (out / "facts" / "log.txt").read_text()
    assert f"LD_LIBRARY_PATH now has {libs}" in log and "pycuda: imports now" in log
    # Every later stage runs with it.
    assert (out / "tests" / "ld-library-path.txt").read_text().startswith(libs)


def limits_json(tmp_path, device, figures):
    path = tmp_path / "limits.json"
    path.write_text(json.dumps({"machine": {"gpu": {"device": device}}, "figures": figures,
                                "missing": {}, "settings": {"measured_at": "now"}}))
    return path


def test_limits_check_holds_figures_only_against_the_same_card_model(tmp_path):
    check = [sys.executable, str(ROOT / "bench" / "limits_gpu_check.py"), "--from"]
    h200 = limits_json(tmp_path, "NVIDIA H200", {"d2d_gbps": 3900.0, "fma_gflops": 61000.0})
    proc = subprocess.run([*check, str(h200)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no reference ceilings for a NVIDIA H200" in proc.stdout
    assert "OUTSIDE" not in proc.stdout and "3900" in proc.stdout
    h100 = limits_json(tmp_path, "NVIDIA H100 80GB HBM3", {"d2d_gbps": 3900.0})
    proc = subprocess.run([*check, str(h100)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "device-to-device copy, 1 GiB" in proc.stdout and "OUTSIDE +-5%" in proc.stdout


@pytest.mark.parametrize("script", PYTHON_SCRIPTS, ids=lambda p: p.name)
def test_python_script_imports_and_shows_its_help(script):
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout
