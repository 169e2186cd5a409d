#!/usr/bin/env bash
# Fill .gpu-wheels/ (ignored by git) with what the GPU test machine lacks and cannot download:
# PyCUDA and its dependencies (built there, kept in ../shared/device-wheels) and gpukit's own
# pure-Python and binary dependencies for its Python (CPython 3.12, x86-64).
# Run here, then name .gpu-wheels in the device call's carry.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu-wheels
grep -qx '/.gpu-wheels/' .git/info/exclude 2>/dev/null || echo '/.gpu-wheels/' >> .git/info/exclude
cp ../shared/device-wheels/*.whl .gpu-wheels/
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d .gpu-wheels rich matplotlib pytest 2> >(grep -v "is ignored" >&2)
# The machine's own NumPy is the one its CuPy was built and tested with: keep it.
rm -f .gpu-wheels/numpy-*.whl
ls .gpu-wheels
du -sh .gpu-wheels
