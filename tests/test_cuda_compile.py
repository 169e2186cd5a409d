"""The CUDA C sources under kernels/, checked without a GPU: nvcc compiles them for the H100, and
polyval.cu, run on the host by an emulator (tests/cuda_on_host.h), matches float32 Horner bit
for bit."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gpukit.kernels import polyval as polyval_module

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "kernels").glob("*.cu"))
NVCC = shutil.which("nvcc")
CXX = shutil.which("g++")

needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")


def test_there_are_cuda_sources():
    assert SOURCES, f"no .cu files under {ROOT / 'kernels'}"


@needs_nvcc
@pytest.mark.parametrize("ftz", [False, True], ids=["nvcc-flags", "cupy-flags"])
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_compiles_for_sm90_without_spills(source, ftz, tmp_path):
    # PyCUDA compiles with nvcc's defaults; CuPy adds -ftz=true. Both must build, warning-free,
    # with nothing spilled to local memory (a spill would sink the FMA-bound loop).
    cmd = [NVCC, "-arch=sm_90", "-cubin", "-std=c++17", "--resource-usage",
           "-Werror", "all-warnings", *(["-ftz=true"] if ftz else []),
           str(source), "-o", str(tmp_path / (source.stem + ".cubin"))]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(cmd)}\n{report}"
    assert (tmp_path / (source.stem + ".cubin")).stat().st_size > 0
    frames = re.findall(
        r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", report)
    assert frames, report
    assert all(f == ("0", "0", "0") for f in frames), report  # every function, not just one


def _define(source: str, name: str) -> int:
    match = re.search(rf"^#define {name} (\d+)\s*$", source, re.MULTILINE)
    assert match, f"#define {name} not found"
    return int(match.group(1))


def test_polyval_launch_constants_match_the_source():
    source = (ROOT / "kernels" / "polyval.cu").read_text()
    assert polyval_module.CUDA_BLOCK == _define(source, "POLYVAL_BLOCK")
    assert polyval_module.CUDA_POINTS_PER_THREAD == _define(source, "POLYVAL_POINTS")
    assert _define(source, "POLYVAL_POINTS") % 4 == 0
    assert _define(source, "POLYVAL_TILE") % 4 == 0


@pytest.mark.skipif(CXX is None, reason="g++ is not on PATH")
def test_polyval_cu_on_host_emulator_matches_horner_bitwise(tmp_path):
    # One std::thread per CUDA thread and a std::barrier per block: the vector and scalar paths,
    # the shared-memory tiles and their barriers, the grid-stride loop and odd n all run for real.
    exe = tmp_path / "polyval_on_host"
    build = subprocess.run(
        [CXX, "-std=c++20", "-O1", "-pthread", "-ffp-contract=off",
         f'-DKERNEL="{ROOT / "kernels" / "polyval.cu"}"',
         str(ROOT / "tests" / "polyval_on_host.cpp"), "-o", str(exe)],
        capture_output=True, text=True, timeout=300)
    if build.returncode != 0 and "barrier" in build.stderr:
        pytest.skip("this g++ has no C++20 <barrier>")
    assert build.returncode == 0, build.stderr
    result = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 mismatches" in result.stdout
