"""`gpukit compare`: the sweep, the table, the findings and the results file."""

from __future__ import annotations

import os
import sys
import time

from gpukit.commands import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NO_GPU, EXIT_OK,
                             check_writable, console, default_workers, parse_names,
                             parse_param_sets, parse_sizes, parse_workers)
from gpukit.commands.report import add_table_option
from gpukit.errors import UsageError

DEFAULT_OUTPUT = "gpukit-results.json"


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="measure every backend over sizes and worker counts")
    p.add_argument("--kernel", default="polyval",
                   help="kernel to run: a built-in name (see `gpukit kernels`), "
                        "path/to/file.py:Name or module:Name (default: polyval)")
    p.add_argument("--param", action="append", metavar="NAME=V1,V2",
                   help="kernel parameter values, e.g. k=2,64; repeat for several parameters "
                        "(every combination runs); the same name twice adds its values")
    p.add_argument("--backends", help="comma list (default: serial,threads,processes,cupy,pycuda; "
                                        "also: mpi)")
    p.add_argument("--impls", help="CPU implementations to run: python,numpy (default: both)")
    p.add_argument("--sizes", help="e.g. 1024,2^20 or 2^10..2^24:4 (default: the kernel's; "
                                        "2^10..2^24:4 for polyval)")
    p.add_argument("--workers", help="comma list of worker counts (default: 1,2,4,.. up to the "
                                     "number of cores)")
    p.add_argument("--budget-s", type=float, default=0.1,
                   help="seconds of repetitions per case (default: 0.1)")
    p.add_argument("--min-reps", type=int, default=3, help="at least this many timed runs (3)")
    p.add_argument("--max-reps", type=int, default=100, help="at most this many timed runs (100)")
    p.add_argument("--run-limit-s", type=float, default=0.25,
                   help="stop a variant at larger sizes once one run is predicted to take longer "
                        "than this (default: 0.25)")
    p.add_argument("--start-method", choices=("forkserver", "spawn", "fork"),
                   help="how worker processes start (default: forkserver where available)")
    p.add_argument("--mpi-hostfile", metavar="FILE",
                   help="host file for the mpi backend's mpiexec, to spread its ranks over "
                        "machines (default: every rank on this machine)")
    p.add_argument("--mpi-timeout-s", type=float, metavar="S",
                   help="how long the mpi backend waits on its ranks before it calls one hung "
                        "and ends the case (default: 120)")
    p.add_argument("--chunks-per-worker", type=int, default=1, metavar="C",
                   help="split the problem into C chunks per thread or process (default 1); more "
                        "chunks balance uneven work such as mandelbrot's")
    p.add_argument("--seed", type=int, default=0, help="seed for inputs and case order")
    p.add_argument("--quick", action="store_true", help="a few small sizes, for a smoke test")
    p.add_argument("--output", "-o", default=DEFAULT_OUTPUT,
                   help=f"results JSON ({DEFAULT_OUTPUT})")
    p.add_argument("--csv", metavar="PATH", help="also write the case table as CSV")
    p.add_argument("--require-gpu", action="store_true",
                   help="exit with status 3 if no GPU backend can run")
    p.add_argument("--no-limits", action="store_true",
                   help="do not measure this machine's ceilings when `gpukit limits` has stored "
                        "none (about 2 s with --quick's plan, once per machine); the model then "
                        "derives what it can from the run")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's malloc thresholds as they are (gpukit fixes them so that "
                        "every backend allocates alike; see gpukit/allocator.py)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_table_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from gpukit import allocator, analysis, backends, ceilings, kernels, machine, runner
    from gpukit.reporting import tables
    from gpukit.commands.report import print_report, write_text
    from gpukit.results import Results
    from gpukit.timing import Budget

    kernel = kernels.load(args.kernel)
    param_sets = parse_param_sets(kernel, args.param)
    sizes = parse_sizes(args.sizes) if args.sizes else (
        kernel.default_sizes[:3] if args.quick else kernel.default_sizes)
    workers = parse_workers(args.workers) if args.workers else default_workers()
    names = (parse_names(args.backends, backends.NAMES, "backend") if args.backends
             else backends.DEFAULTS)
    impls = parse_names(args.impls, ("python", "numpy"), "implementation") if args.impls else None
    for value, what in ((args.budget_s, "--budget-s"), (args.run_limit_s, "--run-limit-s")):
        if not value > 0:
            raise UsageError(f"{what} must be a positive number of seconds")
    if args.min_reps < 1 or args.max_reps < args.min_reps:
        raise UsageError("repetitions need 1 <= --min-reps <= --max-reps")
    budget = Budget(budget_s=args.budget_s, min_reps=args.min_reps, max_reps=args.max_reps)
    if args.chunks_per_worker < 1:
        raise UsageError("--chunks-per-worker must be a positive integer")
    if args.mpi_hostfile and not os.path.isfile(args.mpi_hostfile):
        raise UsageError(f"MPI host file {args.mpi_hostfile} does not exist")
    if args.mpi_timeout_s is not None and not args.mpi_timeout_s > 0:
        raise UsageError("--mpi-timeout-s must be a positive number of seconds")
    settings = {"start_method": args.start_method,
                "chunks_per_worker": args.chunks_per_worker,
                "mpi_hostfile": args.mpi_hostfile}
    if args.mpi_timeout_s is not None:
        settings["mpi_timeout_s"] = args.mpi_timeout_s
    sweep = runner.Sweep(kernel, param_sets, sizes, workers, names, impls, budget,
                         args.run_limit_s, args.seed, settings)
    runner.check_fits(sweep)
    check_writable(args.output, "results")
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
    if not runner.plan(sweep, availability):
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

    out = console()
    err = console(stderr=True)
    # Before anything else starts a process: they inherit the thresholds.
    malloc = allocator.as_found() if args.default_malloc else allocator.steady()
    stored = None if args.no_limits else machine_ceilings(err)
    results = Results({**machine.facts(), "malloc": malloc}, sweep.to_json(),
                      ["gpukit", *sys.argv[1:]])
    for line in tables.backend_lines({"backends": availability, "sweep": results.data["sweep"]}):
        err.print(line, markup=False)
    interrupted = False
    t0 = time.perf_counter()
    try:
        with _progress(err, enabled=not args.no_progress) as progress:
            runner.Runner(sweep, results, progress).run(availability)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        results.finish(complete=not interrupted, wall_s=time.perf_counter() - t0,
                       note="interrupted" if interrupted else None)
        # The machine's ceilings travel with the results, so a report elsewhere holds the
        # cases against the same figures.
        stored = stored or ceilings.load(results.data["machine"])
        if stored:
            results.data["ceilings"] = stored
        record_serialized(results.data)
        path, save_error = _save(results, args.output)
    data = results.data
    an = analysis.analyze(data)
    print_report(out, data, an, table=args.table)
    if args.csv:
        write_text(args.csv, tables.csv_text(data, an), "CSV")
    counts = tables.status_counts(data)
    out.print()
    out.print(summary_line(data, counts, interrupted, path), markup=False)
    if save_error:
        print(f"error: {save_error}", file=sys.stderr)
    if interrupted:
        print("error: interrupted; the cases measured so far are saved in " + str(path),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if save_error:
        return EXIT_FAILED
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
    stored = ceilings.load(facts)
    if stored is not None:
        return stored
    err.print("No ceilings stored for this machine: measuring them once, quickly (`gpukit "
              "limits` measures them fully; --no-limits skips this).", markup=False)
    with tempfile.TemporaryDirectory(prefix="gpukit-limits-") as tmp:
        path = os.path.join(tmp, "ceilings.json")
        child = subprocess.run([sys.executable, "-m", "gpukit", "limits", "--quick", "--json",
                                path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
        found = ceilings.load(path=path) if os.path.exists(path) else None
    if found is None:
        # The model derives what it can from the run instead; the findings say what it lacks.
        last = (child.stderr.strip().splitlines() or ["no output"])[-1]
        err.print(f"warning: measuring the ceilings failed ({last}); the model uses what this "
                  f"run shows", markup=False)
    elif child.returncode != 0:
        err.print("warning: the ceilings could not be stored; this run uses them, the next "
                  "measures again", markup=False)
    return found


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
    return f"{head} in {data['wall_s']:.1f} s; results written to {path}"


def _save(results, output: str):
    """Save to `output`; if that fails now (the disk filled, the folder went), to a temporary
    file instead, so that nothing measured is lost. Returns the path and what went wrong."""
    try:
        return results.save(output), None
    except OSError as exc:
        import os
        import tempfile
        fallback = os.path.join(tempfile.gettempdir(), f"gpukit-results-{os.getpid()}.json")
        path = results.save(fallback)
        return path, (f"could not write {output} ({exc.strerror or exc}); "
                      f"the results are in {path}")


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
