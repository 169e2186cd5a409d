#!/usr/bin/env bash
# Every pending GPU check of gpukit, on the GPU test machine, in as few device calls as possible.
#
# Here, once:    bash bench/fetch_device_wheels.sh        (fills the ignored .gpu-wheels/)
# On the device: bash bench/gpu_checks.sh [STAGE...]      (carry: [".gpu-wheels"])
#
# STAGEs run in the order given (default `all`: every stage below, in this order). A step that
# would start after GPUKIT_DEADLINE_S seconds (default 560, inside the 600 s limit of one call)
# is skipped and its stage named in the summary, and a step still running at the deadline gets
# SIGINT (compare and gpu_bench.py save what they measured), so the call always comes back with
# what it measured. All of it takes two or three calls (tests and compare take most of the
# first): `all`, then the stages the summary names, e.g. `bash bench/gpu_checks.sh bench kernels mpi`.
#   tests    the whole test suite there (the `gpu` tests, and MPI under the machine's Open MPI)
#   limits   `limits --refresh` against CEILINGS.md (the other stages measure it first if needed)
#   compare  `compare` with all five backends, polyval, default sweep (issue 2 and 4 figures)
#   bench    the issue-3 benchmark: bench/gpu_bench.py against its targets
#   kernels  `compare` for blackscholes, mandelbrot and nbody on all backends (issue 5 figures)
#   mpi      MPI ranks 1..16 beside threads and processes, polyval, largest n (issue 6 figures)
#
# Everything lands in bench/results/ (named with the card) and, packed, in $OUT for the caller.
set -uo pipefail
cd "$(dirname "$0")/.."
ALL="tests limits compare bench kernels mpi"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(all)
for stage in "${stages[@]}"; do
    case " $ALL all " in
        *" $stage "*) ;;
        *) echo "error: unknown stage $stage (${ALL// /, }, all)" >&2; exit 2 ;;
    esac
done
deadline=${GPUKIT_DEADLINE_S:-560}
OUT=${OUT:-/tmp/gpukit-out}
mkdir -p "$OUT" bench/results

if ! python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu-wheels/*.whl \
        > "$OUT/pip.txt" 2>&1; then
    # PyCUDA then shows as unavailable and --require-gpu still passes on CuPy alone: say so.
    echo "== wheels: install failed (was .gpu-wheels carried?); PyCUDA will be unavailable" \
        | tee -a "$OUT/summary.txt"
    tail -n 3 "$OUT/pip.txt"
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export GPUKIT_CACHE_DIR=$PWD/bench/results/cache
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9\n' '-' | sed 's/-*$//')
card=${card:-no-gpu}
res=bench/results
summary=$OUT/summary.txt
: >> "$summary"

step() {  # [cap=S] step NAME COMMAND...: run (for at most S s, if given), keep its output in
          # $res/NAME-$card.txt, note the status
    local name=$1; shift
    local log="$res/$name-$card.txt"
    if (( SECONDS >= deadline )); then
        echo "== $name: NOT RUN, out of time ($SECONDS s of $deadline); run stage $current again" \
            | tee -a "$summary"
        return
    fi
    echo "== $name: $*" | tee -a "$summary"
    local t0=$SECONDS limit=$(( deadline - SECONDS + 20 ))
    (( ${cap:-0} > 0 && cap < limit )) && limit=$cap
    # SIGINT, not TERM: compare and gpu_bench.py save what they measured on KeyboardInterrupt,
    # and pytest prints its summary; -k: whatever ignores it is killed 10 s later, inside 600 s.
    timeout -s INT -k 10 "$limit" "$@" > "$log" 2>&1
    local rc=$?
    echo "   rc=$rc in $((SECONDS - t0)) s; log $log" | tee -a "$summary"
    tail -n 25 "$log"
}

facts() {
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import cupy, numpy, sys; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__)"
    python3 -m gpukit backends
}
export -f facts  # `timeout` runs programs, not shell functions: step runs it as bash -c facts

mpi_probe() {
    # Open MPI's shared-memory transport copies large messages with process_vm_readv, which a
    # container may forbid (the job then aborts); its copy-in/copy-out fallback works anywhere.
    # Probe once with a 32 MiB Gatherv, and fall back only if the probe fails, saying so.
    [ -n "${mpi_probed:-}" ] && return
    mpi_probed=1
    mpiexec --version 2>/dev/null | grep -qE "Open MPI|OpenRTE" \
        || return 0  # the fallback is Open MPI's (4.1's mpiexec --version says "OpenRTE")
    local probe='from mpi4py import MPI; import numpy as np; c = MPI.COMM_WORLD; a = np.ones(1 << 22); b = np.empty(2 * a.size) if c.rank == 0 else None; c.Gather(a, b, root=0); print("mpi ok", c.size) if c.rank == 0 else None'
    local run_as=""; [ "$(id -u)" = 0 ] && run_as=--allow-run-as-root
    if ! timeout 60 mpiexec $run_as -n 2 python3 -c "$probe" > "$res/mpi-probe-$card.txt" 2>&1; then
        export OMPI_MCA_btl_vader_single_copy_mechanism=none
        echo "== mpi: probe failed; OMPI_MCA_btl_vader_single_copy_mechanism=none from here on" | tee -a "$summary"
        tail -n 5 "$res/mpi-probe-$card.txt"
    fi
}

stage_tests() {
    mpi_probe
    step facts bash -c facts
    # Capped, so that a hang in the suite cannot eat the time of the stages that measure.
    cap=240 step pytest python3 -m pytest -v -rs -p no:cacheprovider tests/
}

limits_once() {
    # The ceilings before any compare, so that it stores them with its results (a fresh call
    # starts with an empty cache: the cache lives on the device).
    [ -f "$res/limits-$card.json" ] || step limits python3 -m gpukit limits --refresh \
        --json "$res/limits-$card.json"
}

stage_limits() {
    limits_once
    step limits-vs-ceilings python3 bench/limits_gpu_check.py --from "$res/limits-$card.json"
}

stage_bench() {
    step gpu-bench python3 bench/gpu_bench.py
}

stage_compare() {
    limits_once
    # A 1 s run limit (default 0.25 s) lets pickled processes reach the largest n, which the
    # issue's pickled-vs-shared-memory comparison needs.
    step compare-polyval python3 -m gpukit compare --require-gpu --no-progress --run-limit-s 1 \
        -o "$res/compare-polyval-$card.json"
    step report-polyval python3 -m gpukit report "$res/compare-polyval-$card.json" --quiet \
        --html "$res/compare-polyval-$card.html" --plots "$res/plots-$card" \
        --markdown "$res/findings-polyval-$card.md"
}

stage_kernels() {
    limits_once
    for k in blackscholes mandelbrot nbody; do
        step "compare-$k" python3 -m gpukit compare --kernel "$k" --require-gpu --no-progress \
            --workers 1,4,16 -o "$res/compare-$k-$card.json"
        step "report-$k" python3 -m gpukit report "$res/compare-$k-$card.json" --quiet \
            --markdown "$res/findings-$k-$card.md"
    done
}

stage_mpi() {
    mpi_probe
    limits_once
    step compare-mpi python3 -m gpukit compare --backends serial,threads,processes,mpi \
        --impls numpy --param k=2,64 --sizes 2^24 --workers 1,2,4,8,16 --no-progress \
        -o "$res/compare-mpi-$card.json"
    step report-mpi python3 -m gpukit report "$res/compare-mpi-$card.json" --quiet \
        --markdown "$res/findings-mpi-$card.md"
}

for stage in "${stages[@]}"; do
    [ "$stage" = all ] && run=($ALL) || run=("$stage")
    for current in "${run[@]}"; do
        "stage_$current"
    done
done

# At most 8 files come back from $OUT: the summary and one archive of everything written.
name=$(IFS=_; echo "${stages[*]}")
tar czf "$OUT/results-$name-$card.tar.gz" "$res"
echo "results packed in $OUT/results-$name-$card.tar.gz"
