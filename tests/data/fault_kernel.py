"""A user kernel that misbehaves on demand, for tests/test_faults.py: z = 2x.

The environment says how, where and when, and every process that runs the kernel (gpukit, its
pool workers, its MPI ranks) reads it: GPUKIT_FAULT=MODE:IMPL:N fails the IMPL implementation
(python, numpy or any) at problem size N, in the series of parameter p=1 only (p=2 never fails,
so a test can watch a session start again after a fault). MODE is one of

    hang       sleep forever: a hung case
    raise      raise RuntimeError
    exit       raise SystemExit(4)
    interrupt  raise KeyboardInterrupt (the kernel's own, not a Ctrl-C)
    kill       the process running the chunk kills itself with SIGKILL (a pool worker, a rank)

and GPUKIT_FAULT_READY names a file written as the fault fires, so that a test can send a signal
while the case is in progress.
"""

import os
import signal
import time

import numpy as np

from gpukit.kernels import Param
from gpukit.kernels.user import SimpleKernel


def _maybe_fail(impl, whole, params):
    spec = os.environ.get("GPUKIT_FAULT")
    if not spec:
        return
    mode, which, n = spec.split(":")
    if which not in (impl, "any") or int(whole["n"][0]) != int(n) or params["p"] != 1:
        return
    ready = os.environ.get("GPUKIT_FAULT_READY")
    if ready:
        with open(ready, "a") as f:
            f.write(f"{os.getpid()}\n")
    if mode == "hang":
        while True:
            time.sleep(0.05)
    if mode == "raise":
        raise RuntimeError("the fault kernel raised, as asked")
    if mode == "exit":
        raise SystemExit(4)
    if mode == "interrupt":
        raise KeyboardInterrupt
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise ValueError(f"unknown GPUKIT_FAULT mode {mode!r}")


class Faulty(SimpleKernel):
    name = "faulty"
    summary = "z = 2x, failing as GPUKIT_FAULT says"
    outputs = ("z",)
    flops_per_row = 1
    params = (Param("p", default=1, help="the series: only p=1 fails", maximum=2),)

    def split_inputs(self, n, params, rng):
        return {"x": rng.standard_normal(n, dtype=np.float32)}

    def whole_inputs(self, n, params, rng):
        return {"n": np.array([n], dtype=np.int64)}

    def reference(self, inputs, params):
        return {"z": 2.0 * inputs.split["x"].astype(np.float64)}

    def python(self, split, whole, out, params):
        _maybe_fail("python", whole, params)
        out["z"][:] = [2.0 * x for x in split["x"].tolist()]

    def numpy(self, split, whole, out, params):
        _maybe_fail("numpy", whole, params)
        np.multiply(split["x"], np.float32(2), out=out["z"])
