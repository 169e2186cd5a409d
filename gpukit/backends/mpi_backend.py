"""mpi: R MPI ranks started by the MPI launcher (`mpiexec`), via mpi4py. The workers axis is R.

A session is one persistent group of ranks, as an MPI job keeps its ranks: `open()` runs
`mpiexec -n R python -m gpukit.backends.mpi_worker` and waits for rank 0 to connect back over a
TCP control channel (startup = launcher + MPI_Init + that handshake); `close()` ends the job.
In MPI terms the data starts and ends on rank 0: `prepare()` hands rank 0 the inputs once, and
each run's phases are rank 0's `MPI.Wtime` spans of Scatterv + Bcast (transfer_in), the
chunks' compute between barriers (compute) and Gatherv (transfer_out); see mpi_worker.

Failure: every wait on the control channel has a deadline (settings["mpi_timeout_s"], default
120 s) and watches the launcher, so a rank that dies or hangs ends the case with an error naming
what it waited for and the launcher's last output; the whole job (launcher, proxies, ranks) is
killed. The next `prepare()` starts a fresh job, so the sweep goes on.

The launcher's command line and the running job are gpukit.backends.mpi_launch's. A host file
(settings["mpi_hostfile"]) spreads the ranks over machines; rank 0 then connects back to this
host by name, so the control socket listens on every interface, and a per-session random token
guards it.

mpi4py is never imported here: loading MPI into the gpukit process would initialise it there
too. Its version and the MPI library's come from a subprocess (check_available) and the ranks.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shlex
import socket
import sys
from pathlib import Path

from gpukit import allocator, phases, records
from gpukit.backends import mpi_worker
from gpukit.backends.base import (Backend, BackendTraits, RunTiming, Startup, Variant,
                                  host_phases)
from gpukit.backends.mpi_launch import (MpiError, RankGroup, find_launcher, launcher_command,
                                       launcher_flavor, probe_library, python_path)
from gpukit.errors import BackendUnavailable, UsageError

DEFAULT_TIMEOUT_S = 120.0


# -- the backend ---------------------------------------------------------------------------------


class MpiBackend(Backend):
    name = "mpi"
    summary = "MPI ranks via mpiexec and mpi4py: Scatterv, numpy on each rank, Gatherv"
    parallel = True
    # Ranks with memory of their own, fed by Scatterv and Gatherv; a host file spreads them over
    # machines whose network the model has not measured.
    traits = BackendTraits(workers=records.RANK, shares_memory=False,
                           moves_data=(records.SCATTER,), phases=phases.RUN_PHASES,
                           remote_setting="mpi_hostfile")

    @classmethod
    def variants(cls, kernel):
        return [Variant(cls.name, "numpy")] if "numpy" in kernel.host_impls() else []

    @classmethod
    def check_available(cls):
        if importlib.util.find_spec("mpi4py") is None:
            raise BackendUnavailable("mpi4py is not installed (the mpi extra: pip install "
                                     "'.[mpi]' gives mpi4py and MPICH)")
        launcher = find_launcher()
        if launcher is None:
            raise BackendUnavailable(f"no mpiexec on PATH nor beside {sys.executable} (pip "
                                     "install mpich, or load your cluster's MPI module)")
        library = probe_library(sys.executable)
        return {"mpi_library": library["library"], "mpi_version": library["version"],
                "mpi4py": importlib.metadata.version("mpi4py"), "launcher": launcher,
                "launcher_flavor": launcher_flavor(launcher)}

    # -- settings ------------------------------------------------------------------------------

    def _timeout_s(self) -> float:
        value = self.settings.get("mpi_timeout_s") or DEFAULT_TIMEOUT_S
        if not isinstance(value, (int, float)) or not value > 0:
            raise UsageError(f"mpi_timeout_s must be a positive number of seconds, got {value!r}")
        return float(value)

    def _hostfile(self) -> str | None:
        path = self.settings.get("mpi_hostfile")
        if not path:
            return None
        if not Path(path).is_file():
            raise UsageError(f"MPI host file {path} does not exist")
        return str(Path(path).resolve())

    def _fault(self) -> str | None:
        fault = self.settings.get("mpi_fault")
        if fault is not None and fault not in mpi_worker.FAULTS:
            raise UsageError(f"mpi_fault must be one of {', '.join(mpi_worker.FAULTS)}")
        return fault

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self):
        self._group: RankGroup | None = None
        self._payload = None
        elapsed = self._launch()
        return Startup({"mpi_launch": elapsed}, self._facts())

    def _launch(self) -> float:
        launcher = find_launcher()
        if launcher is None:
            raise BackendUnavailable("no mpiexec on PATH nor beside the interpreter")
        hostfile = self._hostfile()
        flavor = launcher_flavor(launcher)
        pythonpath = python_path()
        env = {"PYTHONPATH": pythonpath} if pythonpath else {}
        # Open MPI passes only the variables named; the allocator's too (gpukit.allocator).
        malloc = tuple(name for name in allocator.ENV if name in os.environ)
        export = (mpi_worker.ENV_ADDRESS, mpi_worker.ENV_TOKEN, *env, *malloc)
        command = launcher_command(launcher, flavor, self.workers, hostfile, export)
        if hostfile is None:
            listen, advertise = "127.0.0.1", "127.0.0.1"
        else:
            # Rank 0 may run on another machine of the host file: it connects back by name.
            listen, advertise = "", self.settings.get("mpi_control_host") or socket.getfqdn()
        self._flavor = flavor
        self._group = RankGroup(command, env, self._timeout_s(), listen, advertise, self.clock)
        elapsed = self._group.start()
        hello = self._group.hello
        if hello["ranks"] != self.workers:
            self._group.kill("wrong size")
            raise MpiError(f"asked for {self.workers} ranks, the job has {hello['ranks']} (is "
                           "mpi4py using the MPI library of this mpiexec?)")
        return elapsed

    def _facts(self) -> dict:
        hello = self._group.hello
        per_host: dict[str, int] = {}
        for host in hello["hosts"]:
            per_host[host] = per_host.get(host, 0) + 1
        return {
            "mpi_library": hello["mpi_library"], "mpi_version": hello["mpi_version"],
            "mpi4py": hello["mpi4py"], "ranks": hello["ranks"], "hosts": list(per_host),
            "ranks_per_host": per_host, "launcher": shlex.join(self._group.command),
            "launcher_flavor": self._flavor, "hostfile": self._hostfile(),
            "wtime_tick_s": hello["wtime_tick_s"],
        }

    @property
    def rank_pids(self) -> list[int]:
        """Process ids of the ranks (on this machine), for tests that check the cleanup."""
        return list(self._group.hello.get("pids", [])) if self._group else []

    def prepare(self, kernel, params, inputs):
        steps = {}
        if self._group is None or self._group.dead is not None:
            # The previous job failed (and was killed): start a new one, and say what it cost.
            steps["mpi_relaunch"] = self._launch()
        self._payload = {"spec": kernel.spec, "impl": self.variant.impl, "params": dict(params),
                         "split": dict(inputs.split), "whole": dict(inputs.whole),
                         "fault": self._fault()}
        t0 = self.clock()
        self._group.request(("prepare", self._payload), "handing the inputs to rank 0")
        steps["inputs_to_rank0"] = self.clock() - t0
        return Startup(steps)

    def run(self):
        t0 = self.clock()
        _, outputs, t = self._group.request(("run",), "running")
        roundtrip = self.clock() - t0
        # wall_s is rank 0's MPI.Wtime span, so the phases sum to it. The trip from the gpukit
        # process to rank 0 and back (command, then outputs pickled over the socket) is this
        # harness's plumbing, not a cost of the MPI program, whose data starts and ends on
        # rank 0; it is kept beside the phases in `extra` rather than hidden or mixed in.
        timing = RunTiming(host_phases(t["transfer_in_s"], t["compute_s"], t["transfer_out_s"]),
                           t["wall_s"],
                           extra={"rank_compute_max_s": t["rank_compute_max_s"],
                                  "rank_compute_min_s": t["rank_compute_min_s"],
                                  "host_roundtrip_s": roundtrip,
                                  "control_channel_s": max(0.0, roundtrip - t["wall_s"])})
        return outputs, timing

    def release(self):
        group = getattr(self, "_group", None)
        if getattr(self, "_payload", None) is not None and group is not None \
                and group.dead is None:
            self._payload = None
            group.request(("release",), "releasing the problem")

    def close(self):
        group = getattr(self, "_group", None)
        if group is not None:
            group.shutdown()

    def abort(self):
        # From another thread: the job is killed by its ids, and the control socket closed
        # under the waiting thread, which then fails (the next prepare would start a new job).
        group = getattr(self, "_group", None)
        if group is None:
            return "no MPI job was running"
        group.kill("stopped by gpukit")
        return f"its MPI job ({self.workers} rank{'' if self.workers == 1 else 's'}) killed"
