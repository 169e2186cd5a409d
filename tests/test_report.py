"""`gpukit report` and `gpukit diff` on saved results, run in a subprocess as a user runs them."""

from __future__ import annotations

import csv
import json

import pytest

import synthetic
from gpukit import analysis, phases
from gpukit.reporting import tables
from gpukit.commands import diff


@pytest.fixture
def cli(gpukit_cli, tmp_path):
    """The CLI with a private ceilings cache, so figures `gpukit limits` stored on this machine
    do not leak into what the tests see."""
    def run(*args, **kw):
        return gpukit_cli(*args, env={"GPUKIT_CACHE_DIR": str(tmp_path / "cache")}, **kw)
    return run


@pytest.fixture(scope="module")
def gpu_results(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu") / "gpu-synthetic.json"
    path.write_text(json.dumps(synthetic.with_gpu()))
    return path


def slower_copy(data: dict, factor: float, labels: set[str]) -> dict:
    """The same run with every repetition of the named variants `factor` times slower."""
    return synthetic.rescaled(data, lambda case: factor if case["label"] in labels else 1.0)


def test_report_prints_table_findings_and_writes_csv_html_plots(cli, tmp_path):
    out_csv, out_html, plots = tmp_path / "cases.csv", tmp_path / "r.html", tmp_path / "plots"
    r = cli("report", str(synthetic.CPU_RESULTS), "--csv", str(out_csv), "--html", str(out_html),
            "--plots", str(plots))
    assert r.returncode == 0, r.stderr
    assert "Findings" in r.stdout and "\n1. [k=2] fastest:" in r.stdout
    assert "model:" in r.stdout and "Ceilings" in r.stdout
    assert "lacking" in r.stdout          # the CPU run has no all-core copy figure
    for name in ("timing", "phases", "speedup", "roofline"):
        for ext in ("png", "svg"):
            assert (plots / f"{name}.{ext}").stat().st_size > 5000
    page = out_html.read_text()
    assert page.count('src="data:image/png;base64,') == 4
    assert "<h2>Findings</h2>" in page and "AMD" in page or "cpu" in page

    rows = list(csv.DictReader(out_csv.open()))
    assert tuple(rows[0]) == tables.CSV_COLUMNS
    data = json.loads(synthetic.CPU_RESULTS.read_text())
    assert len(rows) == len(data["cases"])
    ok = [row for row in rows if row["status"] == "ok"]
    for row in ok:
        assert float(row["wall_s"]) > 0 and int(row["reps"]) >= 1
        assert row["dominant_phase"] in phases.RUN_PHASES and row["limit"]
    skipped = [row for row in rows if row["status"] == "skipped"]
    assert all(row["reason"] and row["wall_s"] == "" for row in skipped)


def test_report_writes_markdown_that_links_the_plots_it_wrote(cli, tmp_path):
    md = tmp_path / "docs" / "findings.md"
    proc = cli("report", str(synthetic.CPU_RESULTS), "--quiet", "--markdown", str(md),
               "--plots", str(tmp_path / "docs" / "plots"))
    assert proc.returncode == 0, proc.stderr
    text = md.read_text()
    data = json.loads(synthetic.CPU_RESULTS.read_text())
    for line in tables.finding_lines(data):
        assert line in text
    links = [line[line.index("](") + 2:-1] for line in text.splitlines() if line.startswith("![")]
    assert len(links) == 4 and all((md.parent / link).is_file() for link in links)
    assert "## What limits each variant at its largest size" in text


def test_report_and_page_of_an_interrupted_run_say_it_is_partial(cli, tmp_path):
    data = synthetic.load_cpu()
    data.update(complete=False, note="interrupted")
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(data))
    proc = cli("report", str(path), "--quiet", "--html", str(tmp_path / "p.html"))
    assert proc.returncode == 0, proc.stderr
    assert "partial run (interrupted)" in proc.stdout
    assert "partial run (interrupted)" in (tmp_path / "p.html").read_text()
    whole = cli("report", str(synthetic.CPU_RESULTS), "--quiet")
    assert "partial run" not in whole.stdout


def test_report_of_synthetic_gpu_results_with_given_ceilings(cli, tmp_path, gpu_results):
    ceilings = tmp_path / "h100.json"
    ceilings.write_text(json.dumps(synthetic.h100_ceilings()))
    r = cli("report", str(gpu_results), "--ceilings", str(ceilings), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "GPU vs best CPU: end to end the GPU wins from n=2^" in r.stdout
    assert "(limits)" not in r.stdout     # --quiet: findings only
    assert "from `gpukit limits`" in r.stdout


def test_compare_writes_csv_too(cli, tmp_path):
    out = tmp_path / "c.csv"
    r = cli("compare", "--backends", "serial", "--impls", "numpy", "--sizes", "1024,4096",
            "--budget-s", "0.01", "--no-progress", "-o", str(tmp_path / "r.json"),
            "--csv", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {row["variant"] for row in rows} == {"serial/numpy"}
    assert "1. " in r.stdout and "model:" in r.stdout


def test_diff_of_a_run_with_itself_finds_no_change(cli):
    path = str(synthetic.CPU_RESULTS)
    r = cli("diff", path, path, "--fail-slower", "10%")
    assert r.returncode == 0, r.stderr
    assert "0 faster, 0 slower beyond the noise" in r.stdout


def test_diff_fail_slower_exit_codes_on_a_doctored_slower_copy(cli, tmp_path):
    data = json.loads(synthetic.CPU_RESULTS.read_text())
    slow = tmp_path / "slower.json"
    slow.write_text(json.dumps(slower_copy(data, 1.5, {"serial/numpy"})))
    a = str(synthetic.CPU_RESULTS)

    r = cli("diff", a, str(slow))
    assert r.returncode == 0, r.stderr                      # no threshold: report only
    assert "serial/numpy" in r.stdout and "slower" in r.stdout and "+50.0%" in r.stdout
    assert "Mann-Whitney" in r.stdout

    r = cli("diff", a, str(slow), "--fail-slower", "10%")
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "slower by more than 10%" in r.stderr

    assert cli("diff", a, str(slow), "--fail-slower", "60%").returncode == 0
    # the other way round, B is faster: never a failure
    r = cli("diff", str(slow), a, "--fail-slower", "10")
    assert r.returncode == 0 and "faster" in r.stdout


def test_diff_of_two_runs_apart_only_by_run_to_run_noise_passes_ci(cli, tmp_path):
    # The same run again with every case moved by up to +-15%: what a rerun of the same code on
    # a busy machine looks like, and what the rank test on repetitions alone calls a change.
    data = json.loads(synthetic.CPU_RESULTS.read_text())
    rerun = tmp_path / "rerun.json"
    rerun.write_text(json.dumps(synthetic.rescaled(data, synthetic.run_to_run_noise(0.15))))
    r = cli("diff", str(synthetic.CPU_RESULTS), str(rerun), "--fail-slower", "10%")
    assert r.returncode == 0, r.stderr
    assert "0 faster, 0 slower beyond the noise, 82 within it" in r.stdout
    assert "run-to-run noise" in r.stdout and "--min-change 10%" in r.stdout


def test_diff_finds_a_2x_slowdown_beyond_run_to_run_noise(cli, tmp_path):
    data = json.loads(synthetic.CPU_RESULTS.read_text())
    noise = synthetic.run_to_run_noise(0.15)
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps(synthetic.rescaled(
        data, lambda c: noise(c) * (2.0 if c["label"] == "serial/numpy" else 1.0))))
    r = cli("diff", str(synthetic.CPU_RESULTS), str(slow), "--fail-slower", "10%")
    assert r.returncode == 1
    assert ("6 case(s) slower by more than 10% beyond the noise; worst [k=64] serial/numpy"
            in r.stderr)
    assert "0 faster, 6 slower beyond the noise" in r.stdout
    # a minimum change above the slowdown makes it noise
    assert cli("diff", str(synthetic.CPU_RESULTS), str(slow), "--fail-slower", "10%",
               "--min-change", "150%").returncode == 0


def test_diff_fails_when_a_case_that_ran_in_a_failed_or_was_skipped_in_b(cli, tmp_path):
    data = json.loads(synthetic.CPU_RESULTS.read_text())
    ok = [c for c in data["cases"] if c["status"] == "ok" and c["label"] == "serial/numpy"]
    broken, cut = ok[0], ok[1]
    broken.update(status="failed", reason="check: output disagrees with the reference")
    cut.update(status="skipped", reason="one run would take longer than the run limit")
    data.update(complete=False, note="interrupted")
    b = tmp_path / "b.json"
    b.write_text(json.dumps(data))
    a = str(synthetic.CPU_RESULTS)

    # A wrong result fails the diff even without a threshold, and is named.
    r = cli("diff", a, str(b))
    assert r.returncode == 1
    assert "Ran in A, not in B (2):" in r.stdout
    assert "failed in B: check: output disagrees" in r.stdout
    assert "B is a partial run (interrupted)" in r.stdout
    assert r.stderr.count("error: ") == 1 and "1 case(s) that ran in A failed in B" in r.stderr
    # With a threshold, the skipped case (slower, so cut by the run limit) fails it too.
    r = cli("diff", a, str(b), "--fail-slower", "10%")
    assert r.returncode == 1 and "1 case(s) that ran in A were skipped in B" in r.stderr
    # Back the other way, nothing that ran in A is lost in B.
    r = cli("diff", str(b), a, "--fail-slower", "10%")
    assert r.returncode == 0, r.stderr
    assert "Ran in A, not in B" not in r.stdout


def test_diff_min_change_default_is_the_analysis_one(cli):
    assert diff.parse_percent(diff.DEFAULT_MIN_CHANGE) == analysis.MIN_CHANGE
    r = cli("diff", "--help")
    assert r.returncode == 0 and "--min-change" in r.stdout and "10%" in r.stdout


@pytest.mark.parametrize("args, message", [
    (("report", "missing.json"), "no such results file"),
    (("report", "pyproject.toml"), "is not JSON"),
    (("diff", "tests/data/cpu-small.json", "tests/data/cpu-small.json", "--fail-slower", "ten"),
     "--fail-slower takes a percentage"),
    (("diff", "tests/data/cpu-small.json", "tests/data/cpu-small.json", "--fail-slower=-5%"),
     "must be a percentage >= 0"),
    (("diff", "tests/data/cpu-small.json", "tests/data/cpu-small.json", "--min-change", "x"),
     "--min-change takes a percentage"),
    (("report", "tests/data/cpu-small.json", "--ceilings", "pyproject.toml"),
     "is not a gpukit ceilings file"),
])
def test_bad_input_is_one_error_line_and_exit_2(cli, args, message):
    r = cli(*args)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_not_a_results_file_and_no_common_cases(cli, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    r = cli("report", str(other))
    assert r.returncode == 2 and "not a gpukit results file" in r.stderr
    data = json.loads(synthetic.CPU_RESULTS.read_text())
    for case in data["cases"]:
        case["n"] *= 3
    shifted = tmp_path / "shifted.json"
    shifted.write_text(json.dumps(data))
    r = cli("diff", str(synthetic.CPU_RESULTS), str(shifted))
    assert r.returncode == 2 and "no case in common" in r.stderr


def _damaged(edit):
    data = json.loads(synthetic.CPU_RESULTS.read_text())
    edit(data)
    return data


@pytest.mark.parametrize("content, message", [
    ([1, 2], "is not a gpukit results file"),
    (_damaged(lambda d: d["cases"][0].pop("summary")), "cases[0].summary is missing"),
    (_damaged(lambda d: d["cases"][0]["summary"]["wall_s"].update(median="fast")),
     "cases[0].summary.wall_s.median should be a number, not 'fast'"),
    (_damaged(lambda d: d["cases"][1]["summary"]["phases_s"].pop("compute")),
     "cases[1].summary.phases_s.compute is missing"),
    (_damaged(lambda d: d.update(machine="box")), "machine should be an object, not str"),
    (_damaged(lambda d: d["sweep"].pop("param_sets")), "sweep.param_sets is missing"),
    (_damaged(lambda d: d["cases"].append("case")), "should be an object, not str"),
    (_damaged(lambda d: d.update(version="1")), "version is '1'"),
])
def test_a_damaged_results_file_is_one_error_line_naming_what_is_wrong(cli, tmp_path, content,
                                                                      message):
    path = tmp_path / "damaged.json"
    path.write_text(json.dumps(content))
    for command in (("report", str(path)), ("diff", str(path), str(synthetic.CPU_RESULTS))):
        r = cli(*command)
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.startswith(f"error: {path} ")
        assert message in r.stderr and r.stderr.count("\n") == 1


def test_report_of_a_folder_is_a_usage_error(cli, tmp_path):
    r = cli("report", str(tmp_path))
    assert r.returncode == 2 and r.stderr == f"error: {tmp_path} is a folder; give a results file\n"


@pytest.mark.parametrize("option, message", [
    ("--html", "cannot write the HTML page to /proc/gpukit/x"),
    ("--csv", "cannot write the CSV to /proc/gpukit/x"),
    ("--markdown", "cannot write the Markdown to /proc/gpukit/x"),
    ("--plots", "cannot write the plots to /proc/gpukit/x"),
])
def test_report_refuses_unwritable_outputs_before_printing_anything(cli, option, message):
    r = cli("report", str(synthetic.CPU_RESULTS), option, "/proc/gpukit/x")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"error: {message}") and r.stderr.count("\n") == 1
