"""The device adapter contract (gpukit.backends.gpu_backend.Device), held to the same tests for
CuPy's adapter and PyCUDA's, over the fakes of the two libraries in tests/gpu_fakes.py."""

from __future__ import annotations

import numpy as np
import pytest

from gpukit import kernels
from gpukit.backends import gpu_backend
from gpukit.backends.cupy_backend import CupyDevice
from gpukit.backends.pycuda_backend import PycudaDevice

import gpu_fakes
from gpu_fakes import D2D_S, H2D_S, KERNEL_S, L2_BYTES, FakeGPU


@pytest.fixture(params=gpu_fakes.LIBRARIES)
def device(request, monkeypatch):
    gpu = FakeGPU()
    gpu_fakes.install(monkeypatch, gpu, [request.param])
    cls = CupyDevice if request.param == "cupy" else PycudaDevice
    dev = cls(gpu_backend.DEVICE)
    with dev.active():
        yield gpu, dev
    assert gpu.context_depth == 0, "the context is popped as it was pushed"


def test_the_adapter_has_every_call_of_the_contract(device):
    _gpu, dev = device
    wanted = {name for name in vars(gpu_backend.Device)
              if not name.startswith("_") and name not in ("library",)}
    assert wanted <= set(dir(dev)), wanted - set(dir(dev))
    assert dev.library in gpu_fakes.LIBRARIES
    assert (dev.array_namespace() is not None) == dev.offers_array_namespace


def test_facts_name_the_device(device):
    _gpu, dev = device
    facts = type(dev).facts(0)
    assert facts["device"] == "Fake GPU" and facts["compute_capability"] == "9.0"
    assert facts["l2_bytes"] == L2_BYTES == dev.l2_bytes()


def test_copies_in_and_out_at_offsets_through_pinned_and_pageable_memory(device):
    gpu, dev = device
    stream = dev.stream()
    ptr = dev.alloc(4096)
    dev.fill(ptr, 0xFF, 4096, stream)
    data = np.arange(256, dtype=np.float32)
    pinned = dev.pinned((256,), np.float32)
    pinned[...] = data * 2
    dev.copy_in(ptr, data, stream)  # pageable
    dev.copy_in(ptr + 1024, pinned[:128], stream)  # a slice of pinned memory, at an offset
    back = np.zeros(512, dtype=np.float32)
    dev.copy_out(back, ptr, stream)
    dev.synchronize(stream)
    np.testing.assert_array_equal(back[:256], data)
    np.testing.assert_array_equal(back[256:384], data[:128] * 2)
    assert np.isnan(back[384:]).all()  # the fill: 0xFF bytes
    assert [c[:2] for c in gpu.copies] == [("h2d", "pageable"), ("h2d", "pinned"),
                                           ("d2h", "pageable")]
    other = dev.alloc(4096)
    dev.copy_device(other, ptr, 4096, stream)
    dev.copy_out(back, other, stream)
    dev.synchronize(stream)
    np.testing.assert_array_equal(back[:256], data)
    dev.free(ptr)
    dev.free(other)
    dev.release()


def test_events_time_what_lies_between_them_and_streams_wait_for_events(device):
    gpu, dev = device
    a, b = dev.stream(non_blocking=True), dev.stream(non_blocking=True)
    start, copied, end = dev.event(), dev.event(), dev.event()
    ptr = dev.alloc(64)
    dev.record(start, a)
    dev.copy_in(ptr, dev.pinned((16,), np.float32), a)
    dev.copy_device(dev.alloc(64), ptr, 64, a)
    dev.record(copied, a)
    dev.wait(b, copied)
    dev.record(end, b)
    dev.synchronize(b)
    assert dev.elapsed_s(start, copied) == pytest.approx(H2D_S + D2D_S)
    assert dev.elapsed_s(start, end) == pytest.approx(H2D_S + D2D_S)


def test_a_loaded_kernel_runs_with_pointers_and_typed_scalars(device):
    gpu, dev = device
    polyval = kernels.load("polyval")
    params = polyval.resolve_params({"k": 3})
    inputs = polyval.make_inputs(1000, params, seed=1)
    launch = polyval.cuda_launch(1000, params)
    function = dev.load(polyval.cuda_source(), launch.function,
                        [None if isinstance(a, str) else a[1] for a in launch.args])
    assert dev.function_facts(function)["registers"] == 48
    stream = dev.stream()
    ptr = {name: dev.alloc(a.nbytes) for name, a in {**inputs.split, **inputs.whole}.items()}
    ptr["y"] = dev.alloc(4000)
    for name in inputs.split | inputs.whole:
        dev.copy_in(ptr[name], (inputs.split | inputs.whole)[name], stream)
    args = tuple(ptr[a] if isinstance(a, str) else a[1](1000 if a[0] == "n" else params[a[0]])
                 for a in launch.args)
    start, end = dev.event(), dev.event()
    dev.record(start, stream)
    dev.launch(function, launch.grid, launch.block, args, stream)
    dev.record(end, stream)
    y = np.empty(1000, np.float32)
    dev.copy_out(y, ptr["y"], stream)
    dev.synchronize(stream)
    assert dev.elapsed_s(start, end) == pytest.approx(KERNEL_S)
    check = polyval.check({"y": y}, polyval.reference(inputs, params), inputs, params)
    assert check.ok, check


def test_the_spin_kernel_holds_its_stream(device):
    _gpu, dev = device
    stream = dev.stream()
    start, end = dev.event(), dev.event()
    dev.record(start, stream)
    gpu_backend.spin(dev, gpu_backend.load_spin(dev), 3e-3, stream)
    dev.record(end, stream)
    dev.synchronize(stream)
    assert dev.elapsed_s(start, end) == pytest.approx(3e-3)


def test_create_context_makes_the_primary_context(device):
    gpu, dev = device
    dev.create_context()
    assert gpu.contexts_created >= 1
