"""An installed gpukit, not only a checkout, must find its CUDA sources."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_every_cuda_source(tmp_path):
    pytest.importorskip("hatchling", reason="hatchling builds the wheel (pip install '.[test]')")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("gpukit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = sorted(p.name for p in (ROOT / "kernels").glob("*.cu"))
    assert sources
    for name in sources:
        assert f"gpukit/cuda/{name}" in names
    # Installed elsewhere and run from elsewhere, it finds them inside the package.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    probe = subprocess.run(
        [sys.executable, "-c", "from gpukit.kernels import load; k = load('polyval');"
         "from gpukit.kernels.base import cuda_source_path as p; print(p(k.cuda_file))"],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(target)}, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(target)
