"""For rehearsing bench/gpu_checks.sh on a machine without a GPU, never on one with a GPU.

Python imports a `sitecustomize` module from its path at start-up: with this folder on
PYTHONPATH, every Python the script starts (pytest, gpukit, gpu_bench.py, their workers) finds
the host fakes of CuPy and PyCUDA (tests/gpu_fakes.py) in place of the libraries, on one fake
device per process, so that the stages run their GPU code paths. The fakes run the kernels'
CUDA C on the host, a thread per CUDA thread: only small sizes finish (GPUKIT_CHECKS_SMALL=1).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/

try:
    import gpu_fakes

    gpu_fakes.install_globally()
except Exception as exc:  # a broken fake must not stop Python from starting
    print(f"fake GPU site: not installed: {type(exc).__name__}: {exc}", file=sys.stderr)
