"""Every CPU backend variant against the reference, and each one's phase accounting."""

import itertools
import multiprocessing

import pytest

from gpukit import backends, kernels, phases
from gpukit.backends.base import Variant, chunk_bounds

CPU = ("serial", "threads", "processes")


def cpu_variants():
    kernel = kernels.load("polyval")
    for name in CPU:
        cls = backends.get(name)
        for variant in cls.variants(kernel):
            for workers in ((1, 3) if cls.parallel else (1,)):
                yield pytest.param(variant, workers, id=f"{variant.label}-x{workers}")


@pytest.mark.parametrize("variant,workers", list(cpu_variants()))
def test_variant_matches_reference(variant, workers):
    kernel = kernels.load("polyval")
    cls = backends.get(variant.backend)
    with cls(variant, workers) as session:
        startup = session.open()
        assert startup.total_s >= 0
        for n, k in ((1, 3), (2, 1), (4097, 7), (10_000, 64)):
            params = {"k": k}
            inputs = kernel.make_inputs(n, params, seed=n)
            session.prepare(kernel, params, inputs)
            for _ in range(2):  # the second run reuses everything prepare made
                out, timing = session.run()
                check = kernel.check(out, kernel.reference(inputs, params), inputs, params)
                assert check.ok, (variant.label, n, k, check)
                assert set(timing.phases_s) == set(phases.RUN_PHASES)
                assert all(v >= 0 for v in timing.phases_s.values())
                assert sum(timing.phases_s.values()) == pytest.approx(timing.wall_s, rel=1e-9,
                                                                      abs=1e-12)
            session.release()


def test_processes_report_start_method_and_use_every_worker():
    variant = Variant("processes", "numpy", (("transfer", "shm"),))
    with backends.get("processes")(variant, 2) as session:
        startup = session.open()
        assert startup.facts["start_method"] in multiprocessing.get_all_start_methods()
        assert startup.facts["start_method"] != "fork"
        assert startup.facts["processes"] == 2


def test_shared_memory_is_freed():
    from multiprocessing import shared_memory
    kernel = kernels.load("polyval")
    variant = Variant("processes", "numpy", (("transfer", "shm"),))
    params = {"k": 2}
    with backends.get("processes")(variant, 2) as session:
        session.open()
        session.prepare(kernel, params, kernel.make_inputs(1000, params))
        session.run()
        names = [b.name for b in session._blocks]
        session.release()
    for name in names:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)


def test_process_phase_split_with_worker_stamps():
    """Worker stamps at 1.0/1.5 and 3.0/4.0 s, parent from 0.5 to 6.0 s: in until the last worker
    had its data, compute until the last finished, out the rest."""
    variant = Variant("processes", "numpy", (("transfer", "pickle"),))
    session = backends.get("processes")(variant, 2)
    timing = session._timing(0.5, [(None, 1.0, 3.0, 11), (None, 1.5, 4.0, 12)], 6.0)
    assert timing.phases_s == {phases.TRANSFER_IN: 1.0, phases.COMPUTE: 2.5,
                               phases.TRANSFER_OUT: 2.0}
    assert timing.wall_s == 5.5
    assert timing.extra == {"worker_compute_max_s": 2.5, "worker_compute_min_s": 2.0}


def test_process_phase_split_with_several_chunks_a_worker_counts_their_compute_as_compute():
    """Two workers, two chunks each, from t0 = 0: each chunk waits 0.5 s for its data and
    computes for 2 s. The last chunk's data is in hand at 3.0 s, after the first chunks were
    computed; their compute must not become transfer. Busy time is 2 s waiting and 8 s computing,
    so the 5 s up to the last finish split 1 : 4, and the 1 s after it is transfer out."""
    variant = Variant("processes", "numpy", (("transfer", "shm"),))
    session = backends.get("processes")(variant, 2)
    stamps = [(None, 0.5, 2.5, 11), (None, 3.0, 5.0, 11), (None, 0.5, 2.5, 12),
              (None, 3.0, 5.0, 12)]
    timing = session._timing(0.0, stamps, 6.0)
    assert timing.phases_s[phases.TRANSFER_IN] == pytest.approx(1.0)
    assert timing.phases_s[phases.COMPUTE] == pytest.approx(4.0)
    assert timing.phases_s[phases.TRANSFER_OUT] == pytest.approx(1.0)


def test_threads_phases_use_the_backend_clock():
    ticks = itertools.count()
    kernel = kernels.load("polyval")
    session = backends.get("threads")(Variant("threads", "numpy"), 2,
                                      clock=lambda: next(ticks) * 0.25)
    with session:
        session.open()  # two ticks
        session.prepare(kernel, {"k": 2}, kernel.make_inputs(100, {"k": 2}))
        _, timing = session.run()  # two ticks: 0.25 s of compute, nothing moved
    assert timing.phases_s == {phases.TRANSFER_IN: 0.0, phases.COMPUTE: 0.25,
                               phases.TRANSFER_OUT: 0.0}


@pytest.mark.parametrize("n,chunks", [(10, 3), (3, 8), (1, 1), (1 << 20, 16)])
def test_chunk_bounds_cover_range_evenly(n, chunks):
    bounds = chunk_bounds(n, chunks)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_unknown_backend_is_a_usage_error():
    from gpukit.errors import UsageError
    with pytest.raises(UsageError, match="unknown backend 'gpu'"):
        backends.get("gpu")
