import numpy as np
import pytest

from gpukit import kernels
from gpukit.kernels.polyval import _horner_numpy, gamma, polyval_numpy, polyval_python


@pytest.fixture
def polyval():
    return kernels.load("polyval")


@pytest.mark.parametrize("n", [1, 7, 1000, 40_000])
@pytest.mark.parametrize("k", [1, 5, 300])
@pytest.mark.parametrize("impl", ["python", "numpy"])
def test_implementations_agree_with_reference(polyval, n, k, impl):
    params = polyval.resolve_params({"k": k})
    inputs = polyval.make_inputs(n, params, seed=3)
    out = polyval.alloc_outputs(n, params)
    polyval.host_impls()[impl](inputs.split, inputs.whole, out, params)
    check = polyval.check(out, polyval.reference(inputs, params), inputs, params)
    assert check.ok, check
    assert check.error <= check.tolerance


def test_numpy_blocks_give_the_same_bits_as_one_block(polyval):
    params = polyval.resolve_params({"k": 9})
    inputs = polyval.make_inputs(4321, params, seed=4)
    x, c = inputs.split["x"], inputs.whole["c"]
    whole, blocked = np.empty_like(x), np.empty_like(x)
    _horner_numpy(x, c, whole, block=x.shape[0])
    _horner_numpy(x, c, blocked, block=1000)  # four full blocks and a partial one
    np.testing.assert_array_equal(blocked.view(np.uint32), whole.view(np.uint32))


def test_inputs_are_fixed_by_seed_random_and_never_zero(polyval):
    params = {"k": 8}
    a = polyval.make_inputs(10_000, params, seed=1)
    b = polyval.make_inputs(10_000, params, seed=1)
    c = polyval.make_inputs(10_000, params, seed=2)
    assert np.array_equal(a.split["x"], b.split["x"])
    assert np.array_equal(a.whole["c"], b.whole["c"])
    assert not np.array_equal(a.split["x"], c.split["x"])
    assert np.all(a.split["x"] != 0) and np.all(a.whole["c"] != 0)
    assert a.split["x"].dtype == np.float32 and a.whole["c"].shape == (9,)
    assert (a.split["x"] < 0).any() and (a.split["x"] > 0).any()


def test_reference_is_float64_horner(polyval):
    params = {"k": 3}
    inputs = polyval.make_inputs(100, params)
    x = inputs.split["x"].astype(np.float64)
    c = inputs.whole["c"].astype(np.float64)
    expected = c[0] + c[1] * x + c[2] * x**2 + c[3] * x**3
    ref = polyval.reference(inputs, params)
    np.testing.assert_allclose(ref["y"], expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ref["scale"], np.abs(c[0]) + np.abs(c[1] * x) + np.abs(c[2] * x**2)
                               + np.abs(c[3] * x**3), rtol=1e-12)


def test_check_rejects_wrong_and_unwritten_outputs(polyval):
    params = {"k": 16}
    inputs = polyval.make_inputs(5000, params)
    ref = polyval.reference(inputs, params)
    out = polyval.alloc_outputs(5000, params)
    assert not polyval.check(out, ref, inputs, params).ok  # still NaN: nothing written
    polyval_numpy(inputs.split, inputs.whole, out, params)
    assert polyval.check(out, ref, inputs, params).ok
    # One coefficient off in the last place is far beyond the rounding bound at one point.
    out["y"][1234] = np.nextafter(out["y"][1234], np.float32(np.inf)) * np.float32(1 + 1e-4)
    bad = polyval.check(out, ref, inputs, params)
    assert not bad.ok and "i=1234" in bad.detail
    assert not polyval.check({"y": out["y"].astype(np.float64)}, ref, inputs, params).ok


def test_tolerance_is_the_rounding_bound_and_holds_at_large_k(polyval):
    params = {"k": 4096}
    inputs = polyval.make_inputs(2000, params)
    out = polyval.alloc_outputs(2000, params)
    polyval_numpy(inputs.split, inputs.whole, out, params)
    check = polyval.check(out, polyval.reference(inputs, params), inputs, params)
    assert check.ok
    assert check.tolerance == pytest.approx(gamma(8192) + 2.0**-24)
    # A float32 Horner's error is far from zero: the measure sees rounding, so it can fail.
    assert check.error > 0


def test_python_implementation_rounds_once(polyval):
    params = {"k": 2}
    inputs = polyval.make_inputs(64, params)
    out = polyval.alloc_outputs(64, params)
    polyval_python(inputs.split, inputs.whole, out, params)
    ref = polyval.reference(inputs, params)["y"]
    assert np.array_equal(out["y"], ref.astype(np.float32))


def test_work_model(polyval):
    work = polyval.work(1 << 20, {"k": 64})
    assert work.flops == 2 * 64 * (1 << 20)
    assert work.bytes_in == 4 * (1 << 20) + 4 * 65
    assert work.bytes_out == 4 * (1 << 20)


def test_params_are_validated(polyval):
    from gpukit.errors import UsageError
    assert polyval.resolve_params({}) == {"k": 16}
    with pytest.raises(UsageError, match="k must be >= 1"):
        polyval.resolve_params({"k": 0})
    with pytest.raises(UsageError, match="no parameter 'q'"):
        polyval.resolve_params({"q": 1})
    with pytest.raises(UsageError, match="integer"):
        polyval.resolve_params({"k": "two"})


def test_cuda_source_is_found(polyval):
    assert "polyval" in polyval.cuda_source()
