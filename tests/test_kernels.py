"""The built-in kernels blackscholes, mandelbrot and nbody: every CPU implementation on every CPU
backend against the float64 reference at odd sizes, checks that catch wrong outputs, the work
models, the launch configurations, the CUDA sources run on the host by an emulator, and their C
signatures against the arguments the GPU backends pass."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pytest

from gpukit import backends, kernels
from gpukit.backends.cuda_common import make_problem
from gpukit.kernels import blackscholes as bs_module
from gpukit.kernels import mandelbrot as mb_module
from gpukit.kernels import nbody as nb_module
from gpukit.kernels.base import Inputs

import cuda_host
from cuda_host import needs_cxx

ROOT = Path(__file__).resolve().parent.parent
U = 2.0 ** -24

# Param sets and an odd size per kernel: small enough for pure Python, odd so that chunks and
# tiles are uneven.
PARAM_SETS = {"blackscholes": ({},), "mandelbrot": ({"max_iter": 64}, {"max_iter": 1024}),
              "nbody": ({},)}
SIZES = {"blackscholes": 1001, "mandelbrot": 999, "nbody": 301}
SEED = 1


@functools.cache
def problem(name: str, params_items: tuple, n: int):
    kernel = kernels.load(name)
    params = dict(params_items)
    inputs = kernel.make_inputs(n, params, seed=SEED)
    return inputs, kernel.reference(inputs, params)


def numpy_output(name: str, params: dict, n: int):
    kernel = kernels.load(name)
    inputs, ref = problem(name, tuple(sorted(params.items())), n)
    out = kernel.alloc_outputs(n, params)
    kernel.host_impls()["numpy"](inputs.split, inputs.whole, out, params)
    return kernel, inputs, ref, out


# -- every implementation on every CPU backend -----------------------------------------------------

BACKEND_WORKERS = (("serial", 1), ("threads", 2), ("processes", 2))
VARIANTS = [(backend, workers, variant) for backend, workers in BACKEND_WORKERS
            for variant in backends.get(backend).variants(kernels.load("nbody"))]


@pytest.fixture(scope="module")
def sessions():
    """One open session per (variant, workers), shared by all kernels: pools start once."""
    opened = {}

    def get(variant, workers):
        key = (variant, workers)
        if key not in opened:
            session = backends.get(variant.backend)(variant, workers, {"chunks_per_worker": 2})
            session.open()
            opened[key] = session
        return opened[key]

    yield get
    for session in opened.values():
        session.close()


@pytest.mark.parametrize("name", sorted(PARAM_SETS))
@pytest.mark.parametrize("backend,workers,variant", VARIANTS,
                         ids=[f"{v.label}-x{w}" for _, w, v in VARIANTS])
def test_implementation_on_backend_agrees_with_reference(name, backend, workers, variant,
                                                         sessions):
    kernel = kernels.load(name)
    n = SIZES[name]
    session = sessions(variant, workers)
    for params in PARAM_SETS[name]:
        params = kernel.resolve_params(params)
        inputs, ref = problem(name, tuple(sorted(params.items())), n)
        session.prepare(kernel, params, inputs)
        try:
            out, _timing = session.run()
        finally:
            session.release()
        check = kernel.check(out, ref, inputs, params)
        assert check.ok, (variant.label, params, check)


def test_python_versions_compute_in_float64_and_round_once():
    n = 301
    for name in PARAM_SETS:
        kernel = kernels.load(name)
        for params in PARAM_SETS[name]:
            inputs, ref = problem(name, tuple(sorted(params.items())), n)
            out = kernel.alloc_outputs(n, params)
            kernel.host_impls()["python"](inputs.split, inputs.whole, out, params)
            check = kernel.check(out, ref, inputs, params)
            if name == "mandelbrot":
                assert check.error == 0.0  # the same float64 iteration as the reference
            else:
                assert check.error <= 2 * U, (name, check)


def test_numpy_errors_are_well_inside_the_bounds():
    for name in PARAM_SETS:
        for params in PARAM_SETS[name]:
            kernel, inputs, ref, out = numpy_output(name, params, SIZES[name])
            check = kernel.check(out, ref, inputs, params)
            assert check.ok and check.error <= check.tolerance / 3, (name, params, check)


# -- the checks catch wrong outputs ----------------------------------------------------------------


def _corrupt(out, **changes):
    bad = {k: v.copy() for k, v in out.items()}
    for name, fn in changes.items():
        bad[name] = fn(bad[name])
    return bad


def _set(i, value):
    def change(a):
        a[i] = value
        return a
    return change


def _wrong_outputs(name, out, inputs):
    n = next(iter(inputs.split.values())).shape[0]
    common = {
        "too few rows": _corrupt(out, **{k: (lambda a: a[:-1]) for k in out}),
        "float64 or int64 instead of 32 bits": _corrupt(
            out, **{k: (lambda a: a.astype(a.dtype.kind + "8")) for k in out}),
    }
    if all(a.dtype.kind == "f" for a in out.values()):
        common["a NaN (unwritten) row"] = _corrupt(out, **{k: _set(n // 2, np.nan) for k in out})
    if name == "blackscholes":
        sk = inputs.split["S"][7] + inputs.split["K"][7]
        specific = {"call and put swapped": {"call": out["put"], "put": out["call"]},
                    "one price off by 1e-3 (S + K)":
                        _corrupt(out, call=_set(7, out["call"][7] + 1e-3 * sk))}
    elif name == "mandelbrot":
        count = out["count"]
        some = np.arange(0, n, 40)  # 2.5% of the points
        specific = {"off by one everywhere": {"count": count + 1},
                    "2.5% of the counts wrong": _corrupt(
                        out, count=_set(some, (count[some] + 3) % 64)),
                    "an unwritten row": _corrupt(out, count=_set(3, -1))}
    else:
        specific = {"sign flipped": _corrupt(out, ax=np.negative),
                    "one component 1% off": _corrupt(out, ay=_set(0, out["ay"][0] * 1.01))}
    return {**common, **specific}


@pytest.mark.parametrize("name", sorted(PARAM_SETS))
def test_check_rejects_wrong_outputs(name):
    params = kernels.load(name).resolve_params(PARAM_SETS[name][0])
    kernel, inputs, ref, out = numpy_output(name, params, SIZES[name])
    assert kernel.check(out, ref, inputs, params).ok
    for what, bad in _wrong_outputs(name, out, inputs).items():
        check = kernel.check(bad, ref, inputs, params)
        assert not check.ok, what
        assert check.detail, what


def test_blackscholes_check_catches_formula_mistakes():
    kernel = kernels.load("blackscholes")
    inputs, ref = problem("blackscholes", (), 1001)
    mistakes = {
        "strike and spot swapped": {**inputs.split, "S": inputs.split["K"],
                                    "K": inputs.split["S"]},
        "no discounting": {**inputs.split, "r": np.zeros_like(inputs.split["r"])},
        "variance for volatility": {**inputs.split, "v": inputs.split["v"] ** 2},
    }
    for what, split in mistakes.items():
        out = kernel.alloc_outputs(1001, {})
        bs_module.blackscholes_numpy(split, {}, out, {})
        check = kernel.check(out, ref, inputs, {})
        assert not check.ok and check.error > 1e-3, (what, check)


def test_mandelbrot_tolerance_is_one_percent_plus_four_points():
    kernel = kernels.load("mandelbrot")
    params = {"max_iter": 64}
    inputs, ref = problem("mandelbrot", (("max_iter", 64),), 999)
    allowed = int(0.01 * 999 + 4)  # 13 points
    for differing, ok in ((allowed, True), (allowed + 1, False)):
        count = ref["count"].copy()
        count[:differing] = (count[:differing] + 1) % 64
        assert kernel.check({"count": count}, ref, inputs, params).ok is ok


def test_nbody_reference_samples_rows_at_large_n_but_every_row_is_checked_for_nan():
    n = 3001
    kernel = kernels.load("nbody")
    inputs = kernel.make_inputs(n, {}, seed=SEED)
    ref = kernel.reference(inputs, {})
    rows = ref["rows"]
    assert rows.shape[0] <= nb_module.REFERENCE_ROWS
    assert {0, 127, n - 128, n - 1} <= set(rows.tolist())
    out = kernel.alloc_outputs(n, {})
    nb_module.nbody_numpy(inputs.split, inputs.whole, out, {})
    assert kernel.check(out, ref, inputs, {}).ok
    unsampled = next(i for i in range(n) if i not in set(rows.tolist()))
    out["az"][unsampled] = np.nan
    assert not kernel.check(out, ref, inputs, {}).ok


def _nbody_on_sampled_rows(n: int, bodies_used: int):
    """NumPy's nbody at the reference's sampled rows only (every row at 2^18 would take minutes),
    summing over the first `bodies_used` bodies; the other rows get 0, so that the check's NaN
    scan passes and only the sampled rows decide."""
    kernel = kernels.load("nbody")
    inputs = kernel.make_inputs(n, {}, seed=SEED)
    ref = kernel.reference(inputs, {})
    rows = ref["rows"]
    split = {name: a[rows] for name, a in inputs.split.items()}
    whole = {name: a[:bodies_used] for name, a in inputs.whole.items()}
    part = {name: np.empty(rows.shape[0], dtype=np.float32) for name in kernel.outputs}
    nb_module.nbody_numpy(split, whole, part, {})
    out = {name: np.zeros(n, dtype=np.float32) for name in kernel.outputs}
    for name in kernel.outputs:
        out[name][rows] = part[name]
    return kernel.check(out, ref, inputs, {})


@pytest.mark.parametrize("n", [2**14, max(kernels.load("nbody").default_sizes)])
def test_nbody_check_catches_a_dropped_tile_and_passes_numpy_by_far(n):
    # A wrong loop bound in nbody.cu's shared-memory tiling skips the last tile of CUDA_BLOCK
    # bodies. The worst-case bound gamma(n) let that through at 2^18 (1.4e-2 < 1.6e-2).
    check = _nbody_on_sampled_rows(n, n)
    assert check.ok and check.error * 100 <= check.tolerance, check
    dropped = _nbody_on_sampled_rows(n, n - nb_module.CUDA_BLOCK)
    assert not dropped.ok and dropped.error > 10 * dropped.tolerance, dropped
    assert dropped.detail


# -- work models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PARAM_SETS))
def test_work_model_is_sane(name):
    kernel = kernels.load(name)
    params = kernel.resolve_params(PARAM_SETS[name][0])
    n = 1001
    work, work2 = kernel.work(n, params), kernel.work(2 * n, params)
    inputs = kernel.make_inputs(n, params)
    out_bytes = sum(dt.itemsize for dt in kernel.output_dtypes(params).values()) * n
    assert work.flops > 0 and work.bytes_out == out_bytes
    growth = 4.0 if name == "nbody" else 2.0  # nbody is all pairs
    assert work2.flops / work.flops == pytest.approx(growth)
    if name == "nbody":
        assert work.bytes_in == 16 * n < inputs.nbytes  # target positions travel twice
    else:
        assert work.bytes_in == inputs.nbytes


def test_mandelbrot_work_follows_the_iterations_really_done():
    kernel = kernels.load("mandelbrot")
    previous = 0.0
    for max_iter in (64, 256, 1024):
        mean = mb_module.mean_count(max_iter)
        assert previous < mean < max_iter
        previous = mean
    n = 1 << 14
    inputs = kernel.make_inputs(n, {"max_iter": 256}, seed=5)
    done = kernel.reference(inputs, {"max_iter": 256})["count"].mean()
    assert kernel.work(n, {"max_iter": 256}).flops == pytest.approx(8 * done * n, rel=0.1)


def test_mandelbrot_grid_shape_holds_n_points_in_near_square_cells():
    for n in (1, 2, 7, 999, 1024, 1 << 20):
        width, height = mb_module.grid_shape(n)
        assert width * (height - 1) < n <= width * height
        if n > 100:
            cell_w = (mb_module.X_MAX - mb_module.X_MIN) / width
            cell_h = (mb_module.Y_MAX - mb_module.Y_MIN) / height
            assert 0.8 < cell_w / cell_h < 1.25
    p = mb_module.points(999, seed=0)
    assert not np.any(p["cy"] == 0)  # the sub-cell offset keeps points off the real axis


# -- launch configurations -------------------------------------------------------------------------


def _define(source: str, name: str) -> str:
    match = re.search(rf"^#define {name} (\S+)\s*$", source, re.MULTILINE)
    assert match, f"#define {name} not found"
    return match.group(1)


@pytest.mark.parametrize("name,macro,module", [("blackscholes", "BS_BLOCK", bs_module),
                                               ("mandelbrot", "MANDELBROT_BLOCK", mb_module),
                                               ("nbody", "NBODY_BLOCK", nb_module)])
def test_launch_matches_the_source_and_the_gpu_backends_accept_it(name, macro, module):
    kernel = kernels.load(name)
    source = kernel.cuda_source()
    assert int(_define(source, macro)) == module.CUDA_BLOCK
    params = kernel.resolve_params(PARAM_SETS[name][0])
    for n in (1, 255, 1001, 1 << 20):
        launch = kernel.cuda_launch(n, params)
        assert launch.block == module.CUDA_BLOCK and launch.grid * launch.block >= n
        assert launch.function in source and 'extern "C"' in source
    inputs = kernel.make_inputs(1001, params)
    problem_ = make_problem(kernel, params, inputs)  # every argument resolves
    assert problem_.n == 1001


def test_nbody_softening_is_the_same_in_python_and_cuda():
    source = kernels.load("nbody").cuda_source()
    value = float(_define(source, "NBODY_SOFTENING2").rstrip("f"))
    assert float(np.float32(value)) == nb_module.SOFTENING2


# -- the CUDA sources on a host emulator -----------------------------------------------------------

PAD = 37  # rows past n that the kernel must leave alone


def emulate(kernel, params, n, grid=None):
    """Run `kernel`'s CUDA source on the host (tests/cuda_host.py) with the arguments the GPU
    backends pass; its outputs (n rows) and the padding past them, which must stay untouched."""
    inputs = kernel.make_inputs(n, params, seed=SEED)
    problem = make_problem(kernel, params, inputs)
    padded = kernel.alloc_outputs(n + PAD, params)
    pointers = {name: a.ctypes.data for name, a in {**problem.inputs, **padded}.items()}
    keep = cuda_host.ParamBytes()
    cuda_host.HostKernel(kernel.cuda_source(), problem.launch.function).launch(
        grid or problem.launch.grid, problem.launch.block, keep.of(problem.args(pointers)))
    out = {k: v[:n] for k, v in padded.items()}
    pad = {k: v[n:] for k, v in padded.items()}
    return inputs, out, pad


def launch_signature(kernel) -> list[str]:
    """The C types the GPU backends pass: the arrays' dtypes, the scalars' NumPy types."""
    params = kernel.resolve_params({})
    inputs = kernel.make_inputs(1000, params, seed=SEED)
    arrays = {**inputs.split, **inputs.whole}
    outputs = {name: np.dtype(dt) for name, dt in kernel.output_dtypes(params).items()}
    want = []
    for arg in kernel.cuda_launch(1000, params).args:
        if isinstance(arg, str):
            dtype = arrays[arg].dtype if arg in arrays else outputs[arg]
            want.append(f"{'const ' if arg in arrays else ''}{dtype.kind}{dtype.itemsize}*")
        else:
            dtype = np.dtype(arg[1])
            want.append(f"{dtype.kind}{dtype.itemsize}")
    return want


CUDA_KERNELS = ("polyval", "blackscholes", "mandelbrot", "nbody",
                f"{ROOT / 'examples' / 'my_kernel.py'}:Saxpy")


@needs_cxx
@pytest.mark.parametrize("spec", CUDA_KERNELS, ids=lambda s: s.rsplit(":", 1)[-1])
def test_cuda_signature_matches_the_launch_arguments(spec):
    # CuPy and PyCUDA pack each argument's bytes from what gpukit passes, whatever the C
    # signature says: an int32 where the kernel takes long long would shift every later argument.
    kernel = kernels.load(spec)
    function = kernel.cuda_launch(1000, kernel.resolve_params({})).function
    assert cuda_host.HostKernel(kernel.cuda_source(), function).signature() == \
        launch_signature(kernel)


def _untouched(pad):
    return all(np.all(np.isnan(a)) if a.dtype.kind == "f" else np.all(a == -1)
               for a in pad.values())


@needs_cxx
def test_blackscholes_cu_on_host_agrees_with_reference():
    kernel = kernels.load("blackscholes")
    for n, grid in ((1001, None), (1001, 2)):  # grid 2: the grid-stride loop does the rest
        inputs, out, pad = emulate(kernel, {}, n, grid)
        check = kernel.check(out, kernel.reference(inputs, {}), inputs, {})
        assert check.ok, check
        assert _untouched(pad)


@needs_cxx
def test_mandelbrot_cu_on_host_equals_numpy_bit_for_bit():
    kernel = kernels.load("mandelbrot")
    params = {"max_iter": 256}
    inputs, out, pad = emulate(kernel, params, 999)
    want = kernel.alloc_outputs(999, params)
    mb_module.mandelbrot_numpy(inputs.split, inputs.whole, want, params)
    np.testing.assert_array_equal(out["count"], want["count"])
    assert kernel.check(out, kernel.reference(inputs, params), inputs, params).ok
    assert _untouched(pad)


@needs_cxx
def test_nbody_cu_tiles_on_host_agree_with_reference():
    kernel = kernels.load("nbody")
    for n in (1, 301, 2 * nb_module.CUDA_BLOCK + 1):  # one body; partial tiles; a tile + 1
        inputs, out, pad = emulate(kernel, {}, n)
        check = kernel.check(out, kernel.reference(inputs, {}), inputs, {})
        assert check.ok, (n, check)
        assert _untouched(pad)


@needs_cxx
def test_readme_example_cuda_on_host_agrees_with_reference():
    kernel = kernels.load(f"{ROOT / 'examples' / 'my_kernel.py'}:Saxpy")
    inputs, out, pad = emulate(kernel, {}, 1001)
    assert kernel.check(out, kernel.reference(inputs, {}), inputs, {}).ok
    assert _untouched(pad)


@pytest.mark.parametrize("name, module", [("blackscholes", bs_module),
                                          ("mandelbrot", mb_module)])
def test_numpy_blocks_give_the_same_result_as_one_block(name, module, monkeypatch):
    params = PARAM_SETS[name][0]
    kernel, _inputs, _ref, whole = numpy_output(name, params, SIZES[name])
    monkeypatch.setattr(module, "NUMPY_BLOCK", 100)  # ten full blocks and a partial one
    _kernel, _inputs, _ref, blocked = numpy_output(name, params, SIZES[name])
    for out_name in whole:
        np.testing.assert_array_equal(blocked[out_name], whole[out_name])


def test_inputs_split_rows_and_whole_arrays():
    for name in PARAM_SETS:
        kernel = kernels.load(name)
        params = kernel.resolve_params(PARAM_SETS[name][0])
        inputs = kernel.make_inputs(7, params)
        assert isinstance(inputs, Inputs)
        assert all(a.shape == (7,) and a.dtype == np.float32 for a in inputs.split.values())
        assert not set(inputs.split) & set(inputs.whole)  # names are unique across both
