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
"""

from __future__ import annotations

import dataclasses
import random
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


class Runner:
    def __init__(self, sweep: Sweep, results: Results, progress: Progress | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.sweep = sweep
        self.results = results
        self.progress = progress
        self.clock = clock
        self._sessions: dict[tuple[Variant, int], Backend | BaseException] = {}
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
        try:
            current_n = None
            for done, case in enumerate(cases, start=1):
                if case.n != current_n:
                    self._problems.clear()  # free the previous size's inputs and references
                    current_n = case.n
                saved = self.results.add_case(self._run_case(case))
                if self.progress:
                    self.progress(done, len(cases), saved)
        finally:
            self._problems.clear()
            self._close_sessions()
        return self.results

    def _run_case(self, case: Case) -> CaseRecord:
        record = self._base_record(case)
        reason = self._cut.get(case.series)
        if reason is None:
            reason = self._predicted_too_slow(case)
        if reason is not None:
            record.status, record.reason = SKIPPED, reason
            return record
        session = self._session(case)
        if isinstance(session, BaseException):
            status = UNAVAILABLE if isinstance(session, BackendUnavailable) else FAILED
            record.status, record.reason = status, f"session did not start: {session}"
            return record
        record.session = self._session_ids[(case.variant, case.workers)]
        # Reasons name the kernel and the implementation: with a user's kernel, which of their
        # functions failed is the first thing they need to know.
        where = (f"kernel {self.sweep.kernel.name}, {case.variant.impl} implementation on "
                 f"{case.variant.label} x{case.workers}")
        try:
            self._measure(case, session, record, where)
        except (UsageError, KernelError) as exc:
            record.status, record.reason = FAILED, f"{where}: {exc}"
            self._cut[case.series] = f"{SKIPPED_AFTER_FAILURE}: {exc}"
        except Exception as exc:  # a backend or kernel failure ends this case, not the sweep
            record.status, record.reason = FAILED, f"{where}: {type(exc).__name__}: {exc}"
            self._cut[case.series] = SKIPPED_AFTER_FAILURE
        finally:
            try:
                session.release()
            except Exception:
                pass
        return record

    def _measure(self, case: Case, session: Backend, record: CaseRecord, where: str = "") -> None:
        kernel, params = self.sweep.kernel, case.params_dict
        try:
            inputs, ref = self._problem(case)
        except Exception as exc:
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

    def _session(self, case: Case):
        key = (case.variant, case.workers)
        if key not in self._sessions:
            cls = backends.get(case.variant.backend)
            session = cls(case.variant, case.workers, self.sweep.settings)
            sid = len(self._session_ids)
            self._session_ids[key] = sid
            try:
                startup = session.open()
                self._sessions[key] = session
                self.results.add_session(sid, case.variant, case.workers, startup)
            except Exception as exc:
                session.close()
                self._sessions[key] = exc
                self.results.add_session(sid, case.variant, case.workers, None, error=str(exc))
        return self._sessions[key]

    def _close_sessions(self) -> None:
        for session in self._sessions.values():
            if isinstance(session, Backend):
                try:
                    session.close()
                except Exception:
                    pass

    def _base_record(self, case: Case) -> CaseRecord:
        work = self.sweep.kernel.work(case.n, case.params_dict)
        return CaseRecord(self.sweep.kernel.name, case.params_dict, case.n, case.variant,
                          case.workers, {"flops": work.flops, "bytes_in": work.bytes_in,
                                         "bytes_out": work.bytes_out})


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
