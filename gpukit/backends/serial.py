"""serial: one thread runs the whole problem. The baseline every speedup is measured against."""

from __future__ import annotations

from gpukit.backends.base import (Backend, BackendTraits, RunTiming, Startup, Variant,
                                  host_phases)
from gpukit.kernels.base import run_impl


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
        t0 = self.clock()
        run_impl(self._impl, self._inputs.split, self._inputs.whole, out, self._params)
        elapsed = self.clock() - t0
        return out, RunTiming(host_phases(0.0, elapsed, 0.0), elapsed)
