#!/usr/bin/env bash
# The CPU-only baseline: the default `compare` on this machine, its findings and plots for the
# README (docs/), and the results beside the GPU ones (bench/results/), in one go.
#   bash bench/cpu_baseline.sh NAME     (NAME names the machine in the file names)
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: bash bench/cpu_baseline.sh MACHINE-NAME}
res=bench/results/compare-polyval-$name
python -m gpukit limits --refresh > /dev/null
python -m gpukit compare --no-progress -o "$res.json" > "$res.txt" 2>&1
python -m gpukit report "$res.json" --quiet --plots docs/cpu --markdown docs/cpu-findings.md
rm -f docs/cpu/*.svg  # the README shows the PNGs; the SVGs are a report away
