"""The scripts under bench/ run on the GPU machine, where each call costs device time: they must
at least parse and start here."""

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


@pytest.mark.parametrize("stages", [["nope"], ["limits", "nope"], ["bench", "kernel"]])
def test_gpu_checks_refuses_an_unknown_stage_before_doing_anything(tmp_path, stages):
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_checks.sh"), *stages],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")})
    assert proc.returncode == 2 and f"unknown stage {stages[-1]}" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing installed, made or measured


def test_gpu_checks_runs_shell_functions_through_bash():
    # `timeout` runs programs, not shell functions: a step given a function name fails (rc 127).
    text = (ROOT / "bench" / "gpu_checks.sh").read_text()
    functions = set(re.findall(r"^(\w+)\(\) \{", text, re.MULTILINE))
    for line in re.findall(r"^\s*(?:cap=\d+ )?step \S+ (\S+)", text, re.MULTILINE):
        assert line not in functions, f"step runs the shell function {line} directly"


@pytest.mark.parametrize("script", PYTHON_SCRIPTS, ids=lambda p: p.name)
def test_python_script_imports_and_shows_its_help(script):
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout
