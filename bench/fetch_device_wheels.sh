#!/usr/bin/env bash
# Fill .gpu-wheels/ (ignored by git) with what the GPU test machine lacks and cannot download:
# PyCUDA and its dependencies, built for it and kept in the team's shared folder beside this
# checkout (device-wheels/). The machine's
# image already has gpukit's other needs (NumPy, CuPy, rich, matplotlib, pytest, mpi4py), and
# its own NumPy is the one its CuPy was built against, so nothing else travels.
# Run here, then name .gpu-wheels in the device call's carry.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu-wheels
grep -qx '/.gpu-wheels/' .git/info/exclude 2>/dev/null || echo '/.gpu-wheels/' >> .git/info/exclude
rm -f .gpu-wheels/*.whl
cp ../shared/device-wheels/*.whl .gpu-wheels/
ls .gpu-wheels
du -sh .gpu-wheels
