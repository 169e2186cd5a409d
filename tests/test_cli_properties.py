"""Generated argument lists for `compare`, `report` and `diff`: whatever a user types, gpukit
answers with its output or one `error:` line and a known exit status, never a traceback.

Nothing is measured: every `compare` runs with --dry-run, which checks the arguments, probes
the backends and plans the sweep, then says what would run. Output paths stay inside a folder
of the test; kernels come from a fixed list (a generated module name could import anything).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

from conftest import ROOT
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gpukit import cli

SMALL = ROOT / "tests" / "data" / "cpu-small.json"
WORK = Path(tempfile.mkdtemp(prefix="gpukit-properties-"))


def _files() -> dict[str, str]:
    """Results files, good and bad, and places to write to, made once."""
    data = json.loads(SMALL.read_text())
    tiny = WORK / "tiny.json"
    tiny.write_text(json.dumps({**data, "cases": data["cases"][:8]}))
    (WORK / "garbage.json").write_bytes(bytes(range(256)))
    (WORK / "list.json").write_text("[]")
    (WORK / "a-file").write_text("not a folder\n")
    (WORK / "ceilings.json").write_text(json.dumps({"format": "gpukit-ceilings", "version": 1,
                                                    "figures": {"host_copy_1t_gbps": 10.0}}))
    return {"tiny": str(tiny), "garbage": str(WORK / "garbage.json"),
            "list": str(WORK / "list.json"), "missing": str(WORK / "nope.json"),
            "folder": str(WORK), "under a file": str(WORK / "a-file" / "x"),
            "ceilings": str(WORK / "ceilings.json")}


FILES = _files()

# Values users type, right and wrong, and text nobody would.
NUMBERS = st.one_of(
    st.sampled_from(["0", "1", "-1", "2", "1e3", "1.5", "nan", "inf", "-inf", "1e400", "2^10",
                     "2^-1", "64k", "3m", "0x10", " 4 ", "", "1_000", "9" * 30]),
    st.integers(-(2 ** 70), 2 ** 70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr))
LISTS = st.one_of(
    st.sampled_from(["1024", "1024,2048", "2^10..2^12", "2^10..2^12:4", "2^12..2^10", "1..4:1",
                     ",", ",,1", "1,,2", "a,b", "1..", "..4", "2^10..2^62", "1,2,4,8",
                     "serial", "serial,threads", "threads,nope", "mpi", "python,numpy", "cuda",
                     "serial,,processes", " serial "]),
    st.lists(NUMBERS, max_size=4).map(",".join),
    st.text(max_size=16))
TEXT = st.one_of(LISTS, NUMBERS, st.text(max_size=24))
KERNELS = st.sampled_from(["polyval", "nbody", "mandelbrot", "blackscholes", "nope", "",
                           ":", "a:b:c", "examples/my_kernel.py:Saxpy",
                           "examples/my_kernel.py:Nope", "examples/my_kernel.py",
                           "tests/data/fault_kernel.py:Faulty", "/nonexistent.py:K",
                           FILES["garbage"] + ":K"])
OUTPUTS = st.sampled_from([str(WORK / "out.json"), str(WORK / "sub" / "out.csv")] * 3 + [
    FILES["folder"], FILES["under a file"], ""])


def _pairs(options: dict) -> st.SearchStrategy:
    """A list of (option, value) pairs, each value from its option's strategy, in any order."""
    return st.lists(st.sampled_from(sorted(options)).flatmap(
        lambda name: st.tuples(st.just(name), options[name])), max_size=7)


COMPARE = {
    "--kernel": KERNELS, "--param": st.one_of(st.sampled_from(["k=2", "k=2,64", "k=", "=2",
                                                               "k=0", "k=x", "p=1,2", "nope=1",
                                                               "k=2^70"]), TEXT),
    "--backends": LISTS, "--impls": LISTS, "--sizes": LISTS, "--workers": LISTS,
    "--budget-s": NUMBERS, "--min-reps": NUMBERS, "--max-reps": NUMBERS,
    "--run-limit-s": NUMBERS, "--case-timeout-s": NUMBERS, "--mpi-timeout-s": NUMBERS,
    "--chunks-per-worker": NUMBERS, "--seed": NUMBERS,
    "--start-method": st.sampled_from(["fork", "spawn", "forkserver", "thread", ""]),
    "--mpi-hostfile": st.sampled_from([FILES["missing"], FILES["tiny"], ""]),
    "--output": OUTPUTS, "--csv": OUTPUTS,
}
COMPARE_FLAGS = ["--quick", "--require-gpu", "--no-limits", "--no-progress", "--default-malloc"]

# A good file most of the time, so that most examples get past reading it.
RESULTS = st.sampled_from([FILES["tiny"]] * 6 + [str(SMALL)] + [
    FILES[k] for k in ("garbage", "list", "missing", "folder")] + [""])
REPORT = {
    "--ceilings": st.sampled_from([FILES["ceilings"]] * 4 + [
        FILES["garbage"], FILES["list"], FILES["missing"], FILES["folder"], ""]),
    "--csv": OUTPUTS, "--markdown": OUTPUTS,
    # Only paths refused before rendering: drawing the figures would take a second each.
    "--html": st.sampled_from([FILES["folder"], FILES["under a file"], ""]),
    "--plots": st.sampled_from([FILES["tiny"], FILES["under a file"], ""]),
}
DIFF = {"--fail-slower": NUMBERS, "--min-change": st.one_of(NUMBERS, NUMBERS.map("{}%".format))}


def _argv(command, pairs, flags, positional) -> list[str]:
    argv = [command, *positional]
    for name, value in pairs:
        argv += [f"{name}={value}"] if value.startswith("-") else [name, value]
    return argv + list(flags)


def _run(argv: list[str], statuses: set[int]) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse: --help, or a malformed command line
            code = exc.code
    text = err.getvalue()
    event(f"exit {code}")  # --hypothesis-show-statistics shows how the examples ended
    assert code in statuses, (argv, code, text)
    assert "Traceback" not in text + out.getvalue(), (argv, text)
    assert "internal error" not in text, (argv, text)
    assert len([line for line in text.splitlines() if line.startswith("error:")]) <= 1, \
        (argv, text)


# The same examples on every run (a failure in CI is one to reproduce), and no example database
# left in the checkout.
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True, database=None)


@settings(SETTINGS, max_examples=250)
@given(_pairs(COMPARE), st.lists(st.sampled_from(COMPARE_FLAGS), max_size=3, unique=True))
def test_compare_arguments_never_give_a_traceback(pairs, flags):
    _run(_argv("compare", pairs, ["--dry-run", *flags], []), {0, 2, 3})


@settings(SETTINGS, max_examples=100)
@given(RESULTS, _pairs(REPORT), st.lists(st.sampled_from(["--quiet", "-q"]), max_size=1))
def test_report_arguments_never_give_a_traceback(results, pairs, flags):
    _run(_argv("report", pairs, flags, [results]), {0, 2})


@settings(SETTINGS, max_examples=100)
@given(RESULTS, RESULTS, _pairs(DIFF), st.lists(st.sampled_from(["--all"]), max_size=1))
def test_diff_arguments_never_give_a_traceback(a, b, pairs, flags):
    _run(_argv("diff", pairs, flags, [a, b]), {0, 1, 2})
