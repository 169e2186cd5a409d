"""The results file: versioned JSON holding every case, every repetition and the machine.

Format history (bump FORMAT_VERSION on any change a reader must know about):
  1: first version: machine, sweep, backends, sessions, cases with runs and summaries; an
     optional `ceilings` (the machine's stored `gpukit limits` figures at the time of the run),
     added without a bump since readers that ignore it lose nothing.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path

from gpukit.backends.base import Variant
from gpukit.errors import UsageError

FORMAT = "gpukit-results"
FORMAT_VERSION = 1


class Results:
    def __init__(self, machine: dict, sweep: dict, command: list[str] | None = None):
        self.data = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
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

    def add_session(self, sid: int, variant: Variant, workers: int, startup: dict | None,
                    error: str | None = None) -> None:
        self.data["sessions"].append({"id": sid, "variant": variant.to_json(), "workers": workers,
                                      "startup": startup, "error": error})

    def add_case(self, record: dict) -> None:
        self.data["cases"].append(record)

    def finish(self, complete: bool, wall_s: float, note: str | None = None) -> None:
        self.data["complete"] = complete
        self.data["wall_s"] = wall_s
        if note:
            self.data["note"] = note

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a crash mid-write never leaves a truncated results file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent=1, default=_jsonable)
            f.write("\n")
        # mkstemp makes the file private (0600); a results file is for sharing, so give it the
        # mode any new file gets here.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        return path


def _jsonable(value):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in results JSON")


def load(path: str | os.PathLike) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"no such results file: {path}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    if data.get("format") != FORMAT:
        raise UsageError(f"{path} is not a gpukit results file")
    if data.get("version", 0) > FORMAT_VERSION:
        raise UsageError(f"{path} has results format {data['version']}; this gpukit reads up to "
                         f"{FORMAT_VERSION}")
    return data
