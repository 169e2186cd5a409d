"""gpukit holds glibc's malloc thresholds steady, so that backends do not differ by history."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gpukit import allocator

glibc = pytest.mark.skipif(allocator._glibc() is None, reason="not glibc: nothing to fix")


@glibc
def test_steady_fixes_both_thresholds_here_and_for_child_processes(monkeypatch):
    for name in allocator.ENV:
        monkeypatch.delenv(name, raising=False)
    facts = allocator.steady()
    assert facts["thresholds_fixed"] is True
    assert facts["mmap_threshold_bytes"] == allocator.MMAP_THRESHOLD_BYTES
    child = subprocess.run([sys.executable, "-c", "import os, json; print(json.dumps("
                            "{k: v for k, v in os.environ.items() if k.startswith('MALLOC_')}))"],
                           capture_output=True, text=True, check=True)
    assert json.loads(child.stdout) == {name: str(v) for name, v in allocator.ENV.items()}


@glibc
def test_steady_keeps_what_the_user_set(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    facts = allocator.steady()
    assert facts["mmap_threshold_bytes"] == 1048576
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == "1048576"


def test_compare_records_the_allocator_and_default_malloc_leaves_it(gpukit_cli, tmp_path):
    args = ("compare", "--backends", "serial", "--impls", "numpy", "--sizes", "1024",
            "--budget-s", "0.01", "--no-progress", "--no-limits")
    env = {name: "" for name in allocator.ENV}  # as if the user had set nothing
    fixed = gpukit_cli(*args, "-o", str(tmp_path / "a.json"), env=env)
    assert fixed.returncode == 0, fixed.stderr
    malloc = json.loads((tmp_path / "a.json").read_text())["machine"]["malloc"]
    left = gpukit_cli(*args, "--default-malloc", "-o", str(tmp_path / "b.json"), env=env)
    assert left.returncode == 0, left.stderr
    assert json.loads((tmp_path / "b.json").read_text())["machine"]["malloc"]["thresholds_fixed"] \
        is False
    if allocator._glibc() is not None:
        assert malloc["thresholds_fixed"] is True
