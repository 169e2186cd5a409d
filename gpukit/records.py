"""The records of a run, as the results file holds them: a leaf that imports nothing of gpukit.

Whatever reads results (the analysis, the reports, `diff`) uses these without loading what ran
them: a backend, a kernel or an optional library (cupy, pycuda, mpi4py).

- `Variant`: one way a backend runs a kernel; `RunTiming`: one repetition's clocks;
  `Startup`: what a session or a problem paid once;
- `BackendTraits`: what the model and the findings need to know of a backend (where it runs,
  what its workers are, how it moves data, which ceilings price its phases), declared by the
  backend and stored per backend in the results file;
- `CaseRecord`: one case (a variant at one size and worker count) and its repetitions;
  `SessionRecord`: one opened session; `RunRecord`: a whole results file.

Each has `to_json` and `from_json`, which give and take exactly what the results file holds
(see gpukit.results for the format's history), so a record read from a file writes it back
unchanged. The analysis reads the saved dicts themselves (`case["summary"]...`): the records
define their shape, they do not wrap every access.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# The run phases, as gpukit.phases names them (repeated here: this module imports no gpukit).
_TRANSFER_IN, _COMPUTE, _TRANSFER_OUT = "transfer_in", "compute", "transfer_out"
_RUN_PHASES = (_TRANSFER_IN, _COMPUTE, _TRANSFER_OUT)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way a backend can run a kernel: `impl` plus backend options (transfer, memory)."""

    backend: str
    impl: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return "/".join([self.backend, self.impl, *(v for _, v in self.options)])

    def option(self, name: str, default: str | None = None) -> str | None:
        return dict(self.options).get(name, default)

    def to_json(self) -> dict:
        return {"backend": self.backend, "impl": self.impl, "options": dict(self.options),
                "label": self.label}

    @classmethod
    def from_json(cls, data: dict) -> Variant:
        return cls(data["backend"], data["impl"], tuple((data.get("options") or {}).items()))


@dataclasses.dataclass
class RunTiming:
    """One repetition: seconds per phase, the host wall clock around it, and extra clocks.

    `phases_s` holds the phases this backend can separate (transfer_in, compute, transfer_out).
    `wall_s` is the host clock around the whole repetition, synchronized at the end, and is the
    end-to-end figure. `device_s` holds the same phases from CUDA events where a GPU ran them,
    and `extra` anything a backend wants to keep beside them (per-worker clocks, streams, ...).
    """

    phases_s: dict[str, float]
    wall_s: float
    device_s: dict[str, float] | None = None
    extra: dict[str, Any] | None = None

    def to_json(self) -> dict:
        data = {"phases_s": self.phases_s, "wall_s": self.wall_s}
        if self.device_s is not None:
            data["device_s"] = self.device_s
        if self.extra:
            data["extra"] = self.extra
        return data

    @classmethod
    def from_json(cls, data: dict) -> RunTiming:
        return cls(dict(data["phases_s"]), data["wall_s"], data.get("device_s"), data.get("extra"))


@dataclasses.dataclass
class Startup:
    """What a session paid once before its first run, by named step, in seconds."""

    steps_s: dict[str, float] = dataclasses.field(default_factory=dict)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return float(sum(self.steps_s.values()))

    def to_json(self) -> dict:
        return {"steps_s": self.steps_s, "total_s": self.total_s, "facts": self.facts}

    @classmethod
    def from_json(cls, data: dict) -> Startup:
        # total_s is the sum of the steps, written for readers that want the one figure.
        return cls(dict(data.get("steps_s") or {}), dict(data.get("facts") or {}))


# -- what a backend is, to the model ---------------------------------------------------------------

# Where a backend computes.
CPU, GPU = "cpu", "gpu"
# What a backend's worker count counts; "" where it has no worker count to sweep.
THREAD, PROCESS, RANK = "thread", "process", "rank"
# How a run moves the data to where it computes and back: pickled to pool processes, copied
# through shared memory, scattered and gathered by MPI, copied over PCIe to a GPU.
PICKLE, SHM, SCATTER, PCIE = "pickle", "shm", "scatter", "pcie"


@dataclasses.dataclass(frozen=True)
class BackendTraits:
    """What the model and the findings need to know of a backend, and nothing else.

    A backend declares these (`Backend.traits`); the results file keeps them per backend, so
    that the analysis reads them from the results and never imports the backend. Figures are
    named as `gpukit limits` stores them; "" where the backend has no such cost.
    """

    device: str = CPU
    workers: str = ""
    # Its workers read and write the caller's arrays in place: nothing is moved.
    shares_memory: bool = True
    # The ways it can move data; where there are several, the variant's `transfer` option
    # says which a case used.
    moves_data: tuple[str, ...] = ()
    # The run phases its clock separates; the others it reports as zero.
    phases: tuple[str, ...] = (_COMPUTE,)
    # One core in the caller's own process: what every speedup is measured against.
    reference: bool = False
    # Its workers are threads of the caller's interpreter: a loop that holds the GIL runs on
    # one of them at a time.
    shares_gil: bool = False
    # A pool's cost per run: one task's round trip, what each further task adds to a fan-out,
    # and the phase its clock counts them in.
    dispatch_s: str = ""
    dispatch_extra_s: str = ""
    dispatch_phase: str = ""
    # A GPU's cost per run: one launch as this backend makes it, and that launch with a
    # synchronize after it against the same launch queued (the host's one wait at the end).
    launch_s: str = ""
    launch_sync_s: str = ""
    launch_queued_s: str = ""
    # The sweep setting that spreads its workers over other machines, whose network the model
    # has not measured: while it is set, the model predicts nothing for this backend.
    remote_setting: str = ""
    # Its workers are processes started by --start-method (fork would copy a CUDA context).
    start_method: bool = False

    @property
    def parallel(self) -> bool:
        """Whether its worker count is a sweep axis."""
        return bool(self.workers)

    def transfer(self, variant: dict | None) -> str:
        """How a case of this backend moves its data: the variant's `transfer` option where it
        chooses, else the one way the backend has, else "" (nothing moves)."""
        chosen = ((variant or {}).get("options") or {}).get("transfer")
        if chosen is not None:
            return chosen
        return self.moves_data[0] if len(self.moves_data) == 1 else ""

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["moves_data"] = list(self.moves_data)
        data["phases"] = list(self.phases)
        return data

    @classmethod
    def from_json(cls, data: dict) -> BackendTraits:
        # Fields a later gpukit added are left at their defaults; ones it dropped are ignored.
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("moves_data", "phases"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


# Results written before backends recorded their traits name the built-in backends only: this
# table says what those were, so an old file analyses as it always did. It is the one place
# outside gpukit.backends that knows the built-in names; tests hold it equal to what the
# backends declare today.
LEGACY_TRAITS = {
    "serial": BackendTraits(reference=True),
    "threads": BackendTraits(workers=THREAD, shares_gil=True, dispatch_s="thread_dispatch_s",
                             dispatch_extra_s="thread_dispatch_extra_s", dispatch_phase=_COMPUTE),
    "processes": BackendTraits(workers=PROCESS, shares_memory=False, moves_data=(PICKLE, SHM),
                               phases=_RUN_PHASES, dispatch_s="process_dispatch_s",
                               dispatch_extra_s="process_dispatch_extra_s",
                               dispatch_phase=_TRANSFER_IN, start_method=True),
    "mpi": BackendTraits(workers=RANK, shares_memory=False, moves_data=(SCATTER,),
                         phases=_RUN_PHASES, remote_setting="mpi_hostfile"),
    "cupy": BackendTraits(device=GPU, shares_memory=False, moves_data=(PCIE,), phases=_RUN_PHASES,
                          launch_s="launch_cupy_s", launch_sync_s="launch_cupy_sync_s",
                          launch_queued_s="launch_cupy_s"),
    "pycuda": BackendTraits(device=GPU, shares_memory=False, moves_data=(PCIE,),
                            phases=_RUN_PHASES, launch_s="launch_pycuda_s",
                            launch_sync_s="launch_pycuda_sync_s",
                            launch_queued_s="launch_pycuda_s"),
}
# Before traits, the model priced any other GPU backend's launches as CuPy's.
_LEGACY_OTHER_GPU = LEGACY_TRAITS["cupy"]


def backend_traits(data: dict, name: str) -> BackendTraits:
    """The traits of backend `name` in a results dict: as the file recorded them, else (a file
    from before they were recorded) from the table of built-in backends, else what the
    backend's `gpu` and `parallel` flags say, with no costs the model could price."""
    entry = (data.get("backends") or {}).get(name) or {}
    stored = entry.get("traits")
    if isinstance(stored, dict):
        return BackendTraits.from_json(stored)
    if name in LEGACY_TRAITS:
        return LEGACY_TRAITS[name]
    if entry.get("gpu"):
        return _LEGACY_OTHER_GPU
    return BackendTraits(workers="worker" if entry.get("parallel") else "")


def reference_backend(data: dict) -> str | None:
    """The backend every speedup is measured against (the first, should there be several)."""
    found = next((n for n in data["backends"] if backend_traits(data, n).reference), None)
    if found is None:
        # Cases name their backend even where a hand-made results dict lists no entry for it.
        found = next((c["backend"] for c in data["cases"]
                      if backend_traits(data, c["backend"]).reference), None)
    return found


# -- cases, sessions, runs ---------------------------------------------------------------------


@dataclasses.dataclass
class CaseRecord:
    """One case as the results file holds it: what ran, its work, and what came of it.

    `status` is None while it runs, then "ok" (with `runs` and `summary`), "failed" or
    "skipped" or "unavailable" (with `reason`). `summary` holds each figure's statistics as
    gpukit.timing.summarize computes them.
    """

    kernel: str
    params: dict[str, int]
    n: int
    variant: Variant
    workers: int
    work: dict[str, float]
    status: str | None = None
    reason: str | None = None
    session: int | None = None
    prepare: Startup | None = None
    check: dict | None = None
    runs: list[RunTiming] | None = None
    summary: dict | None = None

    @property
    def label(self) -> str:
        return self.variant.label

    def to_json(self) -> dict:
        data = {"kernel": self.kernel, "params": self.params, "n": self.n,
                "variant": self.variant.to_json(), "label": self.label,
                "backend": self.variant.backend, "impl": self.variant.impl,
                "workers": self.workers, "work": self.work, "status": self.status,
                "reason": self.reason}
        # What a case reached: a skipped one never had a session, a failed one may lack runs.
        for name, value in (("session", self.session), ("prepare", self.prepare),
                            ("check", self.check), ("runs", self.runs),
                            ("summary", self.summary)):
            if value is None:
                continue
            if name == "prepare":
                value = value.to_json()
            elif name == "runs":
                value = [r.to_json() for r in value]
            data[name] = value
        return data

    @classmethod
    def from_json(cls, data: dict) -> CaseRecord:
        variant = (Variant.from_json(data["variant"]) if data.get("variant")
                   else Variant(data["backend"], data["impl"]))
        prepare, runs = data.get("prepare"), data.get("runs")
        return cls(data["kernel"], dict(data["params"]), data["n"], variant, data["workers"],
                   dict(data["work"]), data.get("status"), data.get("reason"),
                   data.get("session"), Startup.from_json(prepare) if prepare is not None else None,
                   data.get("check"),
                   [RunTiming.from_json(r) for r in runs] if runs is not None else None,
                   data.get("summary"))


@dataclasses.dataclass
class SessionRecord:
    """One session (a variant at a worker count) and what opening it cost, or why it failed."""

    id: int
    variant: Variant
    workers: int
    startup: Startup | None = None
    error: str | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "variant": self.variant.to_json(), "workers": self.workers,
                "startup": self.startup.to_json() if self.startup is not None else None,
                "error": self.error}

    @classmethod
    def from_json(cls, data: dict) -> SessionRecord:
        startup = data.get("startup")
        return cls(data["id"], Variant.from_json(data["variant"]), data["workers"],
                   Startup.from_json(startup) if startup is not None else None,
                   data.get("error"))


@dataclasses.dataclass
class RunRecord:
    """A whole results file: the machine, the sweep, the backends, sessions and cases.

    `backends` maps each backend's name to what the runner found of it (summary, flags, facts,
    variants, availability and, since they were recorded, its traits); `extra` keeps fields
    this gpukit does not know, so that reading and writing a file loses nothing.
    """

    machine: dict
    sweep: dict
    backends: dict[str, dict] = dataclasses.field(default_factory=dict)
    sessions: list[SessionRecord] = dataclasses.field(default_factory=list)
    cases: list[CaseRecord] = dataclasses.field(default_factory=list)
    format: str = "gpukit-results"
    version: int = 1
    created: str | None = None
    command: list[str] = dataclasses.field(default_factory=list)
    complete: bool = False
    wall_s: float | None = None
    note: str | None = None
    ceilings: dict | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def traits(self, backend: str) -> BackendTraits:
        return backend_traits({"backends": self.backends}, backend)

    def to_json(self) -> dict:
        data = {"format": self.format, "version": self.version, "created": self.created,
                "command": self.command, "machine": self.machine, "sweep": self.sweep,
                "backends": self.backends, "sessions": [s.to_json() for s in self.sessions],
                "cases": [c.to_json() for c in self.cases], "complete": self.complete}
        for name in ("wall_s", "note", "ceilings"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        data.update(self.extra)
        return data

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        own = {"format", "version", "created", "command", "machine", "sweep", "backends",
               "sessions", "cases", "complete", "wall_s", "note", "ceilings"}
        return cls(data["machine"], data["sweep"], dict(data["backends"]),
                   [SessionRecord.from_json(s) for s in data["sessions"]],
                   [CaseRecord.from_json(c) for c in data["cases"]],
                   data.get("format", "gpukit-results"), data.get("version", 1),
                   data.get("created"), list(data.get("command") or []),
                   bool(data.get("complete", False)), data.get("wall_s"), data.get("note"),
                   data.get("ceilings"), {k: v for k, v in data.items() if k not in own})
