"""Array-namespace kernels: a plain function with an `xp` keyword, loaded from a file of its own,
run through `compare` on the CPU backends and MPI, checked against its float64 run; what gpukit
infers of it; and the inputs it cannot take, each refused in one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from gpukit import backends, kernels, runner
from gpukit.analysis import model
from gpukit.analysis import all_findings
from gpukit.errors import KernelError, UsageError
from gpukit.kernels.arrays import TOLERANCE_EPS, ArrayKernel, array_kernel
from gpukit.results import Results
from gpukit.timing import Budget

FAST = ("--budget-s", "0.01", "--min-reps", "1", "--max-reps", "3", "--no-progress")

SOFTPLUS = '''
import numpy


def softplus(x, xp=numpy):
    return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0)
'''

SHAPES = '''
import numpy
import gpukit


def zscore(x, xp=numpy):
    return (x - xp.mean(x)) / xp.std(x)


@gpukit.array_kernel(rowwise=True)
def zscore_claimed_rowwise(x, xp=numpy):
    return (x - xp.mean(x)) / xp.std(x)


def minmax(x, y, xp=numpy):
    return xp.minimum(x, y), xp.maximum(x, y)


@gpukit.array_kernel(
    inputs=lambda n, rng, k: {"a": rng.standard_normal((n, k)), "b": rng.standard_normal((n, k))},
    dtype="float64", params={"k": 3}, flops_per_row=lambda params: 2 * params["k"],
    python=lambda a, b, k: {"dot": [sum(x * y for x, y in zip(r, s)) for r, s in
                                    zip(a.tolist(), b.tolist())],
                            "count": [sum(x > 0 for x in r) for r in a.tolist()]})
def rowdot(a, b, xp=numpy, k=3):
    return {"dot": xp.sum(a * b, axis=1), "count": xp.sum(a > 0, axis=1)}
'''


@pytest.fixture(scope="module")
def softplus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("own") / "softplus.py"
    path.write_text(SOFTPLUS)
    return path


@pytest.fixture(scope="module")
def shapes_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("own") / "shapes.py"
    path.write_text(SHAPES)
    return path


ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "own-kernel.md"


def compare(gpukit_cli, tmp_path, spec, *args):
    output = tmp_path / "out.json"
    result = gpukit_cli("compare", "--kernel", spec, *args, *FAST, "-o", str(output))
    data = json.loads(output.read_text()) if output.exists() else None
    return result, data


# -- a plain function, end to end ---------------------------------------------------------------


@pytest.mark.skipif(shutil.which("mpiexec") is None and not shutil.which("mpirun"),
                    reason="no MPI launcher")
def test_softplus_runs_on_every_cpu_backend_and_mpi_checked_against_its_float64_run(
        gpukit_cli, softplus_file, tmp_path):
    result, data = compare(gpukit_cli, tmp_path, f"{softplus_file}:softplus", "--backends",
                           "serial,threads,processes,mpi", "--sizes", "1000,4099",
                           "--workers", "1,2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert data["sweep"]["kernel"] == "softplus"
    assert data["sweep"]["kernel_spec"] == f"{softplus_file}:softplus"
    labels = {(c["label"], c["workers"]) for c in data["cases"]}
    assert labels == {("serial/numpy", 1), ("threads/numpy", 1), ("threads/numpy", 2),
                      ("processes/numpy/pickle", 1), ("processes/numpy/pickle", 2),
                      ("processes/numpy/shm", 1), ("processes/numpy/shm", 2),
                      ("mpi/numpy", 1), ("mpi/numpy", 2)}
    tolerance = TOLERANCE_EPS * 2.0 ** -23
    for case in data["cases"]:
        assert case["status"] == "ok", case
        assert case["check"]["ok"] and case["check"]["tolerance"] == tolerance
        # float32 log1p and exp: a few roundings, far inside the tolerance
        assert case["check"]["error"] < 1e-6, case
        assert case["work"] == {"flops": 0.0, "bytes_in": 4 * case["n"],
                                "bytes_out": 4 * case["n"]}
    assert "softplus" in result.stdout


def test_the_model_rates_a_function_without_flops_per_row_by_its_own_runs(
        gpukit_cli, softplus_file, tmp_path):
    result, data = compare(gpukit_cli, tmp_path, f"{softplus_file}:softplus", "--backends",
                           "serial,threads", "--sizes", "4096,65536", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    ceil = model.resolve(data)
    rate, _source = ceil.kernel_rates[((), "numpy")]
    assert rate > 0
    verdicts = model.predict_all(data, ceil)
    threads = next(c for c in data["cases"] if c["label"] == "threads/numpy" and c["n"] == 65536)
    predicted = verdicts[model.case_key(threads)].prediction.phases_s["compute"]
    assert predicted > 65536 / (rate * 1e9) / 2
    text = " ".join(f.text for f in all_findings(data))
    assert "the kernel, which declares no FLOPs, rated per row by its own runs (numpy " in text
    assert "G rows/s)" in text


def test_a_whole_array_function_runs_as_one_piece_and_passes_where_chunks_would_not(
        gpukit_cli, shapes_file, tmp_path):
    kernel = kernels.load(f"{shapes_file}:zscore")
    assert kernel.rowwise is False and "sees whole arrays" in kernel.rowwise_how
    result, data = compare(gpukit_cli, tmp_path, f"{shapes_file}:zscore", "--backends",
                           "serial,threads,processes", "--sizes", "3001", "--workers", "2",
                           "--chunks-per-worker", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert data["sweep"]["kernel_rowwise"] is False
    assert {c["status"] for c in data["cases"]} == {"ok"}
    # Had the pools cut it into 6 chunks, each chunk's own mean would be far from the whole's.
    inputs = kernel.make_inputs(3001, {})
    ref = kernel.reference(inputs, {})
    x = inputs.split["x"]
    chunked = np.concatenate([(c - c.mean()) / c.std() for c in np.array_split(x, 6)])
    assert not kernel.check({"out": chunked.astype(np.float32)}, ref, inputs, {}).ok
    # The model gives it one worker, as the backends do.
    ceil = model.resolve(data)
    threads = next(c for c in data["cases"] if c["backend"] == "threads")
    prediction = model.predict(data, threads, ceil).prediction
    assert prediction is not None and "sees whole arrays: one worker runs it" in prediction.notes


@pytest.mark.skipif(shutil.which("mpiexec") is None and not shutil.which("mpirun"),
                    reason="no MPI launcher")
def test_a_whole_array_function_runs_on_rank_0_alone(gpukit_cli, shapes_file, tmp_path):
    result, data = compare(gpukit_cli, tmp_path, f"{shapes_file}:zscore", "--backends", "mpi",
                           "--sizes", "1000", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    (case,) = data["cases"]
    assert case["status"] == "ok" and case["check"]["ok"]


def test_declaring_rowwise_for_a_whole_array_function_is_refused(shapes_file):
    with pytest.raises(UsageError, match=r"zscore_claimed_rowwise .* is declared rowwise=True, "
                                         r"but rows 23 and 41 apart give other 'out'") as info:
        kernels.load(f"{shapes_file}:zscore_claimed_rowwise")
    assert "\n" not in str(info.value)


def test_several_outputs_by_tuple_and_by_dict_each_checked(shapes_file):
    minmax = kernels.load(f"{shapes_file}:minmax")
    assert minmax.input_names == ("x", "y") and minmax.outputs == ("out0", "out1")
    assert minmax.rowwise is True
    inputs = minmax.make_inputs(100, {})
    ref = minmax.reference(inputs, {})
    out = minmax.alloc_outputs(100, {})
    minmax.host_impls()["numpy"](inputs.split, {}, out, {})
    assert minmax.check(out, ref, inputs, {}).ok
    out["out1"][7] += 1.0  # one wrong value in the second output fails the check, by name
    check = minmax.check(out, ref, inputs, {})
    assert not check.ok and check.detail.startswith("worst out1[7]")

    rowdot = kernels.load(f"{shapes_file}:rowdot")
    assert rowdot.outputs == ("dot", "count")
    assert rowdot.output_dtypes({"k": 3}) == {"dot": np.dtype(np.float64),
                                              "count": np.dtype(np.int64)}
    assert rowdot.tolerances == {"dot": TOLERANCE_EPS * 2.0 ** -52, "count": 0.0}
    assert rowdot.work(10, {"k": 5}) == kernels.Work(flops=100.0, bytes_in=2 * 8 * 5 * 10,
                                                     bytes_out=16 * 10)


def test_parameters_and_the_python_variant_run_through_compare(gpukit_cli, shapes_file,
                                                               tmp_path):
    result, data = compare(gpukit_cli, tmp_path, f"{shapes_file}:rowdot", "--backends",
                           "serial,threads,processes", "--sizes", "500", "--workers", "2",
                           "--param", "k=4")
    assert result.returncode == 0, result.stdout + result.stderr
    impls = {c["impl"] for c in data["cases"]}
    assert impls == {"numpy", "python"}
    assert all(c["status"] == "ok" and c["params"] == {"k": 4} for c in data["cases"])
    assert all(c["work"]["flops"] == 8 * 500 for c in data["cases"])


def test_kernels_shows_what_was_inferred_and_where_it_runs(gpukit_cli, shapes_file):
    result = gpukit_cli("kernels", "--kernel", f"{shapes_file}:zscore")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for line in ("  inputs: x float32, n (standard normal)",
                 "  outputs: out float32 (one value per row)",
                 "  row-wise: no, inferred: 23 and 41 rows apart give other 'out' than 64",
                 ("  check: max |out - ref| / max |ref| of each output <= 3.05e-05 (256 x the "
                  "output dtype's machine epsilon); reference: the function under numpy on "
                  "float64 inputs"),
                 "  FLOPs per row: unknown (the model rates it per row by its own runs)",
                 "  serial     runs it: serial/numpy\n",
                 "  threads    runs it: threads/numpy, as one piece"):
        assert line in text, text
    assert "  pycuda     cannot: " in text
    result = gpukit_cli("kernels", "--kernel", f"{shapes_file}:rowdot", "--json")
    (entry,) = json.loads(result.stdout)
    info = entry["array_function"]
    assert info["inputs"] == {"a": "float64, n x 3 (inputs(...))",
                              "b": "float64, n x 3 (inputs(...))"}
    assert info["outputs"] == {"dot": "float64", "count": "int64"} and info["rowwise"] is True
    assert entry["backends"]["serial"]["variants"] == ["serial/numpy", "serial/python"]


def test_a_module_function_loads_by_module_name(gpukit_cli, tmp_path):
    package = tmp_path / "ownpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "act.py").write_text(SOFTPLUS)
    output = tmp_path / "module.json"
    result = gpukit_cli("compare", "--kernel", "ownpkg.act:softplus", "--backends", "processes",
                        "--sizes", "999", "--workers", "2", *FAST, "-o", str(output),
                        cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {c["status"] for c in json.loads(output.read_text())["cases"]} == {"ok"}


# -- the docs --------------------------------------------------------------------------------------


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def test_the_docs_lead_with_a_function_in_a_file_of_its_own_as_the_tests_run_it():
    text = DOC.read_text()
    function_part = text[:text.index("## A kernel class")]
    assert text.index("## A NumPy function") < text.index("## A kernel class")
    first, *_rest, example = python_blocks(function_part)
    assert first == SOFTPLUS.lstrip("\n")
    assert example == (ROOT / "examples" / "array_kernels.py").read_text()
    # The README's short form is the same function.
    readme = (ROOT / "README.md").read_text()
    assert SOFTPLUS.split("\n\n\n")[1] in readme


def test_the_docs_command_and_examples_run(gpukit_cli, tmp_path):
    text = DOC.read_text()
    command = next(ln for ln in text.splitlines()
                   if ln.startswith("python -m gpukit compare --kernel softplus.py:softplus"))
    (tmp_path / "softplus.py").write_text(SOFTPLUS)
    output = tmp_path / "doc.json"
    args = command.split()[3:]
    result = gpukit_cli(*args, "--backends", "serial,threads", "--sizes", "1000",
                       "--workers", "2", *FAST, "-o", str(output), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {c["status"] for c in json.loads(output.read_text())["cases"]} == {"ok"}
    for func in ("softplus", "row_stats", "zscore"):
        result, data = compare(gpukit_cli, tmp_path, f"examples/array_kernels.py:{func}",
                               "--backends", "serial,threads,processes", "--sizes", "999",
                               "--workers", "2")
        assert result.returncode == 0, result.stdout + result.stderr
        assert {c["status"] for c in data["cases"]} == {"ok"}, data["cases"]


# -- what it cannot take ---------------------------------------------------------------------------

BAD = '''
import numpy
import gpukit


def no_xp(x):
    return x


def bitwise(x, xp=numpy):
    return xp.bitwise_and(x, 1)


@gpukit.array_kernel(inputs=lambda n, rng: rng.standard_normal(n), dtype="float32")
def declared_float32(x, xp=numpy):
    return x


@gpukit.array_kernel(dtype=object)
def object_rows(x, xp=numpy):
    return x


@gpukit.array_kernel(inputs=lambda n, rng: numpy.array(["a"] * n))
def strings(x, xp=numpy):
    return x


def drops_a_row(x, xp=numpy):
    return x[:-1]


def total(x, xp=numpy):
    return xp.sum(x)


def two_columns(x, xp=numpy):
    return xp.stack([x, x], axis=1)


def a_list(x, xp=numpy):
    return [float(v) for v in x]


def not_finite(x, xp=numpy):
    return xp.sqrt(x)


def takes_args(*arrays, xp=numpy):
    return arrays[0]


def first_64(x, xp=numpy):
    return x[:64] * 2


def output_named_as_input(x, xp=numpy):
    return {"x": x * 2}


def float64_beyond_64(x, xp=numpy):
    return x * 2 if x.shape[0] <= 64 else x.astype(xp.float64) * 2
'''


@pytest.fixture(scope="module")
def bad_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("own") / "bad.py"
    path.write_text(BAD)
    return path


@pytest.mark.parametrize("func,words", [
    ("no_xp", "is a function without the keyword `xp`"),
    ("takes_args", r"takes \*arrays: name each input array"),
    # wrong dtypes
    ("bitwise", r"bitwise under numpy raised TypeError: .*bitwise_and"),
    ("declared_float32", "input 'x' is float64, but dtype=float32 was declared"),
    ("object_rows", "dtype object is not a numeric dtype"),
    ("strings", "input 'x' is <U1, not a numeric dtype"),
    # outputs of the wrong number of rows, or not arrays of rows
    ("drops_a_row", r"under numpy, output 'out' has shape \(63,\), expected \(64,\)"),
    ("total", "under numpy, output 'out' is one float32 value, not 64 rows"),
    ("two_columns", r"output 'out' has shape \(64, 2\), expected \(64,\): every output"),
    ("a_list", "under numpy, output 'out' is a list, not a numpy array"),
    ("output_named_as_input", "output 'x' has an input's name"),
    ("not_finite", (r"under numpy on 64 rows of standard-normal inputs, \d+ values of output "
                    r"'out' are NaN or inf; give array_kernel\(inputs=...\)")),
])
def test_what_a_function_cannot_take_fails_the_load_in_one_line(bad_file, func, words):
    with pytest.raises(UsageError, match=words) as info:
        kernels.load(f"{bad_file}:{func}")
    message = str(info.value)
    assert "\n" not in message and func in message


def test_bad_load_on_the_cli_exits_2_with_one_line(gpukit_cli, bad_file):
    result = gpukit_cli("compare", "--kernel", f"{bad_file}:drops_a_row", "--backends", "serial")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: function drops_a_row (") and "under numpy" in line


@pytest.mark.parametrize("func,words", [
    ("first_64", r"first_64 under numpy, output 'out' has shape \(64,\), expected \(\d+,\)"),
    ("float64_beyond_64", ("float64_beyond_64 under numpy, output 'out' is float64, but "
                           "float32 on its trial run")),
])
def test_a_case_whose_output_goes_wrong_at_size_fails_alone(gpukit_cli, bad_file, tmp_path,
                                                            func, words):
    result, data = compare(gpukit_cli, tmp_path, f"{bad_file}:{func}", "--backends",
                           "serial,threads", "--sizes", "64,1000", "--workers", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    by_n = {}
    for case in data["cases"]:
        by_n.setdefault(case["n"], []).append(case)
    # At the trial's own size every case runs; beyond it, every case fails by itself, named.
    assert {c["status"] for c in by_n[64]} == {"ok"}
    for case in by_n[1000]:
        assert case["status"] == "failed", case
        assert case["reason"].startswith(f"kernel {func}, numpy implementation on ")
        assert re.search(words, case["reason"]), case["reason"]


def test_a_call_failing_under_another_namespace_names_it():
    class Lacking:
        """A namespace that lacks what the function uses, as one library may lack an operation."""
        __name__ = "lacking"

        def __getattr__(self, name):
            if name == "log1p":
                raise AttributeError("module 'lacking' has no attribute 'log1p'")
            return getattr(np, name)

    def softplus(x, xp=np):
        return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0)

    kernel = ArrayKernel(softplus, "test")
    inputs = kernel.make_inputs(10, {})
    with pytest.raises(KernelError, match="^softplus under lacking raised AttributeError: "
                                          "module 'lacking' has no attribute 'log1p'$"):
        kernel.call(Lacking(), inputs.split, {})


def test_decorator_options_are_checked_where_they_are_written():
    with pytest.raises(UsageError, match="tolerance"):
        array_kernel(tolerance=-1)
    with pytest.raises(UsageError, match="must be a function"):
        array_kernel(reference=3)

    @array_kernel(tolerance=0.5, name="loose")
    def f(x, xp=np):
        return x
    kernel = ArrayKernel(f)
    assert kernel.name == "loose" and kernel.tolerances == {"out": 0.5}


def test_threads_cut_a_rowwise_function_into_chunks_in_process(shapes_file):
    kernel = kernels.load(f"{shapes_file}:minmax")
    sweep = runner.Sweep(kernel, ({},), (777,), (2,), ("threads",),
                         budget=Budget(budget_s=0.0, min_reps=1, max_reps=1),
                         settings={"chunks_per_worker": 2})
    assert backends.base.row_chunks(kernel, 777, 4) == [(0, 195), (195, 389), (389, 583),
                                                        (583, 777)]
    results = runner.Runner(sweep, Results({}, sweep.to_json())).run()
    (case,) = results.cases
    assert case["status"] == "ok" and case["check"]["ok"]
