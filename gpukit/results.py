"""The results file: versioned JSON holding every case, every repetition and the machine.

Format history (bump FORMAT_VERSION on any change a reader must know about):
  1: first version: machine, sweep, backends, sessions, cases with runs and summaries; an
     optional `ceilings` (the machine's stored `gpukit limits` figures at the time of the run),
     added without a bump since readers that ignore it lose nothing; then each backend's
     `traits` (what the model needs to know of it, gpukit.records.BackendTraits), also without
     a bump: a file without them is read through the table of built-in backends; likewise an
     optional `load` (the machine's load before and after the sweep, and whether it was too
     busy to trust), which files from before it lack.

The records of gpukit.records write and read every part of it.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import os
import tempfile
from pathlib import Path

from gpukit import phases
from gpukit.errors import UsageError
from gpukit.records import BackendTraits, CaseRecord, SessionRecord, Startup, Variant

FORMAT = "gpukit-results"
FORMAT_VERSION = 1
# How the reason of a case the runner skipped because a smaller size of its series failed (an
# error or a wrong result) begins: such a size is as unknown as the failed one, unlike one the
# run limit skipped.
SKIPPED_AFTER_FAILURE = "a smaller size failed"


class Results:
    def __init__(self, machine: dict, sweep: dict, command: list[str] | None = None):
        self.data = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": command or [],
            "machine": machine,
            "sweep": sweep,
            "backends": {},
            "sessions": [],
            "cases": [],
            "complete": False,
        }
        self.planned = 0

    @property
    def cases(self) -> list[dict]:
        return self.data["cases"]

    def set_backends(self, availability: dict) -> None:
        self.data["backends"] = availability
        for entry in availability.values():
            # GPU facts (device name, driver) belong to the machine as well.
            gpu = entry.get("facts", {}).get("device")
            if entry.get("gpu") and gpu and "gpu" not in self.data["machine"]:
                self.data["machine"]["gpu"] = entry["facts"]

    def add_session(self, sid: int, variant: Variant, workers: int, startup: Startup | None,
                    error: str | None = None) -> None:
        self.data["sessions"].append(SessionRecord(sid, variant, workers, startup, error).to_json())

    def add_case(self, record: CaseRecord) -> dict:
        """Keep a finished case; returns what the file holds of it."""
        self.data["cases"].append(record.to_json())
        return self.data["cases"][-1]

    def finish(self, complete: bool, wall_s: float, note: str | None = None) -> None:
        # Complete means every planned case ran (ok, failed or skipped): a sweep cut short by
        # anything, a kernel's SystemExit included, is not.
        self.data["complete"] = bool(complete) and len(self.cases) >= self.planned
        self.data["wall_s"] = wall_s
        if note:
            self.data["note"] = note

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a crash mid-write never leaves a truncated results file, and a
        write that fails (a full disk, a file size limit) leaves no temporary file behind.
        Only a regular file is replaced: anything else at `path` is an OSError."""
        path = Path(path)
        if path.exists() and not path.is_file():
            raise OSError(errno.EEXIST, "it is not a regular file", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.data, f, indent=1, default=_jsonable)
                f.write("\n")
            # mkstemp makes the file private (0600); a results file is for sharing, so give it
            # the mode any new file gets here.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path


def holds_complete_run(path: str | os.PathLike) -> bool:
    """Whether `path` is a results file of a sweep that ran every case: one an interrupted run
    must not replace."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT and data.get("complete") is True


def _jsonable(value):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in results JSON")


def load(path: str | os.PathLike) -> dict:
    """A results file, checked enough that reading any field a report uses cannot fail."""
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        # A FIFO or a device would block the read, or never end it.
        raise UsageError(f"{path} is not a regular file; give a results file")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"no such results file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder; give a results file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not JSON: it is not even text") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path} is not a gpukit results file")
    version = data.get("version", 0)
    if not _is_number(version):
        raise UsageError(f"{path} is a damaged results file: version is {version!r}")
    if version > FORMAT_VERSION:
        raise UsageError(f"{path} has results format {version}; this gpukit reads up to "
                         f"{FORMAT_VERSION}")
    problem = structure_problem(data)
    if problem:
        raise UsageError(f"{path} is a damaged results file: {problem}")
    return data


# -- structure -----------------------------------------------------------------------------------
# What the report, page, plots and analysis read without checking. A hand-edited or truncated
# file fails here with the field's place named, rather than half way through a report.


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind_problem(value, kind, where: str) -> str | None:
    if kind == "number":
        return None if _is_number(value) else f"{where} should be a number, not {value!r:.40}"
    names = {dict: "an object", list: "a list", str: "a string"}
    if not isinstance(value, kind):
        return f"{where} should be {names[kind]}, not {type(value).__name__}"
    return None


def _fields_problem(obj: dict, fields: dict, where: str) -> str | None:
    """The first of `fields` (name -> type or 'number') missing from `obj` or of the wrong kind."""
    for name, kind in fields.items():
        place = f"{where}.{name}" if where else name
        if name not in obj:
            return f"{place} is missing"
        problem = _kind_problem(obj[name], kind, place)
        if problem:
            return problem
    return None


TOP_FIELDS = {"machine": dict, "sweep": dict, "backends": dict, "sessions": list, "cases": list}
SWEEP_FIELDS = {"kernel": str, "param_sets": list}
CASE_FIELDS = {"label": str, "backend": str, "params": dict, "n": "number",
               "workers": "number"}
WORK_FIELDS = {"flops": "number", "bytes_in": "number", "bytes_out": "number"}
# The statistics the report's tables and plots take from each summary.
RUN_PHASE_FIELDS = {name: dict for name in phases.RUN_PHASES}
STAT_FIELDS = {"median": "number", "q1": "number", "q3": "number", "rel_spread": "number"}


def structure_problem(data: dict) -> str | None:
    """What is wrong with a results file's structure, in a few words, or None."""
    problem = (_fields_problem(data, TOP_FIELDS, "")
               or _fields_problem(data["sweep"], SWEEP_FIELDS, "sweep"))
    if problem:
        return problem
    for i, pset in enumerate(data["sweep"]["param_sets"]):
        problem = problem or _kind_problem(pset, dict, f"sweep.param_sets[{i}]")
    for name, entry in data["backends"].items():
        problem = problem or _backend_problem(entry, f"backends.{name}")
    for i, session in enumerate(data["sessions"]):
        problem = problem or _session_problem(session, f"sessions[{i}]")
    for i, case in enumerate(data["cases"]):
        problem = problem or _case_problem(case, f"cases[{i}]")
    return problem or _ceilings_problem(data.get("ceilings"))


def _ceilings_problem(stored) -> str | None:
    """The machine's ceilings saved with the run, which the model reads as it reads a cache."""
    from gpukit import ceilings
    if stored is None:
        return None
    if not isinstance(stored, dict):
        return f"ceilings should be an object, not {type(stored).__name__}"
    problem = ceilings.structure_problem(stored)
    return f"ceilings: {problem}" if problem else None


def _backend_problem(entry, where: str) -> str | None:
    problem = _kind_problem(entry, dict, where)
    if problem or entry.get("traits") is None:
        return problem
    traits = entry["traits"]
    problem = _kind_problem(traits, dict, f"{where}.traits")
    # Each field the model reads must be of its declared kind; unknown ones are a later gpukit's.
    for field in dataclasses.fields(BackendTraits) if not problem else ():
        value = traits.get(field.name, field.default)
        if isinstance(field.default, tuple):
            ok, kind = (isinstance(value, (list, tuple))
                        and all(isinstance(v, str) for v in value)), "a list of strings"
        elif isinstance(field.default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        else:
            ok, kind = isinstance(value, str), "a string"
        if not ok:
            return f"{where}.traits.{field.name} should be {kind}, not {value!r:.40}"
    return problem


def _session_problem(session, where: str) -> str | None:
    problem = _kind_problem(session, dict, where) or _fields_problem(session, {"id": "number"},
                                                                     where)
    if problem or session.get("startup") is None:
        return problem
    startup = session["startup"]
    return (_kind_problem(startup, dict, f"{where}.startup")
            or _fields_problem(startup, {"total_s": "number", "facts": dict}, f"{where}.startup"))


def _case_problem(case, where: str) -> str | None:
    problem = _kind_problem(case, dict, where) or _fields_problem(case, CASE_FIELDS, where)
    if problem or case.get("status") != "ok":
        # Only cases that ran are timed; a failed or skipped one carries a reason instead.
        return problem
    problem = (_fields_problem(case, {"work": dict, "summary": dict}, where)
               or _fields_problem(case["work"], WORK_FIELDS, f"{where}.work")
               or _fields_problem(case["summary"], {"wall_s": dict, "phases_s": dict},
                                  f"{where}.summary")
               or _fields_problem(case["summary"]["wall_s"], STAT_FIELDS,
                                  f"{where}.summary.wall_s")
               or _fields_problem(case["summary"]["phases_s"], RUN_PHASE_FIELDS,
                                  f"{where}.summary.phases_s"))
    if problem:
        return problem
    clocks = {"phases_s": case["summary"]["phases_s"]}
    if case["summary"].get("device_s") is not None:
        clocks["device_s"] = case["summary"]["device_s"]
    for clock, by_phase in clocks.items():
        problem = problem or _kind_problem(by_phase, dict, f"{where}.summary.{clock}")
        for name, stats in (by_phase.items() if not problem else ()):
            place = f"{where}.summary.{clock}.{name}"
            problem = problem or _kind_problem(stats, dict, place) or \
                _fields_problem(stats, {"median": "number"}, place)
    return problem
