"""Array-namespace kernels: a plain function written against `xp`, run on every backend.

    def softplus(x, xp=numpy):
        return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0)

`--kernel file.py:softplus` wraps such a function in an `ArrayKernel`. Its positional parameters
without a default are the inputs, arrays of n rows; the keyword `xp` is the array namespace
(NumPy on the host backends, CuPy on the GPU; both follow the Python array API standard, so the
same code runs on either); it returns one array, a tuple or a dict of arrays, each one value per
row (shape (n,)). Defaults, each of which `array_kernel(...)` overrides:

- inputs: standard-normal float32 arrays of n rows, one per input;
- reference: the same function run by NumPy on the inputs cast to float64 (complex128 for
  complex ones; integer and bool inputs as they are);
- check: for each output, max|out - ref| / max|ref|, the error against the largest reference
  value so that an element near zero is held to the size of the values around it, not to its
  own; the tolerance is TOLERANCE_EPS times the output dtype's machine epsilon (3.1e-5 for
  float32, 5.7e-14 for float64); integer and bool outputs must match exactly;
- row-wise or not: found by running the function on TRIAL_ROWS rows whole and as two pieces; a
  function whose pieces give other rows than the whole (a mean, a sort, a cumulative sum) must
  see whole arrays, and threads, processes and MPI ranks then run it as one piece;
- FLOPs per row: unknown, so the model rates the function by its own runs.

What the function cannot do is found at load, on a small problem, with one line naming the
function, the namespace and the reason: a call that raises, an output that is not an array of
one value per row, a reference that is not finite.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gpukit.errors import KernelError, UsageError
from gpukit.kernels.base import Check, Inputs, Kernel, Param, Work
from gpukit.kernels.checks import (failed_check, nonfinite_problem, normwise_error,
                                   output_problem, reference_problem)

# The attribute array_kernel(...) sets on the function it decorates.
OPTIONS_ATTR = "__gpukit_array_kernel__"

# Rows of the load-time trial: enough for the row-wise test's two uneven pieces to be real
# arrays (and for NumPy to take its vector loops), few enough to cost nothing.
TRIAL_ROWS = 64
TRIAL_SPLIT = 23

# The default tolerance in machine epsilons of the output dtype: a few roundings in each of a
# handful of operations, each amplified a little, stays far below it; a wrong formula or a
# row mixed up with another is far above it.
TOLERANCE_EPS = 256

NAMESPACE_KEYWORD = "xp"

# What the host backends call the function's NumPy run and its pure-Python variant; the GPU
# backend calls its CuPy run XP_IMPL.
NUMPY_IMPL, PYTHON_IMPL, XP_IMPL = "numpy", "python", "xp"


@dataclasses.dataclass(frozen=True)
class ArrayOptions:
    """What `array_kernel(...)` says about a function; None leaves the default."""

    inputs: Callable | None = None
    dtype: Any = None
    params: tuple[Param, ...] = ()
    param_sets: tuple[dict[str, int], ...] = ()
    reference: Callable | None = None
    tolerance: float | None = None
    flops_per_row: float | Callable | None = None
    rowwise: bool | None = None
    python: Callable | None = None
    name: str | None = None
    summary: str | None = None


def array_kernel(func: Callable | None = None, *, inputs: Callable | None = None,
                 dtype: Any = None, params: Mapping[str, int] | tuple = (),
                 param_sets: tuple[dict[str, int], ...] = (),
                 reference: Callable | None = None, tolerance: float | None = None,
                 flops_per_row: float | Callable | None = None, rowwise: bool | None = None,
                 python: Callable | None = None, name: str | None = None,
                 summary: str | None = None):
    """Say what gpukit cannot infer about an array-namespace function; returns it unchanged.

    inputs: `inputs(n, rng, **params)` -> a dict by parameter name, a tuple in parameter order,
        or one array: the inputs of an n-row problem (rng: a seeded numpy.random.Generator).
    dtype: the rows' dtype of the default standard-normal inputs (float32 unless set); with
        `inputs`, the dtype every input must have.
    params: integer knobs passed to the function as keywords: {name: default} or
        gpukit.kernels.Param objects. param_sets: the sets `compare` runs when none is named.
    reference: `reference(*inputs, **params)` -> float64 outputs, shaped as the function's.
    tolerance: the largest max|out - ref| / max|ref| an output may have.
    flops_per_row: a number, or `flops_per_row(params)`; unknown unless given.
    rowwise: True if the rows are independent (threads, processes and ranks may cut the
        arrays into pieces of rows), False if the function must see whole arrays; inferred
        unless given.
    python: a pure-Python variant, `python(*inputs, **params)` -> lists or arrays, shaped as
        the function's outputs.
    """
    if isinstance(params, Mapping):
        params = tuple(Param(k, int(v), "a keyword of the function", minimum=min(0, int(v)))
                       for k, v in params.items())
    if not all(isinstance(p, Param) for p in params):
        raise UsageError("array_kernel(params=...) takes {name: default} or gpukit.kernels.Param "
                         "objects")
    if tolerance is not None and not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        raise UsageError(f"array_kernel(tolerance=...) must be a number >= 0, got {tolerance!r}")
    for label, value in (("inputs", inputs), ("reference", reference), ("python", python)):
        if value is not None and not callable(value):
            raise UsageError(f"array_kernel({label}=...) must be a function")
    options = ArrayOptions(inputs, dtype, tuple(params), tuple(dict(s) for s in param_sets),
                           reference, tolerance, flops_per_row, rowwise, python, name, summary)

    def mark(f: Callable) -> Callable:
        setattr(f, OPTIONS_ATTR, options)
        return f

    return mark(func) if func is not None else mark


def is_array_function(obj) -> bool:
    """A plain function that takes the keyword `xp` (what `--kernel file.py:func` can name)."""
    if not inspect.isfunction(obj):
        return False
    try:
        return NAMESPACE_KEYWORD in inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False


# -- the parts of a function -------------------------------------------------------------------


def _input_names(func: Callable, label: str) -> tuple[str, ...]:
    sig = inspect.signature(func)
    xp = sig.parameters.get(NAMESPACE_KEYWORD)
    if xp is None or xp.kind not in (xp.POSITIONAL_OR_KEYWORD, xp.KEYWORD_ONLY):
        raise UsageError(f"{label} must take the array namespace as the keyword `xp`, as in "
                         f"def {func.__name__}(x, xp=numpy)")
    names = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            raise UsageError(f"{label} takes *{p.name}: name each input array as a parameter")
        if p.name != NAMESPACE_KEYWORD and p.default is p.empty \
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.default is p.empty and p.kind is p.KEYWORD_ONLY:
            raise UsageError(f"{label}: keyword {p.name!r} has no default; inputs are its "
                             f"positional parameters, other keywords need a default or "
                             f"array_kernel(params=...)")
    if not names:
        raise UsageError(f"{label} has no input: its positional parameters (before `xp`, "
                         f"without a default) are the arrays of n rows")
    return tuple(names)


def namespace_names(func: Callable) -> tuple[str, ...]:
    """The names the function looks up in `xp` (xp.exp, xp.linalg...), from its source; empty
    where the source is not to be had. Used to say beforehand which namespace lacks one."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return ()
    found = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             and isinstance(node.value, ast.Name) and node.value.id == NAMESPACE_KEYWORD}
    return tuple(sorted(found))


def _numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "biufc"


def default_input(rng: np.random.Generator, n: int, dtype: np.dtype) -> np.ndarray:
    """n rows of `dtype`: standard normal for floats (real and imaginary parts for complex),
    integers in [-1000, 1000] (from 0 for unsigned), random bools."""
    if dtype.kind == "f":
        return rng.standard_normal(n).astype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0 if dtype.kind == "u" else -1000, 1001, size=n).astype(dtype)
    return rng.integers(0, 2, size=n).astype(bool)


def to_float64(arr: np.ndarray) -> np.ndarray:
    """The reference's copy of an input: float64 for floats, complex128 for complex."""
    if arr.dtype.kind == "f":
        return arr.astype(np.float64)
    if arr.dtype.kind == "c":
        return arr.astype(np.complex128)
    return arr


def default_tolerance(dtype: np.dtype) -> float:
    return TOLERANCE_EPS * float(np.finfo(dtype).eps) if dtype.kind in "fc" else 0.0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class ArrayKernel(Kernel):
    """A kernel made of an array-namespace function (module docstring)."""

    multiply_add_work = False
    array_function = True

    def __init__(self, func: Callable, where: str = ""):
        options = getattr(func, OPTIONS_ATTR, None) or ArrayOptions()
        self.func, self.options = func, options
        self.name = options.name or func.__name__
        self.where = where or func.__qualname__
        doc = (inspect.getdoc(func) or "").strip().splitlines()
        self.summary = options.summary or (doc[0] if doc else "")
        self.params = options.params
        self.default_param_sets = options.param_sets or ({},)
        self.label = f"function {self.name} ({self.where})"
        self.input_names = _input_names(func, self.label)
        keywords = inspect.signature(func).parameters
        for p in self.params:
            if p.name not in keywords or p.name in self.input_names:
                raise UsageError(f"{self.label}: parameter {p.name!r} is not a keyword of "
                                 f"the function")
        self.dtype = None
        if options.dtype is not None:
            try:
                self.dtype = np.dtype(options.dtype)
            except TypeError as exc:
                raise UsageError(f"{self.label}: dtype {options.dtype!r}: {exc}") from None
            if not _numeric(self.dtype):
                raise UsageError(f"{self.label}: dtype {self.dtype} is not a numeric dtype "
                                 f"(bool, integer, float or complex)")
        self.rowwise_how = ""
        self._row_bytes: dict[tuple, int] = {}  # input bytes per row, by parameters
        self._infer()

    # -- calling the function ----------------------------------------------------------------

    def call(self, xp, arrays: Mapping[str, Any], params: Mapping[str, int]) -> dict[str, Any]:
        """The function's outputs by name, under namespace `xp`; KernelError naming the function,
        the namespace and the reason if it raises or returns something else than before."""
        space = getattr(xp, "__name__", str(xp))
        try:
            result = self.func(*(arrays[name] for name in self.input_names), xp=xp, **params)
        except Exception as exc:
            raise KernelError(f"{self.name} under {space} raised {_one_line(exc)}") from exc
        return self._named(result, f"{self.name} under {space}")

    def _named(self, result, who: str) -> dict[str, Any]:
        if isinstance(result, Mapping):
            named = dict(result)
            if not all(isinstance(k, str) for k in named):
                raise KernelError(f"{who} returned a dict whose keys are not all strings")
        elif isinstance(result, tuple):
            named = dict(zip(self._tuple_names(len(result)), result))
        else:
            named = {self._single_name(): result}
        outputs = getattr(self, "outputs", ())
        if outputs and set(named) != set(outputs):
            raise KernelError(f"{who} returned {', '.join(named) or 'nothing'}; on its trial it "
                              f"returned {', '.join(outputs)}")
        return named

    def _single_name(self) -> str:
        return self._free("out")

    def _tuple_names(self, count: int) -> list[str]:
        return [self._free(f"out{i}") for i in range(count)]

    def _free(self, name: str) -> str:
        # Inputs and outputs share one name space in the backends (shared memory, device buffers).
        while name in self.input_names:
            name += "_"
        return name

    # -- inference ---------------------------------------------------------------------------

    def _infer(self) -> None:
        """Outputs, their dtypes, the tolerance and row-wise or not, from a trial problem."""
        label = self.label
        params = self.resolve_params(self.default_param_sets[0])
        try:
            inputs = self.make_inputs(TRIAL_ROWS, params)
        except UsageError as exc:
            raise UsageError(f"{label}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 (whatever the user's input maker raises)
            raise UsageError(f"{label}: making a {TRIAL_ROWS}-row problem failed: "
                             f"{_one_line(exc)}") from None
        try:
            with np.errstate(all="ignore"):  # NaN from a warning is reported below, in one line
                result = self.call(np, inputs.split, params)
        except KernelError as exc:
            raise UsageError(f"{label}: {exc}") from None
        made = "inputs()" if self.options.inputs is not None else "standard-normal inputs"
        for out_name, value in result.items():
            problem = self._value_problem(value, TRIAL_ROWS)
            if problem:
                raise UsageError(f"{label}: under numpy, output {out_name!r} {problem}")
            if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
                bad = int(np.count_nonzero(~np.isfinite(value)))
                raise UsageError(f"{label}: under numpy on {TRIAL_ROWS} rows of {made}, "
                                 f"{bad} values of output {out_name!r} are NaN or inf; give "
                                 f"array_kernel(inputs=...) on which it is finite")
        if not result:
            raise UsageError(f"{label} returned no output")
        clash = sorted(set(result) & set(self.input_names))
        if clash:
            # Inputs and outputs share one name space in the backends (shared memory, devices).
            raise UsageError(f"{label}: output {clash[0]!r} has an input's name; name it "
                             f"otherwise in the dict it returns")
        self.outputs = tuple(result)
        self._dtypes = {k: np.dtype(v.dtype) for k, v in result.items()}
        self.tolerances = {k: (float(self.options.tolerance) if self.options.tolerance is not None
                               else default_tolerance(dt)) for k, dt in self._dtypes.items()}
        self.rowwise = self._rowwise(inputs, params, result)

    def _value_problem(self, value, rows: int, xp=np) -> str | None:
        if not isinstance(value, xp.ndarray):
            if isinstance(value, np.generic):
                return (f"is one {value.dtype} value, not {rows} rows (a reduction over whole "
                        f"arrays? every output has one value per row)")
            space = getattr(xp, "__name__", "the namespace's")
            host = (" (does it call numpy rather than xp?)"
                    if isinstance(value, np.ndarray) and xp is not np else "")
            return f"is a {type(value).__name__}, not a {space} array{host}"
        if value.shape != (rows,):
            return (f"has shape {value.shape}, expected ({rows},): every output has one value "
                    f"per row of the inputs")
        if not _numeric(value.dtype):
            return f"is {value.dtype}, not a numeric dtype"
        return None

    def _rowwise(self, inputs: Inputs, params, whole: Mapping[str, np.ndarray]) -> bool:
        declared = self.options.rowwise
        if declared is False:
            self.rowwise_how = "declared (rowwise=False)"
            return False
        try:
            with np.errstate(all="ignore"):
                pieces = [self.call(np, {k: a[lo:hi] for k, a in inputs.split.items()}, params)
                          for lo, hi in ((0, TRIAL_SPLIT), (TRIAL_SPLIT, TRIAL_ROWS))]
        except KernelError as exc:
            if declared:
                raise UsageError(f"{self.label} is declared rowwise=True, but on "
                                 f"{TRIAL_SPLIT} rows {exc}") from None
            self.rowwise_how = (f"inferred: on {TRIAL_SPLIT} of {TRIAL_ROWS} rows {exc}, so it "
                                f"sees whole arrays")
            return False
        for name in self.outputs:
            if any(self._value_problem(p[name], hi - lo)
                   for p, (lo, hi) in zip(pieces, ((0, TRIAL_SPLIT), (TRIAL_SPLIT, TRIAL_ROWS)))):
                joined = None
            else:
                joined = np.concatenate([p[name] for p in pieces])
            error = (float("inf") if joined is None
                     else normwise_error(joined, to_float64(whole[name]))[0])
            if error > self.tolerances[name]:
                if declared:
                    raise UsageError(f"{self.label} is declared rowwise=True, but rows "
                                     f"{TRIAL_SPLIT} and {TRIAL_ROWS - TRIAL_SPLIT} apart give "
                                     f"other {name!r} than {TRIAL_ROWS} together: set "
                                     f"rowwise=False")
                self.rowwise_how = (f"inferred: {TRIAL_SPLIT} and {TRIAL_ROWS - TRIAL_SPLIT} "
                                    f"rows apart give other {name!r} than {TRIAL_ROWS} rows "
                                    f"together, so it sees whole arrays")
                return False
        self.rowwise_how = ("declared (rowwise=True)" if declared else
                            f"inferred: {TRIAL_SPLIT} and {TRIAL_ROWS - TRIAL_SPLIT} rows apart "
                            f"give the same rows as {TRIAL_ROWS} together")
        return True

    # -- the Kernel interface ----------------------------------------------------------------

    def make_inputs(self, n, params, seed=0):
        rng = np.random.default_rng([seed, n])
        maker = self.options.inputs
        if maker is None:
            dtype = self.dtype if self.dtype is not None else np.dtype(np.float32)
            return Inputs(split={k: default_input(rng, n, dtype) for k in self.input_names},
                          whole={})
        made = maker(n, rng, **params)
        if isinstance(made, Mapping):
            arrays = dict(made)
        elif isinstance(made, (tuple, list)):
            arrays = dict(zip(self.input_names, made))
            if len(made) != len(self.input_names):
                raise UsageError(f"inputs() gave {len(made)} arrays for the "
                                 f"{len(self.input_names)} inputs {', '.join(self.input_names)}")
        else:
            arrays = {self.input_names[0]: made}
        if set(arrays) != set(self.input_names):
            raise UsageError(f"inputs() gave {', '.join(arrays) or 'nothing'}; the function "
                             f"takes {', '.join(self.input_names)}")
        for name, arr in arrays.items():
            if not isinstance(arr, np.ndarray) or arr.ndim < 1 or arr.shape[0] != n:
                shape = getattr(arr, "shape", type(arr).__name__)
                raise UsageError(f"input {name!r} must be a NumPy array of {n} rows, got {shape}")
            if not _numeric(arr.dtype):
                raise UsageError(f"input {name!r} is {arr.dtype}, not a numeric dtype (bool, "
                                 f"integer, float or complex)")
            if self.dtype is not None and arr.dtype != self.dtype:
                raise UsageError(f"input {name!r} is {arr.dtype}, but dtype={self.dtype} was "
                                 f"declared")
        return Inputs(split={k: arrays[k] for k in self.input_names}, whole={})

    def output_dtypes(self, params):
        return dict(self._dtypes)

    def reference(self, inputs, params):
        given = self.options.reference
        if given is None:
            result = self.call(np, {k: to_float64(a) for k, a in inputs.split.items()}, params)
        else:
            result = self._named(given(*(inputs.split[k] for k in self.input_names), **params),
                                 f"{self.name}'s reference")
        return {k: to_float64(np.asarray(v)) if np.asarray(v).dtype.kind in "fc"
                else np.asarray(v, dtype=np.float64) for k, v in result.items()}

    def check(self, out, ref, inputs, params) -> Check:
        measure = "max |out - ref| / max |ref|, per output"
        n = next(iter(inputs.split.values())).shape[0]
        problem = output_problem(out, self._dtypes, n) or nonfinite_problem(out)
        worst_tol = min(self.tolerances.values())
        if problem:
            return failed_check(worst_tol, measure, problem)
        worst = None  # (error / tolerance, error, tolerance, detail)
        for name in self.outputs:
            r = ref[name]
            problem = reference_problem(name, r)
            if problem:
                return failed_check(self.tolerances[name], measure, problem)
            error, at = normwise_error(out[name], r)
            tol = self.tolerances[name]
            ratio = error / tol if tol > 0 else (0.0 if error == 0 else float("inf"))
            if worst is None or ratio > worst[0]:
                detail = (f"worst {name}[{at}]: got {out[name][at].item()!r}, "
                          f"reference {r[at].item()!r}") if r.size else ""
                worst = (ratio, error, tol, detail)
        _ratio, error, tol, detail = worst
        ok = error <= tol
        return Check(ok, error, tol, measure, "" if ok else detail)

    def work(self, n, params) -> Work:
        per_row = self.options.flops_per_row or 0.0
        if callable(per_row):
            per_row = per_row(params)
        key = tuple(sorted(params.items()))
        if key not in self._row_bytes:
            self._row_bytes[key] = sum(a.nbytes for a in self.make_inputs(1, params).split.values())
        out_bytes = sum(dt.itemsize for dt in self._dtypes.values())
        return Work(flops=float(per_row) * n, bytes_in=self._row_bytes[key] * n,
                    bytes_out=out_bytes * n)

    def host_impls(self):
        impls = {NUMPY_IMPL: self._run_numpy}
        if self.options.python is not None:
            impls[PYTHON_IMPL] = self._run_python
        return impls

    def _run_numpy(self, split, whole, out, params) -> None:
        rows = next(iter(split.values())).shape[0]
        for name, value in self.call(np, split, params).items():
            self._store(out[name], value, rows, f"{self.name} under numpy, output {name!r}")

    def _run_python(self, split, whole, out, params) -> None:
        rows = next(iter(split.values())).shape[0]
        try:
            result = self.options.python(*(split[k] for k in self.input_names), **params)
        except Exception as exc:
            raise KernelError(f"{self.name}'s python variant raised {_one_line(exc)}") from exc
        for name, value in self._named(result, f"{self.name}'s python variant").items():
            if len(value) != rows:
                raise KernelError(f"{self.name}'s python variant, output {name!r}: {len(value)} "
                                  f"rows, expected {rows}")
            out[name][:] = value

    def _store(self, dst: np.ndarray, value, rows: int, who: str) -> None:
        """Copy one output into gpukit's rows: the copy is the function's result reaching the
        caller's memory, as it would in the caller's own program, and is timed with it."""
        problem = self._value_problem(value, rows)
        if problem:
            raise KernelError(f"{who} {problem}")
        if value.dtype != dst.dtype:
            raise KernelError(f"{who} is {value.dtype}, but {dst.dtype} on its trial run")
        np.copyto(dst, value)

    def device_outputs(self, xp, arrays: Mapping[str, Any], params) -> dict[str, Any]:
        """The function's outputs under a GPU library's namespace `xp`, on its device arrays:
        checked as on the trial (arrays of that namespace, one value per row, the trial's
        dtypes) and C-contiguous, so that each can be copied out as it lies. KernelError, in
        one line naming the function and the namespace, for anything else."""
        rows = next(iter(arrays.values())).shape[0]
        space = getattr(xp, "__name__", str(xp))
        out = {}
        for name, value in self.call(xp, arrays, params).items():
            who = f"{self.name} under {space}, output {name!r}"
            problem = self._value_problem(value, rows, xp)
            if problem:
                raise KernelError(f"{who} {problem}")
            if value.dtype != self._dtypes[name]:
                raise KernelError(f"{who} is {value.dtype}, but {self._dtypes[name]} under numpy")
            out[name] = xp.ascontiguousarray(value)
        return out

    def namespace_lacks(self, xp) -> str | None:
        """Why namespace `xp` cannot run the function, known before calling it: a name the
        function's source looks up in `xp` that the namespace lacks. None if none is."""
        space = getattr(xp, "__name__", str(xp))
        missing = [name for name in namespace_names(self.func) if not hasattr(xp, name)]
        if missing:
            return (f"{self.name} under {space}: the function uses xp.{missing[0]}, which "
                    f"{space} lacks")
        return None

    def describe(self) -> dict:
        data = super().describe()
        data["implementations"] = sorted(self.host_impls()) + [XP_IMPL]
        data["array_function"] = {
            "inputs": {k: self._input_text(k) for k in self.input_names},
            "outputs": {k: str(dt) for k, dt in self._dtypes.items()},
            "rowwise": self.rowwise,
            "rowwise_how": self.rowwise_how,
            "tolerances": dict(self.tolerances),
            "tolerance_how": ("given (tolerance=...)" if self.options.tolerance is not None
                              else f"{TOLERANCE_EPS} x the output dtype's machine epsilon"),
            "measure": "max |out - ref| / max |ref|, per output",
            "reference": ("given (reference=...)" if self.options.reference is not None
                          else "the function under numpy on float64 inputs"),
            "flops_per_row": (None if self.options.flops_per_row is None
                              else "a function of the parameters"
                              if callable(self.options.flops_per_row)
                              else float(self.options.flops_per_row)),
            "namespace_names": list(namespace_names(self.func)),
        }
        return data

    def _input_text(self, name: str) -> str:
        arr = self.make_inputs(1, self.resolve_params(self.default_param_sets[0])).split[name]
        rows = "n" if arr.ndim == 1 else f"n x {' x '.join(map(str, arr.shape[1:]))}"
        made = "inputs(...)" if self.options.inputs is not None else "standard normal"
        return f"{arr.dtype}, {rows} ({made})"



__all__ = ["ArrayKernel", "ArrayOptions", "array_kernel", "is_array_function"]
