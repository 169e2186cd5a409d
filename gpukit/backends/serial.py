"""serial: one thread runs the whole problem. The baseline every speedup is measured against."""

from __future__ import annotations

from gpukit.backends.base import (Backend, BackendTraits, RunTiming, Startup, Variant,
                                  host_phases)
from gpukit.kernels.base import check_in_place


class SerialBackend(Backend):
    name = "serial"
    summary = "one thread, the whole problem (python or numpy implementation)"
    # In the caller's process on one core, nothing moved: what every speedup is measured against.
    traits = BackendTraits(reference=True)

    @classmethod
    def variants(cls, kernel):
        return [Variant(cls.name, impl) for impl in sorted(kernel.host_impls())]

    def prepare(self, kernel, params, inputs):
        self._kernel, self._params, self._inputs = kernel, params, inputs
        self._impl = kernel.host_impls()[self.variant.impl]
        self._n = next(iter(inputs.split.values())).shape[0]
        return Startup()

    def run(self):
        out = self._kernel.alloc_outputs(self._n, self._params)
        split, whole = self._inputs.split, self._inputs.whole
        params, impl = self._params, self._impl
        given = dict(out)
        # Only the call between the clock reads: at a few microseconds a call (polyval, n=2^10),
        # run_impl's bookkeeping inside them read 5% above pyperf's figure for the same call.
        t0 = self.clock()
        impl(split, whole, out, params)
        elapsed = self.clock() - t0
        check_in_place(given, out)
        return out, RunTiming(host_phases(0.0, elapsed, 0.0), elapsed)
