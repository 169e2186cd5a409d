"""A user's own kernel class: the docs' example run as the docs say, broken kernels that fail
only their own cases with the kernel and implementation named, and specs that cannot work."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gpukit import backends, kernels, runner
from gpukit.errors import UsageError
from gpukit.kernels.user import SimpleKernel
from gpukit.results import Results
from gpukit.timing import Budget

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "my_kernel.py"
FAST = ("--budget-s", "0.01", "--min-reps", "1", "--max-reps", "3", "--no-progress")


def class_section() -> str:
    text = (ROOT / "docs" / "own-kernel.md").read_text()
    return text[text.index("## A kernel class"):]


def test_the_docs_show_the_example_file_as_it_is():
    block = re.search(r"```python\n(.*?)```", class_section(), re.DOTALL).group(1)
    assert block == EXAMPLE.read_text()


def test_the_docs_example_runs_through_the_cli(gpukit_cli, tmp_path):
    line = next(ln for ln in class_section().splitlines()
                if ln.startswith("python -m gpukit compare --kernel examples/"))
    args = shlex.split(line)[3:]  # after `python -m gpukit`
    output = tmp_path / "saxpy.json"
    result = gpukit_cli(*args, *FAST, "-o", str(output))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(output.read_text())
    assert data["sweep"]["kernel"] == "saxpy"
    assert data["sweep"]["kernel_spec"] == f"{EXAMPLE}:Saxpy"  # absolute: workers reload it
    labels = {(c["label"], c["workers"]) for c in data["cases"]}
    assert {("serial/python", 1), ("serial/numpy", 1), ("threads/python", 2),
            ("processes/numpy/shm", 2), ("processes/python/pickle", 1)} <= labels
    assert all(c["status"] == "ok" for c in data["cases"]), data["cases"]
    assert all(c["check"]["error"] <= 2.0 ** -20 for c in data["cases"])
    assert all(c["work"]["flops"] == 2 * 1024 and c["work"]["bytes_in"] == 8 * 1024 + 4
               for c in data["cases"])


def test_kernels_command_lists_builtins_and_a_user_kernel(gpukit_cli):
    result = gpukit_cli("kernels")
    assert result.returncode == 0, result.stderr
    for name in ("polyval", "blackscholes", "mandelbrot", "nbody"):
        assert re.search(rf"^{name}: ", result.stdout, re.MULTILINE)
    # What `kernels` says compare runs is what compare runs: the default sets, not a
    # parameter's own fallback (polyval's k=16, mandelbrot's max_iter=256).
    assert "--param max_iter=N  (1..65536)" in result.stdout
    assert "compare runs, without --param: max_iter=64; max_iter=1024" in result.stdout
    assert "compare runs, without --param: k=2; k=64" in result.stdout
    assert "default 16" not in result.stdout and "default 256" not in result.stdout
    result = gpukit_cli("kernels", "--kernel", "examples/my_kernel.py:Saxpy", "--json")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["name"] == "saxpy" and entry["implementations"] == ["numpy", "python", "cuda"]


# -- broken kernels --------------------------------------------------------------------------------

BROKEN = '''
import numpy as np
from gpukit.kernels.user import SimpleKernel


class Base(SimpleKernel):
    outputs = ("z",)

    def split_inputs(self, n, params, rng):
        return {"x": rng.standard_normal(n, dtype=np.float32)}

    def reference(self, inputs, params):
        return {"z": 2.0 * inputs.split["x"].astype(np.float64)}

    def python(self, split, whole, out, params):
        out["z"][:] = [2.0 * v for v in split["x"].tolist()]

    def numpy(self, split, whole, out, params):
        np.multiply(split["x"], np.float32(2), out=out["z"])


class Raises(Base):
    name = "raises"

    def python(self, split, whole, out, params):
        raise RuntimeError("boom in the user's loop")


class WrongShape(Base):
    name = "wrongshape"

    def numpy(self, split, whole, out, params):
        out["z"] = np.zeros(3)  # a new array, not the rows it was given


class Rebinds(Base):
    name = "rebinds"

    def numpy(self, split, whole, out, params):
        out["z"] = split["x"] * np.float32(2)  # right values, but not into the given rows


class WritesNothing(Base):
    name = "writesnothing"

    def numpy(self, split, whole, out, params):
        pass


class WrongAnswer(Base):
    name = "wronganswer"

    def numpy(self, split, whole, out, params):
        np.multiply(split["x"], np.float32(3), out=out["z"])


class NanInReference(Base):
    # Finite for the 4-row load check, one NaN at larger sizes: a comparison with NaN is false,
    # so without a check of the reference itself any output would pass.
    name = "naninreference"

    def reference(self, inputs, params):
        z = super().reference(inputs, params)["z"]
        if z.shape[0] > 4:
            z[z.shape[0] // 2] = np.nan
        return {"z": z}

    def numpy(self, split, whole, out, params):
        out["z"][:] = 12345.0


class PythonOnly(Base):
    name = "pythononly"
    numpy = None


NOT_A_KERNEL = 42
'''


@pytest.fixture(scope="module")
def broken_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "broken_kernels.py"
    path.write_text(BROKEN)
    return path


@pytest.mark.parametrize("cls,impl,words", [
    ("Raises", "python", "RuntimeError: boom in the user's loop"),
    ("WrongShape", "numpy", "it replaced out['z'] with a new array instead of writing into it"),
    ("Rebinds", "numpy", "it replaced out['z'] with a new array instead of writing into it"),
    ("WritesNothing", "numpy", "are NaN or inf (unwritten?)"),  # shared memory too
    ("WrongAnswer", "numpy", "output disagrees with the reference"),
])
def test_a_broken_implementation_fails_its_cases_by_name_and_the_rest_run(
        gpukit_cli, broken_file, tmp_path, cls, impl, words):
    output = tmp_path / "broken.json"
    result = gpukit_cli("compare", "--kernel", f"{broken_file}:{cls}", "--backends",
                        "serial,processes", "--sizes", "1001", "--workers", "2", *FAST,
                        "-o", str(output))
    assert result.returncode == 1, result.stdout + result.stderr
    cases = json.loads(output.read_text())["cases"]
    name = cls.lower()
    for case in cases:
        if case["impl"] == impl:
            assert case["status"] == "failed", case
            assert case["reason"].startswith(f"kernel {name}, {impl} implementation on "), case
            assert words in case["reason"], case  # on every backend alike
        else:
            assert case["status"] == "ok", case


def test_sizes_after_a_wrong_result_are_skipped_as_after_a_failure(gpukit_cli, broken_file,
                                                                   tmp_path):
    # The analysis leaves such sizes out of "fastest" by this reason (gpukit.results).
    from gpukit.results import SKIPPED_AFTER_FAILURE
    output = tmp_path / "wrong.json"
    result = gpukit_cli("compare", "--kernel", f"{broken_file}:WrongAnswer", "--backends",
                        "serial", "--impls", "numpy", "--sizes", "1001,2002", *FAST,
                        "-o", str(output))
    assert result.returncode == 1, result.stdout + result.stderr
    first, second = sorted(json.loads(output.read_text())["cases"], key=lambda c: c["n"])
    assert first["status"] == "failed"
    assert second["status"] == "skipped" and second["reason"].startswith(SKIPPED_AFTER_FAILURE)


def test_a_reference_with_nan_fails_every_case_instead_of_passing_any_output(
        gpukit_cli, broken_file, tmp_path):
    output = tmp_path / "nan.json"
    result = gpukit_cli("compare", "--kernel", f"{broken_file}:NanInReference", "--backends",
                        "serial", "--sizes", "1001", *FAST, "-o", str(output))
    assert result.returncode == 1, result.stdout + result.stderr
    cases = json.loads(output.read_text())["cases"]
    assert {c["impl"] for c in cases} == {"python", "numpy"}
    for case in cases:
        assert case["status"] == "failed", case
        assert "the reference's 'z' has 1 NaN or inf value(s)" in case["reason"], case


def test_missing_implementations_are_skipped_with_the_reason(broken_file):
    kernel = kernels.load(f"{broken_file}:PythonOnly")
    assert kernel.host_impls().keys() == {"python"}
    status = runner.probe_backends(("serial", "threads", "cupy", "pycuda", "mpi"), kernel)
    assert status["serial"]["variants"] == ["serial/python"]
    for gpu in ("cupy", "pycuda"):
        assert not status[gpu]["available"] and status[gpu]["reason"]
    # A pure-Python kernel still gets the threads vs processes answer.
    sweep = runner.Sweep(kernel, ({},), (1001,), (1, 2), ("threads", "processes"),
                         budget=Budget(budget_s=0.0, min_reps=1, max_reps=1))
    results = runner.Runner(sweep, Results({}, sweep.to_json())).run()
    assert {c["label"] for c in results.cases} == {"threads/python", "processes/python/pickle",
                                                   "processes/python/shm"}
    assert all(c["status"] == "ok" for c in results.cases)


def test_the_cli_says_which_implementations_it_skips_and_refuses_a_run_of_none(
        gpukit_cli, broken_file, tmp_path):
    spec = f"{broken_file}:PythonOnly"
    run = gpukit_cli("compare", "--kernel", spec, "--backends", "serial", "--sizes", "1001",
                     "--budget-s", "0.01", "--no-progress", "-o", str(tmp_path / "r.json"))
    assert run.returncode == 0, run.stderr
    assert "numpy: skipped: kernel pythononly has no numpy implementation (it has: python)" \
        in run.stderr
    none = gpukit_cli("compare", "--kernel", spec, "--backends", "serial", "--impls", "numpy",
                      "-o", str(tmp_path / "none.json"))
    assert none.returncode == 2 and none.stderr.count("\n") == 1
    assert none.stderr.startswith("error: nothing to measure: --impls numpy leaves none of "
                                  "kernel pythononly's implementations (python)"), none.stderr
    assert not (tmp_path / "none.json").exists()


def test_a_backend_with_nothing_to_run_names_the_kernel():
    class CudaOnly(SimpleKernel):
        name = "cudaonly"
        outputs = ("z",)
        cuda_code = 'extern "C" __global__ void cudaonly(float* z, long long n) {}'

    status = runner.probe_backends(("serial",), CudaOnly())
    assert status["serial"]["reason"] == ("kernel cudaonly has no implementation this backend "
                                          "runs (it has: cuda)")
    assert backends.get("cupy").variants(CudaOnly())  # inline CUDA source counts


# -- specs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,words", [
    ("{dir}/nope.py:Saxpy", "does not exist"),
    ("{file}:Nope", "has no attribute 'Nope' (kernels there: Base, NanInReference, PythonOnly, "
                    "Raises, Rebinds, WritesNothing, WrongAnswer, WrongShape)"),
    ("{file}:NOT_A_KERNEL", "is a int, not a function taking `xp` nor a gpukit Kernel subclass"),
    ("{dir}/syntax_error.py:K", "importing kernel file"),
    ("no_such_module_xyz:K", "no module named 'no_such_module_xyz'"),
    ("no_such_kernel", "unknown kernel 'no_such_kernel' (built in: polyval, blackscholes"),
    ("{file}:", "expected path/to/file.py:Name or module:Name"),
    ("{file}", "after a colon, as in {file}:Base (kernels there: Base, NanInReference, PythonOnly"),
])
def test_a_bad_spec_is_a_one_line_usage_error(broken_file, spec, words):
    (broken_file.parent / "syntax_error.py").write_text("def broken(:\n")
    spec = spec.format(dir=broken_file.parent, file=broken_file)
    words = words.format(file=broken_file)
    with pytest.raises(UsageError) as info:
        kernels.load(spec)
    message = str(info.value)
    assert words in message and "\n" not in message


def test_bad_spec_on_the_cli_exits_2_with_one_line(gpukit_cli, broken_file):
    result = gpukit_cli("compare", "--kernel", f"{broken_file}:NOT_A_KERNEL")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_flops_per_row_can_depend_on_the_parameters(tmp_path):
    path = tmp_path / "param_kernel.py"
    path.write_text(textwrap.dedent('''
        import numpy as np
        from gpukit.kernels import Param
        from gpukit.kernels.user import SimpleKernel

        class Iterated(SimpleKernel):
            name = "iterated"
            outputs = ("z",)
            params = (Param("iters", default=4, help="passes per row", minimum=1),)
            def flops_per_row(self, params):
                return 3 * params["iters"]
            def split_inputs(self, n, params, rng):
                return {"x": rng.standard_normal(n, dtype=np.float32)}
            def reference(self, inputs, params):
                return {"z": inputs.split["x"].astype(np.float64)}
            def numpy(self, split, whole, out, params):
                out["z"][:] = split["x"]
    '''))
    kernel = kernels.load(f"{path}:Iterated")
    assert kernel.work(100, {"iters": 4}).flops == 1200
    assert kernel.work(100, {"iters": 256}).flops == 76800


def test_invalid_definitions_are_refused_at_load_time(tmp_path):
    path = tmp_path / "invalid.py"
    path.write_text(textwrap.dedent('''
        import numpy as np
        from gpukit.kernels.user import SimpleKernel

        class NoImpl(SimpleKernel):
            name = "noimpl"
            outputs = ("z",)

        class NoOutputs(SimpleKernel):
            name = "nooutputs"
            def python(self, split, whole, out, params): pass

        class MissingCu(SimpleKernel):
            name = "missingcu"
            outputs = ("z",)
            cuda_file = "missing.cu"

        class Works(SimpleKernel):
            name = "works"
            outputs = ("z",)
            def split_inputs(self, n, params, rng):
                return {"x": rng.standard_normal(n, dtype=np.float32)}
            def reference(self, inputs, params):
                return {"z": 2.0 * inputs.split["x"]}
            def numpy(self, split, whole, out, params):
                np.multiply(split["x"], 2, out=out["z"])

        class Typo(Works):
            name = "typo"
            def split_inputs(self, n, params, rng):
                return {"x": rng.standard_normal(n, dtype=np.flaot32)}

        class NoReference(Works):
            name = "noreference"
            reference = SimpleKernel.reference

        class ReferenceMissesAnOutput(Works):
            name = "refmisses"
            outputs = ("z", "w")

        class MisspelledCudaArg(Works):
            name = "misspelled"
            cuda_code = 'extern "C" __global__ void misspelled() {}'
            cuda_args = ("xx", "z", ("n", np.int64))

        class UnknownCudaScalar(MisspelledCudaArg):
            cuda_args = ("x", "z", ("iters", np.int32))

        class NanReference(Works):
            name = "nanreference"
            def reference(self, inputs, params):
                return {"z": np.full(inputs.split["x"].shape[0], np.nan)}
    '''))
    for cls, words in (("NoImpl", "has no implementation"), ("NoOutputs", "must name at least"),
                       ("MissingCu", "does not exist"),
                       ("Typo", "making a 4-row problem failed: AttributeError: .*flaot32"),
                       ("NoReference", r"reference\(\) of a 4-row problem raised "
                                       "NotImplementedError"),
                       ("ReferenceMissesAnOutput", "reference\\(\\) gives no 'w'"),
                       ("MisspelledCudaArg", "CUDA argument 'xx' is neither an input nor"),
                       ("UnknownCudaScalar", "CUDA scalar 'iters' is neither n nor a param"),
                       ("NanReference", "reference\\(\\) of a 4-row problem gives NaN or inf "
                                        "in 'z'")):
        with pytest.raises(UsageError, match=words) as info:
            kernels.load(f"{path}:{cls}")
        assert "\n" not in str(info.value)
    assert kernels.load(f"{path}:Works").name == "works"


def test_module_spec_is_reloaded_by_worker_processes(gpukit_cli, tmp_path):
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, package / "saxpy_kernel.py")
    output = tmp_path / "module.json"
    result = gpukit_cli("compare", "--kernel", "userpkg.saxpy_kernel:Saxpy", "--backends",
                        "processes", "--impls", "numpy", "--sizes", "999", "--workers", "2",
                        *FAST, "-o", str(output), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(output.read_text())
    assert data["sweep"]["kernel_spec"] == "userpkg.saxpy_kernel:Saxpy"
    assert {c["status"] for c in data["cases"]} == {"ok"}


def test_entry_point_kernels_load_by_name(tmp_path, monkeypatch):
    (tmp_path / "ep_saxpy.py").write_text(EXAMPLE.read_text())
    dist = tmp_path / "ep_saxpy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-saxpy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[gpukit.kernels]\nsaxpy_ep = ep_saxpy:Saxpy\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    kernel = kernels.load("saxpy_ep")
    assert kernel.name == "saxpy" and kernel.spec == "saxpy_ep"
    inputs = kernel.make_inputs(11, {})
    out = kernel.alloc_outputs(11, {})
    kernel.host_impls()["numpy"](inputs.split, inputs.whole, out, {})
    assert kernel.check(out, kernel.reference(inputs, {}), inputs, {}).ok
    assert np.all(np.isfinite(out["z"]))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_example_cuda_source_compiles_for_sm90(tmp_path):
    # The same flags as tests/test_cuda_compile.py uses for the sources under kernels/.
    source = tmp_path / "saxpy.cu"
    source.write_text(kernels.load(f"{EXAMPLE}:Saxpy").cuda_source())
    cmd = [shutil.which("nvcc"), "-arch=sm_90", "-cubin", "-std=c++17", "-Werror",
           "all-warnings", str(source), "-o", str(tmp_path / "saxpy.cubin")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
