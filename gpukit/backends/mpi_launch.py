"""Starting and watching an MPI job for the mpi backend: which launcher this is (MPICH's hydra
or Open MPI, told apart by `mpiexec --version`) and the command line it wants, the MPI library
the ranks will load, and `RankGroup`: one running job, rank 0's control channel, its deadlines,
and killing the whole job (launcher, proxies, ranks) when a rank dies or hangs.

Open MPI wants `--allow-run-as-root` under euid 0, `--oversubscribe` to start more ranks than it
counts slots (MPICH allows that by default), and `-x NAME` to pass environment variables to the
ranks (hydra passes the whole environment).
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import select
import shlex
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpukit.backends import mpi_worker
from gpukit.errors import BackendUnavailable, GpukitError

WORKER_MODULE = "gpukit.backends.mpi_worker"
OPENMPI, MPICH = "openmpi", "mpich"

# How often a wait on rank 0 looks at the launcher: a dead job is reported within this.
_POLL_S = 0.1
# After "exit", how long the job gets to finalize before it is killed.
_EXIT_WAIT_S = 10.0


class MpiError(GpukitError):
    """The MPI job failed: a rank died or hung, or the launcher exited."""


# -- discovery ---------------------------------------------------------------------------------


def find_launcher() -> str | None:
    """`mpiexec` beside this interpreter first (pip's mpich installs it in the venv's bin, and it
    matches the MPI that venv's mpi4py loads), else the first on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("mpiexec")


@functools.cache
def launcher_flavor(launcher: str) -> str:
    """OPENMPI or MPICH (hydra: MPICH, Intel MPI, MVAPICH), from `mpiexec --version`."""
    try:
        proc = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendUnavailable(f"{launcher} --version failed: {exc}") from None
    text = proc.stdout + proc.stderr
    return OPENMPI if ("Open MPI" in text or "OpenRTE" in text) else MPICH


_PROBE = """\
import json, mpi4py
mpi4py.rc.initialize = False
from mpi4py import MPI
print(json.dumps({"library": MPI.Get_library_version().strip().splitlines()[0].strip(),
                  "version": "%d.%d" % MPI.Get_version()}))
"""


@functools.cache
def probe_library(python: str) -> dict:
    """The MPI library mpi4py loads, asked in a subprocess without initialising MPI."""
    try:
        proc = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendUnavailable(f"could not ask mpi4py for its MPI library: {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackendUnavailable(f"mpi4py cannot load an MPI library: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def launcher_command(launcher: str, flavor: str, ranks: int, hostfile: str | None = None,
                     export: tuple[str, ...] = (), euid: int | None = None,
                     python: str | None = None) -> list[str]:
    """The exact command that starts the ranks (recorded in the results).

    `export` names the environment variables the ranks need (Open MPI passes only those named).
    """
    cmd = [launcher, "-n", str(ranks)]
    if flavor == OPENMPI:
        if (os.geteuid() if euid is None else euid) == 0:
            cmd.append("--allow-run-as-root")
        if hostfile is None:
            # Open MPI counts slots by physical core (fewer than `nproc` with hyper-threads)
            # and refuses more ranks than slots; one machine may run any R here.
            cmd.append("--oversubscribe")
        else:
            cmd += ["--hostfile", hostfile]
        for name in export:
            cmd += ["-x", name]
    elif hostfile is not None:
        cmd += ["-f", hostfile]
    cmd += [python or sys.executable, "-m", WORKER_MODULE]
    return cmd


def python_path() -> str:
    """PYTHONPATH for the ranks: this gpukit's folder first when it is a checkout."""
    root = str(Path(__file__).resolve().parents[2])
    current = os.environ.get("PYTHONPATH", "")
    installed = {str(Path(p).resolve()) for p in site.getsitepackages()
                 + [site.getusersitepackages()]}
    if root in installed or root in current.split(os.pathsep):
        return current
    return os.pathsep.join([root, current]) if current else root


# -- the job -------------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (Linux /proc; elsewhere none, and the group kill serves)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _holding(name: str, value: str) -> list[int]:
    """Processes of this machine whose environment has name=value (Linux /proc; else none).

    Every process of one job (launcher, proxies, ranks) inherits the job's token, including
    those a dying launcher leaves to init, where a walk from the launcher no longer finds them.
    """
    needle = f"{name}={value}".encode()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a killed rank waits for its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _wait_gone(pids: list[int], timeout_s: float) -> None:
    """Wait until none of `pids` runs, so that a caller sees no leftover process."""
    deadline = time.monotonic() + timeout_s
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)


class RankGroup:
    """One running MPI job and its control channel to rank 0."""

    def __init__(self, command: list[str], env: dict[str, str], timeout_s: float,
                 listen_host: str, advertise_host: str, clock=time.perf_counter):
        self.command = command
        self.env = env
        self.timeout_s = timeout_s
        self.clock = clock
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.hello: dict = {}
        self.dead: str | None = None
        self._log = tempfile.TemporaryFile()
        self._listener = socket.create_server((listen_host, 0))
        self.address = f"{advertise_host}:{self._listener.getsockname()[1]}"
        self._token = os.urandom(16).hex()

    # -- start and stop ------------------------------------------------------------------------

    def start(self) -> float:
        """Launch the job and wait for rank 0's hello; return the seconds that took."""
        env = dict(os.environ, **self.env)
        env[mpi_worker.ENV_ADDRESS] = self.address
        env[mpi_worker.ENV_TOKEN] = self._token
        t0 = self.clock()
        try:
            # A session of its own: the job (launcher, proxies, ranks) can be killed as a group,
            # and a Ctrl-C at the terminal reaches gpukit, which then ends the job in order.
            self.proc = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        except (OSError, ValueError) as exc:  # ValueError: killed before it started (log closed)
            raise MpiError(f"could not start {shlex.join(self.command)}: {exc}") from None
        if self.dead is not None:
            # Killed from another thread (gpukit stopping) while the launcher started.
            self.kill(self.dead)
            raise MpiError(f"the MPI job was stopped as it started ({self.dead})")
        deadline = time.monotonic() + self.timeout_s
        try:
            self.sock = self._accept(deadline)
            reply = self._recv(deadline, "waiting for rank 0 to start")
            if reply[0] != "hello":
                raise MpiError(f"rank 0 sent {reply[0]!r} instead of its hello")
        except BaseException:
            self.kill("did not start")
            raise
        finally:
            self._listener.close()
        self.hello = reply[1]
        return self.clock() - t0

    def _accept(self, deadline: float) -> socket.socket:
        what = "waiting for rank 0 to connect"
        while True:
            self._wait(self._listener, deadline, what)
            conn, _ = self._listener.accept()
            conn.settimeout(self.timeout_s)
            try:
                token = mpi_worker.recv_exact(conn, len(self._token),
                                              lambda conn=conn: self._wait(conn, deadline, what))
            except (OSError, ConnectionError):
                token = None
            if token is not None and hmac.compare_digest(bytes(token),
                                                         self._token.encode("ascii")):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return conn
            conn.close()  # not our rank 0: never unpickle what it sends

    def shutdown(self) -> None:
        """End the job in order (rank 0 tells the others, all finalize); kill it if it lingers."""
        if self.dead is None and self.sock is not None:
            try:
                self.request(("exit",), "shutting the ranks down",
                             timeout_s=min(self.timeout_s, _EXIT_WAIT_S))
                self.proc.wait(timeout=_EXIT_WAIT_S)
            except (MpiError, OSError, subprocess.TimeoutExpired):
                pass
        self.kill("session closed")

    def kill(self, reason: str) -> None:
        """Kill the launcher and everything it started; safe to call twice."""
        if self.dead is None:
            self.dead = reason
        for closing in (self.sock, self._listener):
            if closing is not None:
                closing.close()
        self.sock = None
        proc = self.proc
        if proc is None:
            self._log.close()
            return
        # Hydra starts its proxy and every rank in a session of their own, so killing the
        # launcher's group is not enough: every process of the job is killed by its id, found
        # as a descendant of the launcher or by the job's token in its environment.
        rest = set(_holding(mpi_worker.ENV_TOKEN, self._token))
        if proc.returncode is None:
            rest.update(_descendants(proc.pid))
        rest.discard(proc.pid)
        kills = [functools.partial(os.kill, pid, signal.SIGKILL) for pid in sorted(rest)]
        if proc.poll() is None:
            kills.insert(0, lambda: os.killpg(proc.pid, signal.SIGKILL))
        for kill in kills:
            try:
                kill()
            except (ProcessLookupError, PermissionError):
                pass
        proc.wait()
        _wait_gone(sorted(rest), _EXIT_WAIT_S)
        self._log.close()

    # -- requests ------------------------------------------------------------------------------

    def request(self, message, what: str, timeout_s: float | None = None):
        """Send one message to rank 0 and return its answer, within the timeout."""
        if self.dead is not None:
            raise MpiError(f"the MPI job is not running ({self.dead})")
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        try:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            mpi_worker.send_frame(self.sock, message)
        except OSError as exc:
            raise self._failed(f"could not send to rank 0 while {what}: {exc}") from None
        reply = self._recv(deadline, what)
        if reply[0] == "error":
            _, rank, text = reply
            last = text.strip().splitlines()[-1]
            raise self._failed(f"rank {rank} failed while {what}: {last}", quote_output=False)
        return reply

    def _recv(self, deadline: float, what: str):
        try:
            return mpi_worker.recv_frame(self.sock, lambda: self._wait(self.sock, deadline, what))
        except (EOFError, OSError):
            # The job usually exits right after rank 0 drops the channel: give it a moment so
            # that the error can quote the launcher's own verdict.
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            ended = self.proc.poll() is not None
            raise self._failed(f"the MPI job ended while {what} (a rank died, or the launcher "
                               "failed)" if ended else
                               f"rank 0 closed the control channel while {what}") from None

    def _wait(self, sock: socket.socket, deadline: float, what: str) -> None:
        """Block until `sock` is readable; raise MpiError if the job ends or time runs out."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._failed(f"no answer from rank 0 within {self.timeout_s:g} s while "
                                   f"{what} (a rank hung or died; --mpi-timeout-s sets the limit)")
            readable, _, _ = select.select([sock], [], [], min(_POLL_S, left))
            if readable:
                return
            if self.proc.poll() is not None:
                raise self._failed(f"the MPI job ended while {what} (a rank died, or the "
                                   "launcher failed)")

    def _failed(self, text: str, quote_output: bool = True) -> MpiError:
        code = self.proc.poll() if self.proc is not None else None
        tail = self.output_tail() if quote_output else ""
        self.kill(text)
        parts = [text]
        if code is not None:
            parts.append(f"launcher exit status {code}")
        parts.append("job killed")
        message = "; ".join(parts)
        if tail:
            message += f"; launcher output: {tail}"
        self.dead = message
        return MpiError(message)

    def output_tail(self, lines: int = 8, chars: int = 1500) -> str:
        if self._log.closed:
            return ""
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(kept)[-chars:]
