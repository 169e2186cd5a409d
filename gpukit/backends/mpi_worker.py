"""The MPI ranks of the `mpi` backend: `mpiexec -n R python -m gpukit.backends.mpi_worker`.

Every rank runs this module. Rank 0 connects back to the gpukit process over a TCP socket (the
control channel: address and token in the environment) and serves its requests; the other ranks
wait for rank 0's commands. In MPI terms the problem lives on rank 0: `prepare` hands it the
inputs once, and every `run` then times, on rank 0 with `MPI.Wtime`:

- transfer_in: `Scatterv` of the split inputs (NumPy buffers with counts and displacements) and
  `Bcast` of the whole inputs, ended by a barrier so that the last rank to have its data counts;
- compute: every rank's chunk with the kernel's host implementation, ended by a barrier so that
  the slowest rank counts;
- transfer_out: `Gatherv` of the output chunks to rank 0.

Control messages are pickles framed by an 8-byte length. Only rank 0 talks to gpukit, and only
after it has sent the token gpukit gave it, so nothing else that connects is ever unpickled.

Waiting between commands, the other ranks poll a nonblocking barrier and sleep: a blocking MPI
call busy-waits, and idle ranks spinning for a whole sweep would steal the cores that the other
backends are being measured on.

Any exception on any rank aborts the whole job (`MPI.Abort`): a failed collective leaves the
ranks out of step, and the gpukit side then sees the launcher exit and reports its output.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import sys
import time
import traceback

ENV_ADDRESS = "GPUKIT_MPI_CONTROL"
ENV_TOKEN = "GPUKIT_MPI_TOKEN"

_HEADER = struct.Struct("!Q")

# Idle polling of the other ranks: sleeps from 10 us doubling up to this. A rank idle for long
# wakes 100 times a second (~0.3% of a core; at 1 ms it was 2.4%, which adds up over the
# sessions of a 1..16-rank sweep that stay open while other backends are measured), while back
# to back runs still find it awake within microseconds. The wait is never inside a timed span.
IDLE_MAX_S = 1e-2

# For tests only: settings["mpi_fault"] makes the last rank fail at the start of every run.
# "die" exits the rank without MPI_Finalize; "hang" sleeps forever (the gpukit side times out).
FAULTS = ("die", "hang")


# -- framing (shared with gpukit.backends.mpi_backend) --------------------------------------------

def send_frame(sock: socket.socket, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)))
    sock.sendall(data)


def recv_exact(sock: socket.socket, size: int, wait=None) -> bytearray | None:
    """`size` bytes, or None on a clean end of stream before the first byte.

    `wait`, if given, is called before every read and blocks until the socket is readable (or
    raises): the gpukit side uses it to enforce its timeout and to notice a dead launcher.
    """
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        if wait is not None:
            wait()
        n = sock.recv_into(view[got:])
        if n == 0:
            if got == 0:
                return None
            raise ConnectionError(f"control channel closed after {got} of {size} bytes")
        got += n
    return buf


def recv_frame(sock: socket.socket, wait=None):
    """The next message, or raise EOFError when the peer closed the channel."""
    header = recv_exact(sock, _HEADER.size, wait)
    if header is None:
        raise EOFError("control channel closed")
    (size,) = _HEADER.unpack(header)
    body = recv_exact(sock, size, wait)
    if body is None:
        raise ConnectionError("control channel closed between a header and its message")
    return pickle.loads(body)


# -- the problem, as each rank holds it -----------------------------------------------------------

def rank_rows(n: int, ranks: int) -> list[tuple[int, int]]:
    """Rows [lo, hi) of every rank: contiguous, sizes differ by at most one; empty where n < R."""
    from gpukit.backends.base import chunk_bounds
    return chunk_bounds(n, ranks, allow_empty=True)


class Problem:
    """One rank's buffers for one problem, allocated once and reused by every run."""

    def __init__(self, comm, meta: dict, split=None, whole=None):
        import numpy as np
        from mpi4py.util.dtlib import from_numpy_dtype

        from gpukit import kernels
        from gpukit.backends.base import row_chunks

        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        kernel = kernels.load(meta["spec"])
        self.impl = kernel.host_impls()[meta["impl"]]
        self.params = meta["params"]
        self.fault = meta.get("fault")
        n = meta["n"]
        # A kernel that must see whole arrays runs on rank 0 alone; the others get no rows.
        rows = row_chunks(kernel, n, self.size, allow_empty=True)
        lo, hi = rows[self.rank]
        self.rows = hi - lo

        def layout(row_shape):
            per_row = int(np.prod(row_shape, dtype=np.int64))
            counts = [(b - a) * per_row for a, b in rows]
            displs = [a * per_row for a, _ in rows]
            return counts, displs

        # name -> (this rank's chunk, the full array on rank 0 or None, counts, displs, type)
        self.split = {}
        for name, (row_shape, dtype) in meta["split"].items():
            dtype = np.dtype(dtype)
            counts, displs = layout(row_shape)
            full = np.ascontiguousarray(split[name]) if self.rank == 0 else None
            local = np.empty((self.rows, *row_shape), dtype=dtype)
            self.split[name] = (local, full, counts, displs, from_numpy_dtype(dtype))
        self.whole = {}
        for name, (shape, dtype) in meta["whole"].items():
            dtype = np.dtype(dtype)
            arr = (np.ascontiguousarray(whole[name]) if self.rank == 0
                   else np.empty(shape, dtype=dtype))
            self.whole[name] = (arr, from_numpy_dtype(dtype))
        self.out = {}
        local_out = kernel.alloc_outputs(self.rows, self.params)
        full_out = kernel.alloc_outputs(n, self.params) if self.rank == 0 else {}
        for name, local in local_out.items():
            counts, displs = layout(local.shape[1:])
            self.out[name] = (local, full_out.get(name), counts, displs,
                              from_numpy_dtype(local.dtype))

    def run(self):
        """One timed repetition; on rank 0 returns (outputs, timing), elsewhere None."""
        from mpi4py import MPI

        from gpukit.kernels.base import run_impl

        comm = self.comm
        self._maybe_fail()
        comm.Barrier()  # every rank is here: the clock starts with all of them ready
        t0 = MPI.Wtime()
        for local, full, counts, displs, mpi_type in self.split.values():
            send = [full, counts, displs, mpi_type] if self.rank == 0 else None
            comm.Scatterv(send, [local, mpi_type], root=0)
        for arr, mpi_type in self.whole.values():
            comm.Bcast([arr, mpi_type], root=0)
        comm.Barrier()
        t1 = MPI.Wtime()
        if self.rows:
            run_impl(self.impl, {name: entry[0] for name, entry in self.split.items()},
                      {name: entry[0] for name, entry in self.whole.items()},
                      {name: entry[0] for name, entry in self.out.items()}, self.params)
        compute_s = MPI.Wtime() - t1
        comm.Barrier()
        t2 = MPI.Wtime()
        for local, full, counts, displs, mpi_type in self.out.values():
            recv = [full, counts, displs, mpi_type] if self.rank == 0 else None
            comm.Gatherv([local, mpi_type], recv, root=0)
        t3 = MPI.Wtime()
        # Outside the timed span: each rank's own compute time, to show the imbalance.
        computes = comm.gather(compute_s, root=0)
        if self.rank != 0:
            return None
        timing = {"transfer_in_s": t1 - t0, "compute_s": t2 - t1, "transfer_out_s": t3 - t2,
                  "wall_s": t3 - t0, "rank_compute_max_s": max(computes),
                  "rank_compute_min_s": min(computes)}
        return {name: entry[1] for name, entry in self.out.items()}, timing

    def _maybe_fail(self):
        if self.fault and self.rank == self.size - 1:
            if self.fault == "die":
                os._exit(3)
            if self.fault == "hang":
                while True:
                    time.sleep(3600)


# -- rank 0: serve the gpukit process --------------------------------------------------------------

def _command(comm, cmd):
    """Rank 0 hands a command to every other rank (they poll a nonblocking barrier)."""
    comm.Ibarrier().Wait()
    return comm.bcast(cmd, root=0)


def _describe(payload: dict) -> dict:
    """What the other ranks need to allocate their buffers: shapes and types, not data."""
    split, whole = payload["split"], payload["whole"]
    n = next(iter(split.values())).shape[0]
    return {
        "spec": payload["spec"], "impl": payload["impl"], "params": payload["params"],
        "fault": payload.get("fault"), "n": n,
        "split": {k: (tuple(a.shape[1:]), a.dtype.str) for k, a in split.items()},
        "whole": {k: (tuple(a.shape), a.dtype.str) for k, a in whole.items()},
    }


def serve_root(comm, sock: socket.socket) -> None:
    problem = None
    while True:
        try:
            request = recv_frame(sock)
        except EOFError:
            request = ("exit",)  # gpukit went away: end the job cleanly
        kind = request[0]
        if kind == "prepare":
            payload = request[1]
            meta = _command(comm, ("prepare", _describe(payload)))[1]
            problem = None
            problem = Problem(comm, meta, payload["split"], payload["whole"])
            send_frame(sock, ("prepared", {"rows": problem.rows}))
        elif kind == "run":
            if problem is None:
                raise RuntimeError("run before prepare")
            _command(comm, ("run",))
            outputs, timing = problem.run()
            send_frame(sock, ("ran", outputs, timing))
        elif kind == "release":
            _command(comm, ("release",))
            problem = None
            send_frame(sock, ("released",))
        elif kind == "exit":
            _command(comm, ("exit",))
            try:
                send_frame(sock, ("bye",))
            except OSError:
                pass
            return
        else:
            raise RuntimeError(f"unknown control request {kind!r}")


# -- the other ranks: follow rank 0 ---------------------------------------------------------------

def _wait_for_command(comm):
    request = comm.Ibarrier()
    delay = 1e-5
    while not request.Test():
        time.sleep(delay)
        delay = min(2 * delay, IDLE_MAX_S)
    return comm.bcast(None, root=0)


def serve_other(comm) -> None:
    problem = None
    while True:
        cmd = _wait_for_command(comm)
        kind = cmd[0]
        if kind == "prepare":
            problem = None
            problem = Problem(comm, cmd[1])
        elif kind == "run":
            problem.run()
        elif kind == "release":
            problem = None
        elif kind == "exit":
            return


# -- entry point -----------------------------------------------------------------------------------

def _connect(address: str, token: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(token.encode("ascii"))
    return sock


def main() -> int:
    address, token = os.environ.get(ENV_ADDRESS), os.environ.get(ENV_TOKEN)
    if not address or not token:
        print(f"gpukit.backends.mpi_worker: {ENV_ADDRESS} and {ENV_TOKEN} must be set; this "
              "module is started by gpukit's mpi backend", file=sys.stderr)
        return 2
    import mpi4py
    # One thread per rank makes MPI calls; asking for more would only add locking in the library.
    mpi4py.rc.thread_level = "funneled"
    from mpi4py import MPI

    import gpukit.kernels  # noqa: F401  (imported before the handshake: part of startup)

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    everyone = comm.gather((MPI.Get_processor_name(), os.getpid()), root=0)
    sock = None
    try:
        if rank == 0:
            sock = _connect(address, token)
            import numpy
            send_frame(sock, ("hello", {
                "ranks": comm.Get_size(),
                "hosts": [host for host, _ in everyone],
                "pids": [pid for _, pid in everyone],
                "mpi_library": MPI.Get_library_version().strip().splitlines()[0].strip(),
                "mpi_version": "{}.{}".format(*MPI.Get_version()),
                "mpi4py": mpi4py.__version__,
                "thread_level": MPI.Query_thread(),
                "wtime_tick_s": MPI.Wtick(),
                "numpy": numpy.__version__,
            }))
            serve_root(comm, sock)
        else:
            serve_other(comm)
    except BaseException:
        text = traceback.format_exc()
        print(f"gpukit mpi rank {rank} failed:\n{text}", file=sys.stderr, flush=True)
        if sock is not None:
            try:
                send_frame(sock, ("error", rank, text))
            except OSError:
                pass
        comm.Abort(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
