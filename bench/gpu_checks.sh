#!/usr/bin/env bash
# Every GPU check of gpukit in one device call of at most 420 s, the most needed first.
#
# Here, once:    bash bench/fetch_device_wheels.sh     (fills the ignored .gpu-wheels/ with PyCUDA)
# On the device: bash bench/gpu_checks.sh               (carry: [".gpu-wheels"])
#                bash bench/gpu_checks.sh STAGE...      (only those, e.g. one to run again)
# Anywhere:      bash bench/gpu_checks.sh --dry-run     (the plan: a line a stage, then the total)
#
# Stages, in this order, each under its own limit (SIGINT at the limit, so compare, gpu_bench.py
# and pytest save what they measured; SIGKILL 5 s later):
#   facts    PyCUDA's wheels installed, imports checked, nvidia-smi, memory, versions, backends
#   tests    the GPU tests only (`pytest -m gpu`; CI runs the rest)
#   limits   `gpukit limits --refresh`, held against a reference of the same card model only
#   bench    bench/gpu_bench.py: the GPU targets in BENCHMARKS.md
#   compare  polyval k=2 and 64: CuPy and PyCUDA (pageable, pinned, streamed) beside serial,
#            threads and processes (NumPy) at 1, 4 and 16 workers
#   extra    only if time remains: blackscholes, mandelbrot and nbody (serial NumPy against the
#            GPU, two sizes each), then MPI at 1, 2, 4, 8 and 16 ranks
# Each stage writes into $OUT/<stage>/ as it finishes (its log and results), so a call cut
# short keeps what ran; $OUT/summary.txt has a line a stage: ok, failed, cut at its limit, or
# not run and why. A stage whose limit no longer fits in what is left of GPUKIT_CHECKS_TOTAL_S
# (default 420) runs with what is left, or not at all under 5 s.
#
# Rehearsing on a machine without a GPU: GPUKIT_CHECKS_SMALL=1 runs every stage at small sizes
# (and --quick where a command has it), so that the host fakes' emulated kernels finish;
# GPUKIT_CHECKS_SCALE=0.1 scales every limit, to see the cuts.
set -uo pipefail
cd "$(dirname "$0")/.."

STAGES=(facts tests limits bench compare extra)
declare -A LIMIT=([facts]=20 [tests]=90 [limits]=45 [bench]=120 [compare]=120 [extra]=0)
TOTAL=${GPUKIT_CHECKS_TOTAL_S:-420}
SCALE=${GPUKIT_CHECKS_SCALE:-1}
SMALL=${GPUKIT_CHECKS_SMALL:-}
# `extra` has no limit of its own: it gets what the others leave.
fixed=0
for s in "${STAGES[@]}"; do fixed=$(( fixed + LIMIT[$s] )); done
LIMIT[extra]=$(( TOTAL - fixed ))

if [ "${1:-}" = "--dry-run" ]; then
    for s in "${STAGES[@]}"; do
        if [ "$s" = extra ]; then
            echo "extra    up to ${LIMIT[extra]} s (only if time remains)"
        else
            printf '%-8s %d s\n' "$s" "${LIMIT[$s]}"
        fi
    done
    echo "total: $TOTAL s"
    exit 0
fi
run=("$@")
[ ${#run[@]} -eq 0 ] && run=("${STAGES[@]}")
for s in "${run[@]}"; do
    [ -n "${LIMIT[$s]+x}" ] || { echo "error: unknown stage $s (${STAGES[*]})" >&2; exit 2; }
done

OUT=${OUT:-/tmp/gpukit-out}
mkdir -p "$OUT"
summary=$OUT/summary.txt
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }
start=$SECONDS

export PYTHONPATH=/tmp/gpukit-site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export GPUKIT_CACHE_DIR=$OUT/cache  # ceilings measured by `limits` serve bench and compare
if [ -n "$SMALL" ]; then
    POLYVAL_SIZES=2^8,2^10 KERNEL_SIZES=2^8,2^10 NBODY_SIZES=2^8,2^10 MPI_SIZE=2^12
    QUICK=--quick BUDGET=0.01
else
    # nbody is O(n^2): 2^14 bodies are already seconds of serial NumPy.
    POLYVAL_SIZES=2^12..2^24:4 KERNEL_SIZES=2^16,2^22 NBODY_SIZES=2^10,2^14 MPI_SIZE=2^24
    QUICK= BUDGET=0.1
fi

# stage NAME COMMAND...: run it for at most its limit (scaled, and never past the total), log in
# $OUT/NAME/log.txt, a line in the summary.
stage() {
    local name=$1; shift
    local dir=$OUT/$name left=$(( TOTAL - (SECONDS - start) ))
    local limit
    limit=$(awk -v l="${LIMIT[$name]}" -v s="$SCALE" 'BEGIN { printf "%d", l * s + 0.5 }')
    mkdir -p "$dir"
    if (( left < 5 )); then
        say "$name: NOT RUN, out of time ($(( SECONDS - start )) s of $TOTAL)"
        return
    fi
    # `extra` gets whatever the others left.
    [ "$name" = extra ] && limit=$(awk -v l="$left" -v s="$SCALE" 'BEGIN { printf "%d", l * s }')
    (( limit > left )) && limit=$left
    local t0=$SECONDS
    echo "== $name (limit $limit s): $*"
    STAGE_DIR=$dir STAGE_LIMIT=$limit timeout -s INT -k 5 "$limit" "$@" > "$dir/log.txt" 2>&1
    local rc=$? took=$(( SECONDS - t0 ))
    case $rc in
        0) say "$name: ok in $took s" ;;
        124|137) say "$name: CUT at its limit of $limit s (what it saved is in $dir)" ;;
        *) say "$name: FAILED, rc=$rc in $took s (log: $dir/log.txt)" ;;
    esac
    tail -n 15 "$dir/log.txt"
}

# -- the stages, each a bash -c of its own (timeout runs programs, not shell functions) --------

facts() {
    trap 'exit 130' INT  # stop after the interrupted command, not go on to the next
    local env_file=$STAGE_DIR/env.sh
    : > "$env_file"
    if ls .gpu-wheels/*.whl > /dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --target /tmp/gpukit-site \
            .gpu-wheels/*.whl || echo "wheels: install failed; PyCUDA will be unavailable"
    else
        echo "wheels: none in .gpu-wheels (carry it); PyCUDA will be unavailable"
    fi
    # PyCUDA's wheel links libcurand.so.10 without an rpath: where the loader does not find it,
    # the CUDA libraries of this Python's own packages (CuPy's nvidia-* wheels) are put on
    # LD_LIBRARY_PATH for every later stage.
    if ! python3 -c "import pycuda.driver" 2> "$STAGE_DIR/pycuda-import.txt"; then
        cat "$STAGE_DIR/pycuda-import.txt"
        if grep -q "cannot open shared object" "$STAGE_DIR/pycuda-import.txt"; then
            local libs
            libs=$(python3 - <<'PY'
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()] + sys.path
dirs = []
for root in roots:
    for lib in sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib"))):
        if lib not in dirs:
            dirs.append(lib)
print(":".join(dirs))
PY
)
            if [ -n "$libs" ]; then
                echo "export LD_LIBRARY_PATH=$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" \
                    > "$env_file"
                echo "pycuda: a CUDA library was not found; LD_LIBRARY_PATH now has $libs"
                . "$env_file"
                python3 -c "import pycuda.driver; print('pycuda: imports now')" \
                    || echo "pycuda: still does not import"
            else
                echo "pycuda: no nvidia/*/lib folders in this Python's packages to add"
            fi
        fi
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
        || echo "nvidia-smi: none"
    free -g
    python3 -c "import sys, numpy; print('python', sys.version.split()[0], 'numpy', numpy.__version__)"
    python3 -c "import cupy; print('cupy', cupy.__version__)" || true
    python3 -c "import pycuda; print('pycuda', pycuda.VERSION_TEXT)" || true
    mpiexec --version 2>&1 | head -1 || true
    python3 -m gpukit backends
}

tests() {
    trap 'exit 130' INT  # stop after the interrupted command, not go on to the next
    # -v: a line a test as it ends, so that a cut keeps every outcome so far.
    python3 -m pytest -m gpu -v -rs -p no:cacheprovider --junitxml="$STAGE_DIR/junit.xml" tests/
}

limits() {
    trap 'exit 130' INT  # stop after the interrupted command, not go on to the next
    python3 -m gpukit limits --refresh $QUICK --json "$STAGE_DIR/limits.json" || return
    python3 bench/limits_gpu_check.py --from "$STAGE_DIR/limits.json"
}

bench() {
    trap 'exit 130' INT  # stop after the interrupted command, not go on to the next
    # Its own budget a little inside the stage's limit, so that it stops between steps.
    python3 bench/gpu_bench.py $QUICK --out "$STAGE_DIR" --budget-s "$(( STAGE_LIMIT * 3 / 4 ))"
}

compare_polyval() {
    trap 'exit 130' INT  # stop after the interrupted command, not go on to the next
    local no_limits=
    ls "$GPUKIT_CACHE_DIR"/ceilings-*.json > /dev/null 2>&1 || no_limits=--no-limits
    python3 -m gpukit compare --kernel polyval --param k=2,64 --impls numpy \
        --backends serial,threads,processes,cupy,pycuda --workers 1,4,16 \
        --sizes "$POLYVAL_SIZES" --budget-s "$BUDGET" --run-limit-s 0.5 --require-gpu \
        --no-progress $no_limits -o "$STAGE_DIR/compare-polyval.json" || return
    python3 -m gpukit report "$STAGE_DIR/compare-polyval.json" --quiet \
        --markdown "$STAGE_DIR/findings-polyval.md"
}

extra() {
    trap 'exit 130' INT  # stop after the interrupted command, not go on to the next
    local rc=0
    for k in blackscholes mandelbrot nbody; do
        local sizes=$KERNEL_SIZES
        [ "$k" = nbody ] && sizes=$NBODY_SIZES
        python3 -m gpukit compare --kernel "$k" --impls numpy --backends serial,cupy,pycuda \
            --sizes "$sizes" --budget-s "$BUDGET" --require-gpu --no-progress --no-limits \
            -o "$STAGE_DIR/compare-$k.json" || rc=$?
    done
    # Open MPI's shared-memory transport copies large messages with process_vm_readv, which a
    # container may forbid (the job then aborts): a 2-rank probe first, and only if it fails
    # the copy-in/copy-out fallback, said in the log.
    local run_as=""; [ "$(id -u)" = 0 ] && run_as="--allow-run-as-root"
    local probe='from mpi4py import MPI; import numpy as np; c = MPI.COMM_WORLD; a = np.ones(1 << 22); b = np.empty(2 * a.size) if c.rank == 0 else None; c.Gather(a, b, root=0)'
    if mpiexec --version 2>&1 | grep -qE "Open MPI|OpenRTE" \
            && ! timeout 30 mpiexec $run_as -n 2 python3 -c "$probe"; then
        export OMPI_MCA_btl_vader_single_copy_mechanism=none
        echo "mpi: the probe failed; OMPI_MCA_btl_vader_single_copy_mechanism=none from here on"
    fi
    python3 -m gpukit compare --kernel polyval --param k=2,64 --impls numpy \
        --backends serial,mpi --workers 1,2,4,8,16 --sizes "$MPI_SIZE" --budget-s "$BUDGET" \
        --no-progress --no-limits -o "$STAGE_DIR/compare-mpi.json" || rc=$?
    return $rc
}

export -f facts tests limits bench compare_polyval extra
export POLYVAL_SIZES KERNEL_SIZES NBODY_SIZES MPI_SIZE QUICK BUDGET

for s in "${run[@]}"; do
    fn=$s
    [ "$s" = compare ] && fn=compare_polyval
    stage "$s" bash -c "$fn"
    # What facts found about the loader path holds for every later stage.
    [ "$s" = facts ] && [ -s "$OUT/facts/env.sh" ] && . "$OUT/facts/env.sh"
done
say "total: $(( SECONDS - start )) s of $TOTAL"
for s in "${STAGES[@]}"; do
    printf '%s\n' "${run[@]}" | grep -qx "$s" || say "$s: not run (not asked for)"
done
