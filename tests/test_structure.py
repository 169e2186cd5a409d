"""How the code is layered: what reads results never loads what ran them, no module outside
gpukit/backends branches on a backend's name, and the records write back what they read."""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpukit import analysis, backends, records
from gpukit.records import CaseRecord, RunRecord

ROOT = Path(__file__).resolve().parent.parent
GPUKIT = ROOT / "gpukit"
# Every results file the repository holds: old ones must keep loading and analysing.
# Other JSON sits beside them (benchmark outputs of their own format): told apart by its tag.
RESULTS_FILES = sorted(
    path for path in [*ROOT.glob("bench/results/*.json"), *ROOT.glob("tests/data/*.json"),
                      *ROOT.glob("docs/**/*.json")]
    if json.loads(path.read_text()).get("format") == "gpukit-results")


# -- import rules --------------------------------------------------------------------------------


def backend_modules_after(code: str, tmp_path: Path | None = None) -> list[str]:
    """The gpukit.backends modules loaded once `code` has run in a fresh interpreter."""
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(m for m in sys.modules " \
                   "if m == 'gpukit.backends' or m.startswith('gpukit.backends.'))))\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path or ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", [
    "gpukit.records", "gpukit.units", "gpukit.results", "gpukit.timing", "gpukit.analysis.model",
    "gpukit.analysis", "gpukit.analysis.findings", "gpukit.analysis.answer",
    "gpukit.analysis.case_limits", "gpukit.analysis.rundiff", "gpukit.reporting",
    "gpukit.reporting.tables", "gpukit.reporting.plots", "gpukit.reporting.page",
    "gpukit.commands.report",
    "gpukit.commands.diff", "gpukit.kernels", "gpukit.kernels.polyval", "gpukit.kernels.nbody",
    "gpukit.kernels.mandelbrot", "gpukit.kernels.blackscholes", "gpukit.kernels.checks",
    "gpukit.kernels.user"])
def test_reading_results_and_the_kernels_load_no_backend(module):
    assert backend_modules_after(f"import {module}") == []


def test_the_probe_sees_a_backend_module_when_one_is_loaded():
    # The rule above would pass vacuously if the probe could not see one.
    assert "gpukit.backends.threads" in backend_modules_after("from gpukit import runner, "
                                                              "backends; backends.get('threads')")


def test_a_whole_report_renders_without_loading_a_backend(tmp_path):
    # Everything `report` renders (tables, findings, CSV, Markdown, figures, the HTML page), run
    # in one interpreter: the rendering imports lazily, so importing its modules is not enough.
    baseline = ROOT / "bench/results/compare-polyval-dev-2core-epyc.json"
    code = textwrap.dedent(f"""
        import contextlib, io
        from gpukit import cli
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(["report", {str(baseline)!r}, "--html", "p.html", "--plots", "figs",
                           "--csv", "c.csv", "--markdown", "m.md"])
        assert rc == 0, rc
    """)
    assert backend_modules_after(code, tmp_path) == []
    assert (tmp_path / "p.html").stat().st_size > 0 and (tmp_path / "m.md").stat().st_size > 0


@pytest.mark.parametrize("leaf", ["records", "units"])
def test_the_leaf_modules_import_nothing_of_gpukit(leaf):
    # Everything else may import them, so they must not import it back.
    tree = ast.parse((GPUKIT / f"{leaf}.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
        [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in imported if m and m.split(".")[0] == "gpukit"] == []


# -- no backend names outside gpukit/backends -------------------------------------------------

# String literals that name a built-in backend for another reason: package names in the
# library versions a machine reports.
NOT_BACKENDS = {("gpukit/machine.py", "cupy"), ("gpukit/machine.py", "pycuda"),
                ("gpukit/limits/gpu.py", "cupy")}
# records.py's table for results written before traits were recorded.
LEGACY_TABLES = {"LEGACY_TRAITS", "_LEGACY_OTHER_GPU"}


def _names_backend(text: str) -> bool:
    """A backend's name, or a variant label that starts with one ('threads/numpy')."""
    return any(text == name or text.startswith(name + "/") for name in backends.NAMES)


def backend_name_uses(source: str, path: str = "<code>") -> list[str]:
    """Where `source` branches on a backend's name: compares one to a string, tests membership
    in literals, looks one up in a table (subscript, .get, a dict keyed by names), or builds or
    matches a variant label from a literal backend name."""
    tree = ast.parse(source)
    skip: set[int] = set()
    if path == "gpukit/records.py":
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id in LEGACY_TABLES for t in node.targets):
                skip |= {id(n) for n in ast.walk(node)}
    found = []

    def hit(node, what):
        text = node.value if isinstance(node, ast.Constant) else None
        if id(node) not in skip and isinstance(text, str) and _names_backend(text) \
                and (path, text) not in NOT_BACKENDS:
            found.append(f"{path}:{node.lineno}: {what} {text!r}")

    def literals(node):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return list(node.elts)
        return [node]

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                for lit in literals(operand):
                    hit(lit, "compared with")
        elif isinstance(node, ast.Subscript):
            hit(node.slice, "looked up by")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("get", "startswith", "endswith", "pop", "setdefault"):
            for arg in node.args[:1]:
                for lit in literals(arg):
                    hit(lit, f".{node.func.attr}()")
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                if key is not None:
                    hit(key, "a table keyed by")
        elif isinstance(node, ast.JoinedStr) and node.values:
            # f"threads/{impl}": a label built from a backend's name.
            first = node.values[0]
            if isinstance(first, ast.Constant) and "/" in str(first.value):
                hit(ast.Constant(str(first.value).split("/", 1)[0] + "/", lineno=node.lineno),
                    "a label built from")
    return found


def test_the_scan_finds_each_way_of_branching_on_a_backend_name():
    bad = textwrap.dedent("""
        if case["backend"] == "threads": pass
        if backend in ("serial", "mpi"): pass
        figure = DISPATCH["processes"]
        launch = LAUNCH.get("cupy")
        table = {"pycuda": 1}
        label = f"serial/{impl}"
        ok = label.startswith("processes/numpy/")
    """)
    assert len(backend_name_uses(bad)) == 8
    fine = 'if traits.workers == records.THREAD and label == f"{ref}/numpy": pass\n'
    assert backend_name_uses(fine) == []


def test_no_module_outside_the_backends_branches_on_a_backend_name():
    found = []
    for path in sorted(GPUKIT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("gpukit/backends/"):
            continue
        found.extend(backend_name_uses(path.read_text(), rel))
    assert found == [], "\n".join(found)


# -- traits: declared by the backends, stored in the results, read from there -------------------


def test_the_legacy_table_says_what_the_built_in_backends_declare():
    # A file written before traits were recorded must analyse as one written today; a backend
    # added since has its traits in every file that names it, and needs no entry.
    for name in backends.NAMES:
        cls = backends.get(name)
        assert records.LEGACY_TRAITS.get(name, cls.traits) == cls.traits, name
        assert cls.traits.parallel == cls.parallel and (cls.traits.device == records.GPU) == cls.gpu


def test_traits_round_trip_and_tolerate_fields_from_another_version():
    for traits in records.LEGACY_TRAITS.values():
        assert records.BackendTraits.from_json(json.loads(json.dumps(traits.to_json()))) == traits
    stored = {**records.LEGACY_TRAITS["threads"].to_json(), "a_later_field": 1}
    del stored["dispatch_phase"]
    got = records.BackendTraits.from_json(stored)
    assert got.shares_gil and got.dispatch_s == "thread_dispatch_s" and got.dispatch_phase == ""


def _renamed(data: dict, old: str, new: str) -> dict:
    """A results dict with backend `old` called `new` everywhere, its traits stored."""
    data = copy.deepcopy(data)
    for name, entry in data["backends"].items():
        entry["traits"] = records.backend_traits(data, name).to_json()
    data["backends"] = {(new if k == old else k): v for k, v in data["backends"].items()}
    for rec in [*data["cases"], *data["sessions"]]:
        variant = rec["variant"]
        if variant["backend"] == old:
            variant["backend"] = new
            variant["label"] = new + variant["label"][len(old):]
            if "label" in rec:
                rec["backend"], rec["label"] = new, variant["label"]
    return data


@pytest.mark.parametrize("old", ["serial", "threads", "processes"])
def test_the_analysis_reads_a_backend_from_its_stored_traits_not_its_name(old):
    # The same run with one backend renamed and its traits stored says the same, with the new
    # name: nothing in the model or the findings knew the old one.
    data = json.loads((ROOT / "bench/results/compare-polyval-dev-2core-epyc.json").read_text())
    new = "renamed"
    before = analysis.analyze(data)
    after = analysis.analyze(_renamed(data, old, new))

    def same(text):
        return text.replace(f"{old}/", f"{new}/")

    assert [(f.topic, same(f.text)) for f in before.findings] == \
        [(f.topic, f.text) for f in after.findings]
    assert [v.ratio for v in before.verdicts.values()] == [v.ratio for v in after.verdicts.values()]
    assert [(lim.kind, same(lim.text)) for lim in before.limits.values()] == \
        [(lim.kind, lim.text) for lim in after.limits.values()]


def test_a_run_records_each_backends_traits(tmp_path):
    from gpukit import kernels, runner
    from gpukit.results import Results, load
    from gpukit.timing import Budget
    sweep = runner.Sweep(kernels.load("polyval"), ({"k": 2},), (1024,), (1, 2),
                         ("serial", "threads"), ("numpy",),
                         Budget(budget_s=0.0, min_reps=1, max_reps=1, warmup=1), 1.0)
    results = runner.Runner(sweep, Results({}, sweep.to_json())).run()
    data = load(results.save(tmp_path / "r.json"))
    for name in ("serial", "threads"):
        assert data["backends"][name]["traits"] == backends.get(name).traits.to_json()
    assert RunRecord.from_json(data).to_json() == data
    assert [c["status"] for c in data["cases"]] == ["ok"] * 3


# -- records: what they read, they write back ----------------------------------------------------


@pytest.mark.parametrize("path", RESULTS_FILES, ids=lambda p: p.name)
def test_records_write_back_exactly_what_a_committed_results_file_holds(path):
    text = path.read_text()
    data = json.loads(text)
    run = RunRecord.from_json(data)
    # Same content, same key order: a file read and written again is the same file.
    assert json.dumps(run.to_json()) == json.dumps(data)
    assert all(isinstance(c, CaseRecord) for c in run.cases) and run.cases
    ok = [c for c in run.cases if c.status == "ok"]
    assert ok and all(c.runs and c.prepare is not None for c in ok)
    assert all(c.label == d["label"] for c, d in zip(run.cases, data["cases"]))
    # A file from before traits were recorded gets them from the built-in table.
    for name in data["backends"]:
        assert run.traits(name) == records.LEGACY_TRAITS[name]


@pytest.mark.parametrize("traits,words", [
    ("thread", "backends.threads.traits should be an object, not str"),
    ({"moves_data": 5}, "backends.threads.traits.moves_data should be a list of strings, not 5"),
    ({"shares_gil": "yes"}, "backends.threads.traits.shares_gil should be true or false"),
    ({"dispatch_s": None}, "backends.threads.traits.dispatch_s should be a string, not None"),
])
def test_damaged_traits_are_named_on_load(tmp_path, traits, words):
    from gpukit.errors import UsageError
    from gpukit.results import load
    data = json.loads((ROOT / "tests/data/cpu-small.json").read_text())
    data["backends"]["threads"]["traits"] = traits
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="damaged results file: " + words.replace(".", r"\.")):
        load(path)
    # Traits from a later gpukit, with a field this one does not know, load and analyse.
    data["backends"]["threads"]["traits"] = {**records.LEGACY_TRAITS["threads"].to_json(),
                                             "a_later_field": [1]}
    path.write_text(json.dumps(data))
    assert analysis.analyze(load(path)).findings
