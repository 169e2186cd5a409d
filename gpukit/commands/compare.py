"""`gpukit compare`: the sweep, the table, the findings and the results file."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

from gpukit.commands import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NO_GPU, EXIT_NOT_WRITTEN,
                             EXIT_OK, EXIT_STATUSES, STOPPING, STOPPING_SIGNALS, check_writable,
                             console, default_workers, parse_names, parse_param_sets,
                             parse_sizes, parse_workers, signal_status)
from gpukit.commands.report import add_table_option
from gpukit.errors import Interrupted, OutputError, UsageError

DEFAULT_OUTPUT = "gpukit-results.json"


EXAMPLES = """examples:
  gpukit compare                                   the default sweep of polyval
  gpukit compare --quick                           a few small sizes, a smoke test
  gpukit compare --param k=2,64 --sizes 2^10..2^24:4 --workers 1,2,4 -o results.json
  gpukit compare --kernel blackscholes --backends serial,cupy,pycuda --require-gpu
  gpukit compare --kernel softplus.py:softplus     your own NumPy function, on every backend
  gpukit compare --backends serial,mpi --workers 1,2,4 --mpi-hostfile hosts.txt
"""


def add_parser(sub) -> None:
    import argparse
    import textwrap

    # Raw text keeps the examples' columns; the prose around them is wrapped here instead.
    p = sub.add_parser("compare", help="measure every backend over sizes and worker counts",
                       description=textwrap.fill(
                           "Measure every backend over sizes and worker counts, check every "
                           "result against the kernel's reference, save the results and print "
                           "the answer, the findings and a table.", 79),
                       epilog=EXAMPLES + "\n" + textwrap.fill(EXIT_STATUSES, 79),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to run")
    what.add_argument("--kernel", default="polyval",
                      help="a built-in name (see `gpukit kernels`), path/to/file.py:Name or "
                           "module:Name, a kernel class or a NumPy function (default: polyval)")
    what.add_argument("--param", action="append", metavar="NAME=V1,V2",
                      help="kernel parameter values, e.g. k=2,64; repeat for several parameters "
                           "(every combination runs); the same name twice adds its values")
    what.add_argument("--backends", metavar="LIST",
                      help="comma list (default: serial,threads,processes,cupy,pycuda; also: "
                           "mpi)")
    what.add_argument("--impls", metavar="LIST",
                      help="CPU implementations to run: python,numpy (default: both)")
    what.add_argument("--require-gpu", action="store_true",
                      help="exit with status 3 if no GPU backend can run")

    sweep = p.add_argument_group("the sweep")
    sweep.add_argument("--sizes", metavar="LIST",
                       help="e.g. 1024,2^20 or 2^10..2^24:4 (default: the kernel's; "
                            "2^10..2^24:4 for polyval)")
    sweep.add_argument("--workers", metavar="LIST",
                       help="comma list of worker counts (default: 1,2,4,.. up to the number "
                            "of cores)")
    sweep.add_argument("--quick", action="store_true", help="a few small sizes, for a smoke test")
    sweep.add_argument("--chunks-per-worker", type=int, default=1, metavar="C",
                       help="split the problem into C chunks per thread or process; more chunks "
                            "balance uneven work such as mandelbrot's (default: 1)")
    sweep.add_argument("--start-method", choices=("forkserver", "spawn", "fork"),
                       help="how worker processes start (default: forkserver where available)")
    sweep.add_argument("--seed", type=int, default=0,
                       help="seed for inputs and case order (default: 0)")
    sweep.add_argument("--no-limits", action="store_true",
                       help="do not measure this machine's ceilings when `gpukit limits` has "
                            "stored none (about 2 s, once per machine); the model then derives "
                            "what it can from the run")
    sweep.add_argument("--default-malloc", action="store_true",
                       help="leave glibc's malloc thresholds as they are (gpukit fixes them so "
                            "that every backend allocates alike)")

    reps = p.add_argument_group("repetitions and limits")
    reps.add_argument("--budget-s", type=float, default=0.1, metavar="S",
                      help="seconds of repetitions per case (default: 0.1)")
    reps.add_argument("--min-reps", type=int, default=3, metavar="N",
                      help="at least this many timed runs (default: 3)")
    reps.add_argument("--max-reps", type=int, default=100, metavar="N",
                      help="at most this many timed runs (default: 100)")
    reps.add_argument("--run-limit-s", type=float, default=0.25, metavar="S",
                      help="stop a variant at larger sizes once one run is predicted to take "
                           "longer than this (default: 0.25)")
    reps.add_argument("--case-timeout-s", type=float, default=600.0, metavar="S",
                      help="a case (its session's start included) that takes longer fails as "
                           "hung: its pool or ranks are stopped and the sweep goes on "
                           "(default: 600)")

    mpi = p.add_argument_group("MPI")
    mpi.add_argument("--mpi-hostfile", metavar="FILE",
                     help="host file for the mpi backend's mpiexec, to spread its ranks over "
                          "machines (default: every rank on this machine)")
    mpi.add_argument("--mpi-timeout-s", type=float, metavar="S",
                     help="how long the mpi backend waits on its ranks before it calls one hung "
                          "and ends the case (default: 120)")

    output = p.add_argument_group("output")
    output.add_argument("--output", "-o", default=DEFAULT_OUTPUT, metavar="PATH",
                        help=f"results JSON (default: {DEFAULT_OUTPUT})")
    output.add_argument("--csv", metavar="PATH", help="also write the case table as CSV")
    add_table_option(output)
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    output.add_argument("--dry-run", action="store_true",
                        help="check the arguments and say what would run, without measuring")
    p.set_defaults(func=run)


def run(args) -> int:
    from gpukit import allocator, analysis, backends, ceilings, kernels, machine, runner
    from gpukit.reporting import tables
    from gpukit.analysis import noise
    from gpukit.commands.report import print_report, write_text
    from gpukit.results import Results
    from gpukit.timing import Budget

    kernel = kernels.load(args.kernel)
    param_sets = parse_param_sets(kernel, args.param)
    # An option given empty is a mistake, not a request for the defaults.
    sizes = parse_sizes(args.sizes) if args.sizes is not None else (
        kernel.default_sizes[:3] if args.quick else kernel.default_sizes)
    workers = parse_workers(args.workers) if args.workers is not None else default_workers()
    names = (parse_names(args.backends, backends.NAMES, "backend") if args.backends is not None
             else backends.DEFAULTS)
    impls = (parse_names(args.impls, ("python", "numpy"), "implementation")
             if args.impls is not None else None)
    for value, what in ((args.budget_s, "--budget-s"), (args.run_limit_s, "--run-limit-s"),
                        (args.case_timeout_s, "--case-timeout-s")):
        if not 0 < value < math.inf:
            raise UsageError(f"{what} must be a positive number of seconds")
    if args.seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {args.seed}")
    if args.min_reps < 1 or args.max_reps < args.min_reps:
        raise UsageError("repetitions need 1 <= --min-reps <= --max-reps")
    budget = Budget(budget_s=args.budget_s, min_reps=args.min_reps, max_reps=args.max_reps)
    if args.chunks_per_worker < 1:
        raise UsageError("--chunks-per-worker must be a positive integer")
    if args.mpi_hostfile and not os.path.isfile(args.mpi_hostfile):
        raise UsageError(f"MPI host file {args.mpi_hostfile} does not exist")
    if args.mpi_timeout_s is not None and not 0 < args.mpi_timeout_s < math.inf:
        raise UsageError("--mpi-timeout-s must be a positive number of seconds")
    settings = {"start_method": args.start_method,
                "chunks_per_worker": args.chunks_per_worker,
                "mpi_hostfile": args.mpi_hostfile}
    if args.mpi_timeout_s is not None:
        settings["mpi_timeout_s"] = args.mpi_timeout_s
    sweep = runner.Sweep(kernel, param_sets, sizes, workers, names, impls, budget,
                         args.run_limit_s, args.seed, settings, args.case_timeout_s)
    runner.check_fits(sweep)
    target, target_note = check_writable(args.output, "results")
    if args.csv:
        check_writable(args.csv, "CSV")

    availability = runner.probe_backends(names, kernel)
    gpu_names = [n for n in names if availability[n]["gpu"]]
    gpu_ok = [n for n in gpu_names if availability[n]["available"]]
    forking = [n for n in names if backends.get(n).traits.start_method]
    if args.start_method == "fork" and gpu_ok and forking:
        raise UsageError("--start-method fork cannot share a run with GPU backends (a forked "
                         "CUDA context is unusable); use forkserver or spawn, or drop "
                         f"{', '.join(gpu_ok)} from --backends")
    planned = runner.plan(sweep, availability)
    if not planned:
        reasons = [f"{n}: {availability[n]['reason']}" for n in names
                   if not availability[n]["available"]]
        if impls:
            reasons.append(f"--impls {','.join(impls)} leaves none of kernel {kernel.name}'s "
                           f"implementations ({', '.join(kernel.describe()['implementations'])})")
        if args.require_gpu and not gpu_ok:
            print(f"error: --require-gpu: no GPU backend can run ({'; '.join(reasons)})",
                  file=sys.stderr)
            return EXIT_NO_GPU
        raise UsageError(f"nothing to measure: {'; '.join(reasons)}")
    if args.require_gpu and not gpu_ok:
        reasons = "; ".join(f"{n}: {availability[n].get('reason')}" for n in gpu_names) or \
            "no GPU backend was selected"
        print(f"error: --require-gpu: no GPU backend can run ({reasons})", file=sys.stderr)
        return EXIT_NO_GPU
    if args.dry_run:
        labels = sorted({f"{c.variant.label} x{c.workers}" for c in planned})
        print(f"{len(planned)} cases would run: {len(sizes)} sizes, {len(param_sets)} parameter "
              f"set(s), {len(labels)} variants ({', '.join(labels)}); results to {target}")
        return EXIT_OK

    out = console()
    err = console(stderr=True)
    if target_note:
        err.print(target_note, markup=False)
    # Before anything else starts a process: they inherit the thresholds.
    malloc = allocator.as_found() if args.default_malloc else allocator.steady()
    stored = None if args.no_limits else machine_ceilings(err)
    results = Results({**machine.facts(), "malloc": malloc}, sweep.to_json(),
                      ["gpukit", *sys.argv[1:]])
    for line in tables.backend_lines({"backends": availability, "sweep": results.data["sweep"]}):
        err.print(line, markup=False)
    stopped_by = None  # what ended the sweep early: a signal's word, or an error
    status = EXIT_OK
    # How busy the machine was around the sweep: the findings say when it was too busy to trust.
    results.data["load"] = {"before": machine.load()}
    t0 = time.perf_counter()
    try:
        with _progress(err, enabled=not args.no_progress) as progress:
            runner.Runner(sweep, results, progress).run(availability)
    except Interrupted as exc:
        stopped_by, status = STOPPING_SIGNALS[exc.signum], signal_status(exc.signum)
    except KeyboardInterrupt:
        stopped_by, status = "interrupted", EXIT_INTERRUPTED
    except Exception as exc:  # a fault of gpukit's own: what was measured is still saved
        stopped_by, status = f"the sweep stopped on {type(exc).__name__}: {exc}", EXIT_FAILED
    finally:
        # From here on a signal is noted, not raised: saving must not be cut short.
        STOPPING.disarm()
    results.data["load"]["after"] = machine.load()
    try:
        results.data["load"]["assessment"] = noise.assess(results.data).to_json()
    except Exception:  # derived: `report` assesses again; it must never cost the save
        pass
    results.finish(complete=stopped_by is None, wall_s=time.perf_counter() - t0,
                   note=stopped_by)
    # The machine's ceilings travel with the results, so a report elsewhere holds the cases
    # against the same figures.
    if stored is None:
        stored, damaged = ceilings.cached(results.data["machine"])
        if damaged and args.no_limits:
            err.print(f"warning: {damaged.replace('measured again', 'not used')}", markup=False)
    if stored is not None:
        results.data["ceilings"] = stored
    record_serialized(results.data)
    path, save_error = save_results(results, target)
    data = results.data
    an = analysis.analyze(data)
    print_report(out, data, an, table=args.table)
    csv_error = None
    if args.csv:
        try:
            write_text(args.csv, tables.csv_text(data, an), "CSV")
        except OutputError as exc:
            csv_error = str(exc)
    counts = tables.status_counts(data)
    out.print()
    out.print(summary_line(data, counts, stopped_by is not None, path), markup=False)
    if path is None:
        print(f"error: {save_error}", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    if stopped_by is not None:
        print(f"error: {stopped_by}; the {len(data['cases'])} cases measured so far are saved in "
              f"{path}" + (f" ({save_error})" if save_error else ""), file=sys.stderr)
        return status
    if save_error:
        print(f"error: {save_error}", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    if csv_error:
        print(f"error: {csv_error}; the results are in {path}", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    if STOPPING.received is not None:
        print(f"error: {STOPPING_SIGNALS[STOPPING.received]} after the sweep had finished; the "
              f"results are complete in {path}", file=sys.stderr)
        return signal_status(STOPPING.received)
    if counts.get("failed"):
        print(f"error: {counts['failed']} case(s) failed; see the table and {path}",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def record_serialized(data: dict) -> None:
    """Each thread variant's serialized share into the results, as the findings and the model
    take it from the cases, so that the file says it to readers without gpukit. It is derived,
    so a failure here must not cost the save: the report derives it again."""
    from gpukit.analysis import serialized
    try:
        data["serialized"] = serialized.to_json(data)
    except (ArithmeticError, KeyError, TypeError, ValueError):
        data.pop("serialized", None)


def save_results(results, target: Path) -> tuple[Path | None, str | None]:
    """Save to `target`; where the run is incomplete and `target` holds a complete run, beside
    it instead; where that fails (the disk filled, the folder went), in the temporary folder.
    Returns the path (None if nothing could be written) and what to tell the user."""
    import tempfile

    from gpukit.results import holds_complete_run

    note = None
    first = target
    if not results.data["complete"] and holds_complete_run(target):
        first = _beside(target)
        note = f"{target} holds a complete run and was kept"
    fallback = Path(tempfile.gettempdir()) / f"gpukit-results-{os.getpid()}.json"
    tried = []
    for path in (first, fallback):
        try:
            results.save(path)
        except (OSError, TypeError, ValueError) as exc:
            tried.append(f"{path} ({getattr(exc, 'strerror', None) or exc})")
            continue
        if path == fallback:
            note = f"could not write {tried[0]}; the results are in {path}" + \
                (f" ({note})" if note else "")
        return path, note
    return None, "could not save the results anywhere: tried " + ", ".join(tried) + \
        (f" ({note})" if note else "")


def _beside(target: Path) -> Path:
    """A name next to `target` for an incomplete run's results: NAME.incomplete.json, or
    NAME.incomplete-2.json and on where that holds a complete run too."""
    from gpukit.results import holds_complete_run
    stem, suffix = target.stem, target.suffix or ".json"
    candidate = target.with_name(f"{stem}.incomplete{suffix}")
    i = 2
    while holds_complete_run(candidate) or (candidate.exists() and not candidate.is_file()):
        candidate = target.with_name(f"{stem}.incomplete-{i}{suffix}")
        i += 1
    return candidate


def machine_ceilings(err) -> dict | None:
    """The ceilings `gpukit limits` stored for this machine; where it has stored none, measured
    now with its quick plan and stored (about 2 s on 2 cores, once per machine), so that the
    first run's model holds its cases against measured figures, not only what the run shows.

    The measuring runs as `gpukit limits` in a child process: it starts process pools (fork
    among them) and on a GPU a CUDA context, none of which this process should carry into the
    sweep."""
    import subprocess
    import tempfile

    from gpukit import ceilings, machine
    from gpukit.errors import BackendUnavailable
    from gpukit.limits import gpu

    facts = machine.facts()
    try:
        facts["gpu"] = gpu.probe()  # the GPU is part of the cache key, as `limits` keys it
    except BackendUnavailable:
        pass
    stored, damaged = ceilings.cached(facts)
    if damaged:
        err.print(f"warning: {damaged}", markup=False)
    if stored is not None:
        return stored
    err.print("No ceilings stored for this machine: measuring them once, quickly (`gpukit "
              "limits` measures them fully; --no-limits skips this).", markup=False)
    with tempfile.TemporaryDirectory(prefix="gpukit-limits-") as tmp:
        path = os.path.join(tmp, "ceilings.json")
        # A session of its own, so that a stop reaches it through this process, which then
        # ends it with all the pools it started.
        with subprocess.Popen([sys.executable, "-m", "gpukit", "limits", "--quick", "--json",
                               path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, start_new_session=True) as child:
            try:
                _, stderr = child.communicate()
            except BaseException:
                _end_group(child)
                raise
        try:
            found = ceilings.load(path=path)
        except ceilings.Damaged:
            found = None
    if found is None:
        # The model derives what it can from the run instead; the findings say what it lacks.
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        err.print(f"warning: measuring the ceilings failed ({last}); the model uses what this "
                  f"run shows", markup=False)
    elif child.returncode != 0:
        err.print("warning: the ceilings could not be stored; this run uses them, the next "
                  "measures again", markup=False)
    return found


def _end_group(child) -> None:
    """Stop a child and every process it started: SIGTERM first, which gpukit answers by ending
    its pools, then SIGKILL, a second later, for whatever of its session is left."""
    import signal
    import subprocess
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        child.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def summary_line(data: dict, counts: dict[str, int], interrupted: bool, path) -> str:
    """'12 cases: 10 ok, 2 skipped in 3.1 s; ...', and a plain word where no case finished."""
    n = len(data["cases"])
    head = f"{n} case{'' if n == 1 else 's'}"
    if counts:
        head += ": " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    else:
        head += " measured"
    if interrupted:
        head += " (interrupted)"
    where = f"results written to {path}" if path else "the results could not be saved"
    return f"{head} in {data['wall_s']:.1f} s; {where}"


class _progress:
    """A rich progress bar on stderr, or nothing; used as the runner's progress callback."""

    def __init__(self, console, enabled: bool):
        self.enabled = enabled and console.is_terminal
        self.show_lines = enabled and not console.is_terminal
        self.console = console
        self._bar = None
        self._last_n = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
                TimeElapsedColumn
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=self.console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("measuring", total=None)
        return self

    def __call__(self, done: int, total: int, record: dict) -> None:
        from gpukit.units import fmt_n
        if self._bar is not None:
            text = f"{record['label']} x{record['workers']} n={fmt_n(record['n'])}"
            self._bar.update(self._task, completed=done, total=total, description=text)
        elif self.show_lines and record["n"] != self._last_n:
            # Not a terminal (CI, a pipe): one line as each size starts.
            self._last_n = record["n"]
            self.console.print(f"measuring n={fmt_n(record['n'])} (case {done} of {total})")

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
