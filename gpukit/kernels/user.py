"""Your own kernel: the contract, and `SimpleKernel`, a base that fills in the rest.

A plain NumPy-style function that takes the array namespace as the keyword `xp` needs none of
this: `--kernel path/to/file.py:func` wraps it (gpukit/kernels/arrays.py). The class form below
is for what such a function cannot say: CUDA C, inputs every chunk sees whole, outputs written
in place.

`python -m gpukit compare --kernel path/to/file.py:Name` (or `package.module:Name`, or the name
of an entry point in the `gpukit.kernels` group) loads `Name`: a `gpukit.kernels.Kernel`
subclass or instance. The minimal contract of a Kernel (see gpukit/kernels/base.py):

- `name`, `outputs` (output names; every output has one row per problem row);
- `make_inputs(n, params, seed) -> Inputs(split, whole)`: `split` arrays have n rows and are cut
  into chunks for threads and processes; `whole` arrays go to every chunk;
- `output_dtypes(params)`, `reference(inputs, params)` (float64 results, by output name),
  `check(out, ref, inputs, params) -> Check`, `work(n, params) -> Work`;
- implementations, any of them: `host_impls()` -> {'python': f, 'numpy': f} with
  `f(split, whole, out, params)` filling `out`'s arrays in place for this chunk's rows; and
  `cuda_file` + `cuda_source()` + `cuda_launch(n, params)` for the GPU.

A missing implementation is not an error: the backends that need it are listed as unavailable
with the reason, and the others run. The file is imported again in every worker process, so it
must be importable on its own (no reliance on `__main__`).

`SimpleKernel` needs less: `name`, `outputs`, `split_inputs` (and `whole_inputs` if any),
`reference`, a `tolerance`, `flops_per_row`, and methods named `python` and/or `numpy`, and/or a
CUDA source (`cuda_code` as a string, or `cuda_file` relative to your .py file). Its check is
the normwise relative error of each output, max|out - ref| / max|ref|, against `tolerance`.
examples/my_kernel.py is a complete one.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gpukit.errors import Interrupted, UsageError
from gpukit.kernels.base import HOST_IMPLS, Check, CudaLaunch, Inputs, Kernel, Work
from gpukit.kernels.checks import (failed_check, nonfinite_problem, normwise_error,
                                   output_problem, reference_problem)


class SimpleKernel(Kernel):
    """A kernel with sensible defaults; subclass it and fill in what your computation needs.

    Required: `name`, `outputs`, `split_inputs`, `reference`. Optional: `whole_inputs`,
    `summary`, `params` and `default_param_sets`, `output_dtype` (float32 unless set),
    `tolerance`, `flops_per_row` (a number, or a method `flops_per_row(self, params)` when the
    work depends on a parameter; the model and the GFLOP/s column rest on it), the `python` and
    `numpy` methods, and a CUDA version:
    `cuda_code` (a string) or `cuda_file` (a path, relative to your .py file), the
    `cuda_function` name (default: `name`), its `cuda_args` (default: split inputs, whole
    inputs, outputs, then `("n", np.int64)`), and `cuda_block` threads per block (grid = enough
    blocks for one thread per row).
    """

    output_dtype = np.float32
    tolerance = 1e-5
    flops_per_row = 0.0
    cuda_code: str | None = None
    cuda_function: str | None = None
    cuda_args: tuple | None = None
    cuda_block = 256

    # Define as methods: def python(self, split, whole, out, params): ...
    python = None
    numpy = None

    def __init__(self):
        if self.cuda_code is not None and self.cuda_file is None:
            # The GPU backends offer a variant when cuda_file is set and read cuda_source().
            self.cuda_file = f"<inline: {type(self).__name__}.cuda_code>"

    # -- what the user writes ------------------------------------------------------------------

    def split_inputs(self, n: int, params: Mapping[str, int],
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"kernel {self.name} must define split_inputs(n, params, rng)")

    def whole_inputs(self, n: int, params: Mapping[str, int],
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {}

    # -- the Kernel interface, filled in -------------------------------------------------------

    def make_inputs(self, n, params, seed=0):
        rng = np.random.default_rng([seed, n])
        split = dict(self.split_inputs(n, params, rng))
        whole = dict(self.whole_inputs(n, params, rng))
        for name, arr in split.items():
            if not isinstance(arr, np.ndarray) or arr.ndim < 1 or arr.shape[0] != n:
                raise ValueError(f"kernel {self.name}: split input {name!r} must be a NumPy "
                                 f"array with {n} rows")
        if not split:
            raise ValueError(f"kernel {self.name}: split_inputs returned no arrays")
        return Inputs(split=split, whole=whole)

    def output_dtypes(self, params):
        return {name: np.dtype(self.output_dtype) for name in self.outputs}

    def check(self, out, ref, inputs, params) -> Check:
        measure = "max |out - ref| / max |ref|, per output"
        n = next(iter(inputs.split.values())).shape[0]
        problem = output_problem(out, self.output_dtypes(params), n) or nonfinite_problem(out)
        if problem:
            return failed_check(self.tolerance, measure, problem)
        error, detail = 0.0, ""
        for name in self.outputs:
            r = np.asarray(ref[name], dtype=np.float64)
            problem = reference_problem(name, r)
            if problem:
                return failed_check(self.tolerance, measure, problem)
            rel, worst = normwise_error(out[name], r)
            if r.size and rel > error:
                error = rel
                detail = (f"worst {name}[{worst}]: got {out[name][worst].item()!r}, "
                          f"reference {r[worst].item()!r}")
        ok = error <= self.tolerance
        return Check(ok, error, float(self.tolerance), measure, "" if ok else detail)

    def work(self, n, params) -> Work:
        row_bytes, whole_bytes = self._input_bytes(tuple(sorted(params.items())))
        out_bytes = sum(dt.itemsize for dt in self.output_dtypes(params).values())
        per_row = self.flops_per_row
        if callable(per_row):  # a method: the FLOPs per row depend on the parameters
            per_row = per_row(params)
        return Work(flops=float(per_row) * n, bytes_in=row_bytes * n + whole_bytes,
                    bytes_out=out_bytes * n)

    # Kernels live as long as the process, so the cache holding them (B019) frees nothing early.
    @functools.lru_cache(maxsize=16)  # noqa: B019
    def _input_bytes(self, params: tuple) -> tuple[int, int]:
        # Bytes per split row and of the whole inputs, from a one-row problem: right as long as
        # the whole inputs do not grow with n (override work() if they do).
        inputs = self.make_inputs(1, dict(params))
        return (sum(a.nbytes for a in inputs.split.values()),
                sum(a.nbytes for a in inputs.whole.values()))

    def host_impls(self):
        return {name: getattr(self, name) for name in HOST_IMPLS
                if callable(getattr(self, name, None))}

    def cuda_source(self) -> str:
        if self.cuda_code is not None:
            return self.cuda_code
        if self.cuda_file is None:
            raise NotImplementedError(f"kernel {self.name} has no CUDA version")
        return self._cuda_path().read_text()

    def _cuda_path(self) -> Path:
        path = Path(self.cuda_file)
        if not path.is_absolute():
            module = sys.modules.get(type(self).__module__)
            folder = Path(getattr(module, "__file__", None) or ".").resolve().parent
            path = folder / path
        return path

    def cuda_launch(self, n, params) -> CudaLaunch:
        if self.cuda_file is None:
            raise NotImplementedError(f"kernel {self.name} has no CUDA version")
        args = self.cuda_args
        if args is None:
            inputs = self.make_inputs(1, params)
            args = (*inputs.split, *inputs.whole, *self.outputs, ("n", np.int64))
        return CudaLaunch(function=self.cuda_function or self.name, args=tuple(args),
                          block=self.cuda_block, grid=max(1, -(-n // self.cuda_block)))

    def validate(self) -> None:
        """Raise UsageError, in one line, where the definition cannot work."""
        if self.cuda_code is None and self.cuda_file is not None \
                and not self.cuda_file.startswith("<") and not self._cuda_path().is_file():
            raise UsageError(f"kernel {self.name}: cuda_file {str(self._cuda_path())!r} "
                             f"does not exist")


# -- finding a user's kernel ---------------------------------------------------------------------

ENTRY_POINT_GROUP = "gpukit.kernels"


def entry_points() -> dict:
    """Kernels that installed packages declare in the `gpukit.kernels` entry-point group."""
    from importlib.metadata import entry_points as find
    found = {}
    for ep in find(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


# What a user's code may raise as gpukit loads or tries it: anything, SystemExit and a
# KeyboardInterrupt of its own included. The user's Ctrl-C (Interrupted) still stops gpukit.
USER_FAULTS = (Exception, SystemExit, KeyboardInterrupt)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _looks_like_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target or Path(target).is_file()


def _import_file(target: str):
    import hashlib
    import importlib.util
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"kernel file {target} " + ("is not a regular file" if path.exists()
                                                     else "does not exist"))
    # A name per path, so two files called kernel.py don't collide; registered in sys.modules so
    # that dataclasses, pickling and relative lookups inside the file work as in any module.
    name = f"gpukit_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name], path
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path} as Python (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Interrupted:
        raise
    except USER_FAULTS as exc:
        del sys.modules[name]
        raise UsageError(f"importing kernel file {path} failed: {_one_line(exc)}") from None
    return module, path


def _import_module(target: str):
    import importlib
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise UsageError(f"no module named {target!r} (is it installed, or on PYTHONPATH?)") \
                from None
        raise UsageError(f"importing module {target} failed: {_one_line(exc)}") from None
    except Interrupted:
        raise
    except USER_FAULTS as exc:
        raise UsageError(f"importing module {target} failed: {_one_line(exc)}") from None


def _as_kernel(obj, where: str) -> Kernel:
    from gpukit.kernels.arrays import ArrayKernel, is_array_function
    if is_array_function(obj):
        return ArrayKernel(obj, where)
    if inspect.isfunction(obj):
        raise UsageError(f"{where} is a function without the keyword `xp`: an array-namespace "
                         f"kernel takes the array namespace, as in def {obj.__name__}(x, "
                         f"xp=numpy) (see docs/own-kernel.md)")
    if isinstance(obj, type) and issubclass(obj, Kernel):
        try:
            return obj()
        except Interrupted:
            raise
        except USER_FAULTS as exc:
            raise UsageError(f"{where}: {obj.__name__}() failed: {_one_line(exc)}") from None
    if isinstance(obj, Kernel):
        return obj
    raise UsageError(f"{where} is a {type(obj).__name__}, not a function taking `xp` nor a "
                     f"gpukit Kernel subclass or instance (see docs/own-kernel.md)")


def load_user(spec: str, builtin: tuple[str, ...]) -> Kernel:
    """The kernel named by a spec that is not a built-in name; its `spec` reloads it anywhere.

    'path/to/file.py:Name' (spec becomes the absolute path), 'package.module:Name', or the name
    of an entry point in the gpukit.kernels group. UsageError, in one line, for anything else.
    """
    text = spec.strip()
    if ":" not in text and _looks_like_path(text):
        module, path = _import_file(text)
        found = _kernels_in(module)
        example = f"{text}:{found[0]}" if found else f"{text}:Name"
        raise UsageError(f"name the kernel in {path} after a colon, as in {example}"
                         + (f" (kernels there: {', '.join(found)})" if found else ""))
    if ":" not in text:
        ep = entry_points().get(text)
        if ep is None:
            installed = ", ".join(sorted(entry_points())) or "none"
            raise UsageError(f"unknown kernel {spec!r} (built in: {', '.join(builtin)}; "
                             f"installed: {installed}; or give path/to/file.py:Name or "
                             f"module:Name)")
        where = f"entry point {text!r} ({ep.value})"
        try:
            obj = ep.load()
        except Interrupted:
            raise
        except USER_FAULTS as exc:
            raise UsageError(f"loading {where} failed: {_one_line(exc)}") from None
        attr, canonical = text, text
    else:
        target, _, attr = text.rpartition(":")
        if not target or not attr.isidentifier():
            raise UsageError(f"kernel {spec!r}: expected path/to/file.py:Name or module:Name")
        if _looks_like_path(target):
            module, path = _import_file(target)
            where, canonical = f"{path}", f"{path}:{attr}"
        else:
            module = _import_module(target)
            where, canonical = f"module {target}", f"{target}:{attr}"
        if not hasattr(module, attr):
            found = _kernels_in(module)
            hint = f" (kernels there: {', '.join(found)})" if found else ""
            raise UsageError(f"{where} has no attribute {attr!r}{hint}")
        obj = getattr(module, attr)
        where = f"{where}:{attr}"
    kernel = _as_kernel(obj, where)
    if not getattr(kernel, "name", ""):
        kernel.name = attr
    kernel.spec = canonical
    validate(kernel, where)
    return kernel


def _kernels_in(module) -> list[str]:
    """Names of the kernels a module defines (not those it imports)."""
    return sorted(k for k, v in vars(module).items() if _is_kernel_like(v)
                  and getattr(v, "__module__", module.__name__) == module.__name__)


def _is_kernel_like(value) -> bool:
    from gpukit.kernels.arrays import is_array_function
    return is_array_function(value) or isinstance(value, Kernel) or (
        isinstance(value, type) and issubclass(value, Kernel)
        and value not in (Kernel, SimpleKernel))


def validate(kernel: Kernel, where: str) -> None:
    """What can be checked before running: names, parameters, outputs, implementations."""
    from gpukit.kernels.base import Param
    if not isinstance(kernel.name, str) or not kernel.name:
        raise UsageError(f"{where}: the kernel's name must be a non-empty string")
    label = f"kernel {kernel.name} ({where})"
    if not kernel.outputs or not all(isinstance(o, str) for o in kernel.outputs):
        raise UsageError(f"{label}: `outputs` must name at least one output")
    if not all(isinstance(p, Param) for p in kernel.params):
        raise UsageError(f"{label}: `params` must be gpukit.kernels.Param objects")
    try:
        impls = kernel.host_impls()
        defaults = [kernel.resolve_params(p) for p in kernel.default_param_sets]
        dtypes = kernel.output_dtypes(defaults[0] if defaults else kernel.resolve_params())
        if hasattr(kernel, "validate"):
            kernel.validate()
    except UsageError as exc:
        raise UsageError(f"{label}: {exc}") from None
    except Interrupted:
        raise
    except USER_FAULTS as exc:
        raise UsageError(f"{label}: {_one_line(exc)}") from None
    unknown = sorted(set(impls) - set(HOST_IMPLS))
    if unknown:
        raise UsageError(f"{label}: host_impls() has {', '.join(unknown)}; implementations are "
                         f"named {', '.join(HOST_IMPLS)}")
    not_callable = sorted(name for name, f in impls.items() if not callable(f))
    if not_callable:
        raise UsageError(f"{label}: implementation {not_callable[0]} is not callable")
    if not impls and kernel.cuda_file is None:
        raise UsageError(f"{label} has no implementation: define python, numpy or a CUDA source")
    if set(dtypes) != set(kernel.outputs):
        raise UsageError(f"{label}: output_dtypes() gives {sorted(dtypes)} but outputs are "
                         f"{sorted(kernel.outputs)}")
    _try_small_problem(kernel, label, defaults[0] if defaults else kernel.resolve_params())


def _try_small_problem(kernel: Kernel, label: str, params: Mapping[str, int]) -> None:
    """Make a 4-row problem and its reference, and check the CUDA arguments against it, so that
    a mistake there is one line now rather than a traceback or a failed case per size later."""
    from gpukit.errors import KernelError
    from gpukit.kernels.base import check_cuda_args
    try:
        inputs = kernel.make_inputs(4, params)
    except Interrupted:
        raise
    except USER_FAULTS as exc:
        raise UsageError(f"{label}: making a 4-row problem failed: {_one_line(exc)}") from None
    for step, call in (("reference", lambda: kernel.reference(inputs, params)),
                       ("work", lambda: kernel.work(4, params))):
        try:
            result = call()
        except Interrupted:
            raise
        except USER_FAULTS as exc:
            raise UsageError(f"{label}: {step}() of a 4-row problem raised "
                             f"{_one_line(exc)}") from None
        if step == "reference":
            missing = [o for o in kernel.outputs if o not in (result or {})]
            if missing:
                raise UsageError(f"{label}: reference() gives no {missing[0]!r}; it returns "
                                 f"every output by name")
            for name in kernel.outputs:
                if not np.all(np.isfinite(np.asarray(result[name], dtype=np.float64))):
                    raise UsageError(f"{label}: reference() of a 4-row problem gives NaN or inf "
                                     f"in {name!r}; outputs are checked against it, so it must "
                                     f"be finite")
    if kernel.cuda_file is not None:
        try:
            check_cuda_args(kernel, kernel.cuda_launch(4, params), inputs, params)
        except (KernelError, NotImplementedError) as exc:
            raise UsageError(f"{label}: {str(exc).removeprefix(f'kernel {kernel.name}: ')}") \
                from None
