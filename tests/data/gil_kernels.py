"""Two pure-Python user kernels that differ only in what they do with the GIL, for the tests
that the model predicts threads from the measured serialized share, not from the name `python`:
`Sleeper` sleeps for its rows (time.sleep releases the GIL, as waiting on I/O does) and
`Spinner` runs arithmetic per row in the interpreter (holding the GIL throughout).

Sleeper sleeps once per chunk, for 100 us a row: one sleep per row would cost each row the
timer's slack as well (50 us by default on Linux), which varies with the machine's load."""

import time

import numpy as np

from gpukit.kernels.user import SimpleKernel

# Per row: long enough that the sleep, not the interpreter, is the row's cost, short enough
# that a test's sweep takes a few seconds.
SLEEP_PER_ROW_S = 100e-6
SPIN_STEPS = 200


class _Doubler(SimpleKernel):
    outputs = ("z",)
    tolerance = 1e-6
    default_sizes = (64, 256)

    def split_inputs(self, n, params, rng):
        return {"x": rng.standard_normal(n, dtype=np.float32)}

    def reference(self, inputs, params):
        return {"z": 2.0 * inputs.split["x"].astype(np.float64)}


class Sleeper(_Doubler):
    name = "sleeper"
    summary = "z = 2x, sleeping 100 us per row: pure Python that releases the GIL"
    flops_per_row = 1

    def python(self, split, whole, out, params):
        rows = split["x"].tolist()
        time.sleep(SLEEP_PER_ROW_S * len(rows))
        out["z"][:] = [2.0 * x for x in rows]


class Spinner(_Doubler):
    name = "spinner"
    summary = "z = 2x after 200 interpreted multiply-adds per row: pure Python holding the GIL"
    flops_per_row = 2 * SPIN_STEPS + 1

    def python(self, split, whole, out, params):
        z = []
        for x in split["x"].tolist():
            acc = 0.0
            for _ in range(SPIN_STEPS):
                acc = acc * 0.5 + 1.0
            z.append(2.0 * x + 0.0 * acc)
        out["z"][:] = z
