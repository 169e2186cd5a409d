"""Array-namespace functions on a real GPU through CuPy: each shape of examples/array_kernels.py
on both memory kinds against its float64 reference, and `compare` naming PyCUDA unavailable.
Skips, with the backend's own reason, where CuPy or a device is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpukit import backends, kernels, phases
from gpukit.errors import BackendUnavailable

pytestmark = pytest.mark.gpu
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "array_kernels.py"


@pytest.fixture(scope="module")
def cupy_backend():
    cls = backends.get("cupy")
    try:
        cls.check_available()
    except BackendUnavailable as exc:
        pytest.skip(f"cupy: {exc}")
    return cls


@pytest.mark.parametrize("func", ["softplus", "row_stats", "zscore"])
@pytest.mark.parametrize("memory", ["pageable", "pinned"])
def test_each_shape_runs_under_cupy_and_matches_its_reference(cupy_backend, func, memory):
    kernel = kernels.load(f"{EXAMPLE}:{func}")
    variant = next(v for v in cupy_backend.variants(kernel) if v.option("memory") == memory)
    session = cupy_backend(variant, 1, {"compile_cold": False})
    session.open()
    try:
        inputs = kernel.make_inputs(1 << 20, {})
        prepared = session.prepare(kernel, {}, inputs)
        assert prepared.steps_s["first_call"] > 0
        for _ in range(2):
            out, timing = session.run()
            check = kernel.check(out, kernel.reference(inputs, {}), inputs, {})
            assert check.ok, check
            assert all(timing.device_s[p] > 0 for p in phases.RUN_PHASES)
    finally:
        session.close()


def test_compare_runs_the_function_on_cupy_and_names_pycuda_unavailable(cupy_backend,
                                                                        gpukit_cli, tmp_path):
    output = tmp_path / "gpu.json"
    result = gpukit_cli("compare", "--kernel", f"{EXAMPLE}:softplus", "--backends",
                        "serial,cupy,pycuda", "--sizes", "4096,1048576", "--budget-s", "0.05",
                        "--no-progress", "-o", str(output))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(output.read_text())
    assert {c["label"] for c in data["cases"] if c["backend"] == "cupy"} == {
        "cupy/xp/pageable", "cupy/xp/pinned"}
    assert all(c["status"] == "ok" and c["check"]["ok"] for c in data["cases"])
    assert "runs CUDA C only" in data["backends"]["pycuda"]["reason"] \
        or "not installed" in data["backends"]["pycuda"]["reason"]
