"""The sweep: which cases to run, in what order, and the measuring of each.

A case is one (kernel parameters, n, backend variant, workers). Cases run size by size, from
small to large, in shuffled order within each size, so that a slow drift of the machine (heat,
another tenant) does not line up with one backend. A (variant, workers, parameters) series whose
next size is predicted to take longer than `run_limit_s` per run is not run at larger sizes.

Sessions (thread and process pools, CUDA contexts) are opened once per (variant, workers) and
kept for the whole sweep, as a user's program would keep them; what opening one cost is its
startup, reported once and kept out of the per-run figures.

Results accumulate in a `Results` object the caller holds, so whatever was measured before an
interruption or error is still there to be saved.

Faults: each session's work (open, prepare, runs, release, close) runs on a thread of its own,
a lane, and the runner waits on it with a deadline (`case_timeout_s`) in short slices, so that
Ctrl-C reaches it at once. A case that has not finished in time fails with that reason; its
session is aborted (its processes or ranks killed, see Backend.abort) and dropped, and the next
case of that variant opens a new one. A Python thread cannot be killed: a hung serial or thread
pool case is abandoned on its daemon thread, which ends when gpukit exits. Anything a kernel
raises on a lane fails its case, SystemExit and KeyboardInterrupt included: only the main
thread's KeyboardInterrupt is the user's.
"""

from __future__ import annotations

import dataclasses
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from gpukit import backends, machine
from gpukit.backends.base import Backend, Variant
from gpukit.errors import BackendUnavailable, GpukitError, KernelError, UsageError
from gpukit.kernels.base import Kernel
from gpukit.kernels.checks import output_problem
from gpukit.records import CaseRecord
from gpukit.results import SKIPPED_AFTER_FAILURE, Results
from gpukit.timing import Budget, repeat, summarize

OK, FAILED, SKIPPED, UNAVAILABLE = "ok", "failed", "skipped", "unavailable"

# A case (a session's start included) that takes longer fails as hung. Generous: the run limit
# stops a series before one run takes more than a fraction of a second, and the slowest
# legitimate first case (a CUDA compile, a 16-rank MPI start, min-reps runs of a large size)
# takes a minute or two.
DEFAULT_CASE_TIMEOUT_S = 600.0
# How long closing one session may take at the end of a sweep, and after a stop.
CLOSE_TIMEOUT_S, STOP_CLOSE_TIMEOUT_S = 30.0, 1.0
# The main thread waits on a case in slices this long. A signal interrupts a wait at once where
# lock waits are interruptible (POSIX); elsewhere the slice bounds how late Ctrl-C is seen. Each
# wake-up takes the GIL from a pure-Python case for a moment: 4 a second disturb it little.
_WAIT_SLICE_S = 0.25


@dataclasses.dataclass(frozen=True)
class Sweep:
    kernel: Kernel
    param_sets: tuple[dict[str, int], ...]
    sizes: tuple[int, ...]
    workers: tuple[int, ...]
    backends: tuple[str, ...]
    impls: tuple[str, ...] | None = None
    budget: Budget = Budget()
    run_limit_s: float = 0.25
    seed: int = 0
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    case_timeout_s: float = DEFAULT_CASE_TIMEOUT_S

    def to_json(self) -> dict:
        return {
            "kernel": self.kernel.name,
            "kernel_spec": self.kernel.spec,
            "kernel_multiply_add": self.kernel.multiply_add_work,
            "kernel_rowwise": self.kernel.rowwise,
            "implementations": self.kernel.describe()["implementations"],
            "param_sets": list(self.param_sets),
            "sizes": list(self.sizes),
            "workers": list(self.workers),
            "backends": list(self.backends),
            "impls": list(self.impls) if self.impls else None,
            "budget": dataclasses.asdict(self.budget),
            "run_limit_s": self.run_limit_s,
            "seed": self.seed,
            "settings": dict(self.settings),
            "case_timeout_s": self.case_timeout_s,
        }


@dataclasses.dataclass(frozen=True)
class Case:
    params: tuple[tuple[str, int], ...]
    n: int
    variant: Variant
    workers: int

    @property
    def series(self):
        """Everything but n: the cases of one line on a time-vs-n plot."""
        return (self.params, self.variant, self.workers)

    @property
    def params_dict(self) -> dict[str, int]:
        return dict(self.params)


# Called after each case with (cases done, cases planned, the case's record).
Progress = Callable[[int, int, dict], None]


def probe_backends(names, kernel: Kernel) -> dict[str, dict]:
    """Availability of each named backend for this kernel: facts, or the reason it can't run."""
    status = {}
    for name in names:
        cls = backends.get(name)
        entry = {"summary": cls.summary, "gpu": cls.gpu, "parallel": cls.parallel,
                 "traits": cls.traits.to_json()}
        try:
            entry["facts"] = cls.check_available()
            entry["variants"] = [v.label for v in cls.variants(kernel)]
            if not entry["variants"]:
                has = ", ".join(kernel.describe()["implementations"]) or "none"
                raise BackendUnavailable(f"kernel {kernel.name} has no implementation this "
                                         f"backend runs (it has: {has})")
            entry["available"] = True
        except BackendUnavailable as exc:
            entry.update(available=False, reason=str(exc))
        status[name] = entry
    return status


def plan(sweep: Sweep, available: Mapping[str, dict]) -> list[Case]:
    cases = []
    for name in sweep.backends:
        if not available[name]["available"]:
            continue
        cls = backends.get(name)
        for variant in cls.variants(sweep.kernel):
            # --impls names CPU implementations; a GPU variant runs whatever its impl.
            if sweep.impls and variant.impl not in sweep.impls and not cls.gpu:
                continue
            for workers in (sweep.workers if cls.parallel else (1,)):
                for params in sweep.param_sets:
                    for n in sweep.sizes:
                        cases.append(Case(tuple(sorted(params.items())), n, variant, workers))
    return cases


def order(cases: list[Case], seed: int) -> list[Case]:
    """Sizes ascending; shuffled within each size."""
    rng = random.Random(seed)
    by_size: dict[int, list[Case]] = {}
    for case in cases:
        by_size.setdefault(case.n, []).append(case)
    ordered = []
    for n in sorted(by_size):
        group = by_size[n]
        rng.shuffle(group)
        ordered.extend(group)
    return ordered


class CaseTimeout(Exception):
    """A job on a lane did not finish before its deadline."""


class _Raised(Exception):
    """What a job on a lane raised, carried to the main thread as it is: the runner then tells
    a kernel's KeyboardInterrupt (a failed case) from the user's (the end of the sweep)."""

    def __init__(self, exc: BaseException):
        super().__init__(exc)
        self.exc = exc


class Lane:
    """A daemon thread that does one session's work, one job at a time.

    One thread per session keeps every call of a session on the thread that opened it (a CUDA
    context is current on one thread). Daemon, so that a job that never returns, abandoned after
    its deadline, does not hold gpukit open at exit."""

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.busy = False
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, done, box = job
            try:
                box.append((True, fn()))
            except BaseException as exc:  # a kernel's SystemExit fails its case, not gpukit
                box.append((False, exc))
            done.set()

    def call(self, fn: Callable[[], Any], timeout_s: float):
        """fn() run on this lane: its value, `_Raised` with what it raised, or `CaseTimeout`
        (the lane stays busy with it). The wait is in short slices: signals are seen at once."""
        done, box = threading.Event(), []
        self.busy = True
        self._jobs.put((fn, done, box))
        deadline = time.monotonic() + timeout_s
        while not done.wait(_WAIT_SLICE_S):
            if time.monotonic() >= deadline:
                raise CaseTimeout(timeout_s)
        self.busy = False
        ok, value = box[0]
        if not ok:
            raise _Raised(value)
        return value

    def stop(self) -> None:
        """The thread ends after its current job (now, if it is idle)."""
        self._jobs.put(None)


class Runner:
    def __init__(self, sweep: Sweep, results: Results, progress: Progress | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.sweep = sweep
        self.results = results
        self.progress = progress
        self.clock = clock
        self._sessions: dict[tuple[Variant, int], Backend | BaseException] = {}
        self._lanes: dict[tuple[Variant, int], Lane] = {}
        self._session_ids: dict[tuple[Variant, int], int] = {}
        self._cut: dict[tuple, str] = {}
        self._last_wall: dict[tuple, tuple[int, float]] = {}
        self._problems: dict[tuple, tuple] = {}

    # -- the sweep ---------------------------------------------------------------------------

    def run(self, availability: Mapping[str, dict] | None = None) -> Results:
        sweep = self.sweep
        if availability is None:
            availability = probe_backends(sweep.backends, sweep.kernel)
        self.results.set_backends(availability)
        cases = order(plan(sweep, availability), sweep.seed)
        self.results.planned = len(cases)
        stopped = True
        try:
            current_n = None
            for done, case in enumerate(cases, start=1):
                if case.n != current_n:
                    self._problems.clear()  # free the previous size's inputs and references
                    current_n = case.n
                saved = self.results.add_case(self._run_case(case))
                if self.progress:
                    self.progress(done, len(cases), saved)
            stopped = False
        finally:
            self._problems.clear()
            self._close_sessions(stopping=stopped)
        return self.results

    def _run_case(self, case: Case) -> CaseRecord:
        record = self._base_record(case)
        reason = self._cut.get(case.series)
        if reason is None:
            reason = self._predicted_too_slow(case)
        if reason is not None:
            record.status, record.reason = SKIPPED, reason
            return record
        deadline = time.monotonic() + self.sweep.case_timeout_s
        session = self._session(case, deadline)
        if isinstance(session, BaseException):
            status = UNAVAILABLE if isinstance(session, BackendUnavailable) else FAILED
            record.status = status
            record.reason = f"session did not start: {_text(session)}"
            return record
        key = (case.variant, case.workers)
        record.session = self._session_ids[key]
        # Reasons name the kernel and the implementation: with a user's kernel, which of their
        # functions failed is the first thing they need to know.
        where = (f"kernel {self.sweep.kernel.name}, {case.variant.impl} implementation on "
                 f"{case.variant.label} x{case.workers}")
        # The job fills its own copy: a hung one abandoned on its lane may still write to it.
        job = dataclasses.replace(record)
        try:
            self._lanes[key].call(lambda: self._measure_and_release(case, session, job, where),
                                  max(0.0, deadline - time.monotonic()))
        except CaseTimeout:
            done = self._retire(key, stuck=True)
            _fail(record, f"{where}: did not finish within "
                          f"{self.sweep.case_timeout_s:g} s (--case-timeout-s): stopped as hung; "
                          f"{done}")
            self._cut[case.series] = f"{SKIPPED_AFTER_FAILURE}: it hung"
            return record
        except _Raised as raised:
            exc = raised.exc
            if isinstance(exc, (UsageError, KernelError)):
                _fail(record, f"{where}: {exc}")
                self._cut[case.series] = f"{SKIPPED_AFTER_FAILURE}: {exc}"
            else:
                # A backend or kernel failure ends this case, not the sweep. The session may be
                # broken (a pool worker killed, a rank gone): the next case starts a new one.
                _fail(record, f"{where}: {_text(exc)}")
                self._cut[case.series] = SKIPPED_AFTER_FAILURE
                self._retire(key, stuck=False)
            return record
        return job

    def _measure_and_release(self, case: Case, session: Backend, record: CaseRecord,
                             where: str) -> None:
        try:
            self._measure(case, session, record, where)
        finally:
            try:
                session.release()
            except Exception:
                pass

    def _measure(self, case: Case, session: Backend, record: CaseRecord, where: str = "") -> None:
        kernel, params = self.sweep.kernel, case.params_dict
        try:
            inputs, ref = self._problem(case)
        except BaseException as exc:  # on a lane: a KeyboardInterrupt here is the kernel's
            raise KernelError(f"make_inputs or reference raised {type(exc).__name__}: {exc}") \
                from exc
        record.prepare = session.prepare(kernel, params, inputs)
        # Warm-up runs are not counted; the first one's output is checked before any timing.
        for i in range(max(1, self.sweep.budget.warmup)):
            out, first = session.run()
            if i == 0:
                problem = output_problem(out, kernel.output_dtypes(params), case.n)
                if problem:
                    raise KernelError(f"wrong output: {problem}")
                check = kernel.check(out, ref, inputs, params)
                record.check = check.to_json()
                if not check.ok:
                    record.status = FAILED
                    record.reason = (f"{where}: output disagrees with the reference: "
                                     f"error {check.error:.3g} > tolerance {check.tolerance:.3g}"
                                     + (f" ({check.detail})" if check.detail else ""))
                    self._cut[case.series] = f"{SKIPPED_AFTER_FAILURE}: it gave a wrong result"
                    return
            del out
        runs = repeat(lambda: session.run()[1], self.sweep.budget, self.clock)
        record.runs = runs
        record.summary = summarize(runs)
        record.status = OK
        self._last_wall[case.series] = (case.n, record.summary["wall_s"]["median"])

    def _predicted_too_slow(self, case: Case) -> str | None:
        last = self._last_wall.get(case.series)
        if last is None:
            return None
        n0, wall0 = last
        # Scaled by the work model, not by n: nbody's work grows as n^2.
        params = case.params_dict
        work0 = self.sweep.kernel.work(n0, params).flops
        growth = self.sweep.kernel.work(case.n, params).flops / work0 if work0 > 0 else 0.0
        predicted = wall0 * max(growth, case.n / n0)
        if predicted > self.sweep.run_limit_s:
            self._cut[case.series] = (f"skipped: predicted {predicted:.3g} s per run from "
                                      f"n={n0} > limit {self.sweep.run_limit_s:g} s")
            return self._cut[case.series]
        return None

    # -- shared state ------------------------------------------------------------------------

    def _problem(self, case: Case):
        """Inputs and float64 reference for (n, params), made once and shared by every variant."""
        key = (case.n, case.params)
        if key not in self._problems:
            params = case.params_dict
            inputs = self.sweep.kernel.make_inputs(case.n, params, seed=self.sweep.seed)
            self._problems[key] = (inputs, self.sweep.kernel.reference(inputs, params))
        return self._problems[key]

    def _session(self, case: Case, deadline: float):
        """The open session of this case's (variant, workers), opened now on a lane of its own
        if there is none; or what stopped it from starting."""
        key = (case.variant, case.workers)
        if key in self._sessions:
            return self._sessions[key]
        cls = backends.get(case.variant.backend)
        session = cls(case.variant, case.workers, self.sweep.settings)
        # Ids count every session opened: one that hung or broke is followed by a new one.
        sid = len(self.results.data["sessions"])
        self._session_ids[key] = sid
        lane = Lane(f"gpukit {case.variant.label} x{case.workers}")
        # Known before it opens: a Ctrl-C while it starts aborts it with the others.
        self._sessions[key], self._lanes[key] = session, lane
        try:
            startup = lane.call(session.open, max(0.0, deadline - time.monotonic()))
        except CaseTimeout:
            done = _abort(session)
            lane.stop()
            del self._lanes[key]
            error: BaseException = GpukitError(
                f"no answer within {self.sweep.case_timeout_s:g} s (--case-timeout-s); {done}")
            self._sessions[key] = error
            self.results.add_session(sid, case.variant, case.workers, None, error=str(error))
            return error
        except _Raised as raised:
            _close_on(lane, session, CLOSE_TIMEOUT_S)
            lane.stop()
            del self._lanes[key]
            self._sessions[key] = raised.exc
            self.results.add_session(sid, case.variant, case.workers, None,
                                     error=_text(raised.exc))
            return raised.exc
        self.results.add_session(sid, case.variant, case.workers, startup)
        return session

    def _retire(self, key, stuck: bool) -> str:
        """Drop a session that hung (`stuck`: its lane is still busy) or failed: aborted or
        closed, so that the next case of its variant starts a new one. Says what was done."""
        session, lane = self._sessions.pop(key, None), self._lanes.pop(key, None)
        done = "the sweep goes on"
        if isinstance(session, Backend):
            if stuck:
                done = _abort(session) + "; the sweep goes on"
            elif lane is not None:
                _close_on(lane, session, CLOSE_TIMEOUT_S)
        if lane is not None:
            lane.stop()
        return done

    def _close_sessions(self, stopping: bool) -> None:
        """Close every session at the end of the sweep. When it was stopped (Ctrl-C, a signal,
        an error), first abort each, which kills processes and ranks at once, then give each
        idle one a moment to close; the busy one's thread is left (a daemon)."""
        try:
            for key in list(self._sessions):
                session, lane = self._sessions[key], self._lanes.get(key)
                if isinstance(session, Backend):
                    if stopping:
                        _abort(session)
                    if lane is not None and not lane.busy:
                        _close_on(lane, session,
                                  STOP_CLOSE_TIMEOUT_S if stopping else CLOSE_TIMEOUT_S)
                    elif not stopping:
                        _abort(session)
                if lane is not None:
                    lane.stop()
                del self._sessions[key]
                self._lanes.pop(key, None)
        except KeyboardInterrupt:
            if not stopping:
                self._close_sessions(stopping=True)
            raise

    def _base_record(self, case: Case) -> CaseRecord:
        work = self.sweep.kernel.work(case.n, case.params_dict)
        return CaseRecord(self.sweep.kernel.name, case.params_dict, case.n, case.variant,
                          case.workers, {"flops": work.flops, "bytes_in": work.bytes_in,
                                         "bytes_out": work.bytes_out})


def _fail(record: CaseRecord, reason: str) -> None:
    record.status, record.reason = FAILED, reason


def _text(exc: BaseException) -> str:
    if isinstance(exc, GpukitError):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _abort(session: Backend) -> str:
    """Backend.abort, which must not raise; says what it did."""
    try:
        done = session.abort()
    except Exception as exc:
        done = f"stopping it failed ({_text(exc)})"
    return done or ("a Python thread cannot be stopped: it is left to run until gpukit exits, "
                    "and shares the machine with the cases after it")


def _close_on(lane: Lane, session: Backend, timeout_s: float) -> None:
    """Close a session on its own lane; abort it if that takes too long or fails."""
    try:
        lane.call(session.close, timeout_s)
    except (CaseTimeout, _Raised):
        _abort(session)


def host_memory_needed(kernel: Kernel, n: int, params: Mapping[str, int]) -> int:
    """Bytes of host memory the largest case needs at once, counted before allocating.

    Inputs and outputs once, the float64 reference and its error scale (each twice the float32
    size), and a second copy of inputs and outputs for pickling or shared memory.
    """
    work = kernel.work(n, params)
    return 2 * work.bytes_total + 4 * work.bytes_out


def check_fits(sweep: Sweep) -> None:
    available = machine.available_memory_bytes()
    if available is None:
        return
    n = max(sweep.sizes)
    for params in sweep.param_sets:
        need = host_memory_needed(sweep.kernel, n, params)
        if need > available:
            raise UsageError(f"size {n} needs about {need / 2**30:.1f} GiB of host memory; "
                             f"{available / 2**30:.1f} GiB is available")


__all__ = ["Case", "GpukitError", "Runner", "Sweep", "check_fits", "plan", "order",
           "probe_backends", "OK", "FAILED", "SKIPPED", "UNAVAILABLE"]
