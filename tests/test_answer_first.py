"""What a person reads in a terminal: the answer first, then the findings, then a table that fits
80 and 120 columns with no cell cut; and the same answer opening the Markdown and the HTML."""

from __future__ import annotations

import json
import re

import pytest
import synthetic

from gpukit import analysis, units
from gpukit.reporting import tables
from gpukit.analysis import answer

WIDTHS = (80, 120)


@pytest.fixture(scope="module")
def gpu_results(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu") / "gpu-synthetic.json"
    path.write_text(json.dumps(synthetic.with_gpu()))
    return path


def check_fits(text: str, width: int) -> None:
    lines = text.splitlines()
    assert lines, "no output"
    too_wide = [line for line in lines if len(line) > width]
    assert not too_wide, too_wide[:3]
    assert "…" not in text and "..." not in "".join(line for line in lines
                                                     if re.match(r"\s*2\^\d", line))


def sections(text: str) -> list[str]:
    """The order of what stdout shows: answer headings, Findings, table titles."""
    return [line.split()[0].rstrip(":") for line in text.splitlines()
            if line.startswith(("Answer: ", "Findings", "polyval ("))]


def table_rows(text: str, title: str) -> list[str]:
    """The row lines of the table under `title` (rows start with their size, 2^k)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith(("polyval (", "Answer")) or (rows and not line.strip()):
            break
        if re.match(r"\s*2\^\d+ ", line):
            rows.append(line)
    return rows


def header(text: str, pset: dict) -> str:
    lines = text.splitlines()
    start = lines.index(next(line for line in lines
                             if line.startswith(f"polyval ({analysis.params_text(pset)})")))
    return next(line for line in lines[start:] if re.match(r"\s+n  ", line))


def check_best_rows(text: str, data: dict) -> None:
    """Every size and variant has its row, at its fastest worker count, with its total time
    whole, unit included."""
    idx = analysis.index(data)
    for pset in data["sweep"]["param_sets"]:
        rows = table_rows(text, f"polyval ({analysis.params_text(pset)})")
        best: dict[tuple, dict] = {}
        for (p, label, _w, n), c in idx.items():
            old = best.get((n, label))
            if p == analysis.params_key(pset) and (old is None
                                                   or analysis.wall(c) < analysis.wall(old)):
                best[(n, label)] = c
        assert len(rows) == len(best)
        for (n, label), c in best.items():
            name = analysis.variant_name(label, c["workers"], data)
            (row,) = [r for r in rows if re.match(rf"\s*{re.escape(units.fmt_n(n))}\s+"
                                                  rf"{re.escape(name)}\s", r)]
            cells = re.split(r"\s{2,}", row.strip())
            # The times are whole, unit included, and each stands in a cell of its own.
            assert tables.fmt_s(analysis.wall(c)) in cells, (row, analysis.wall(c))
            if re.search(r" compute ", header(text, pset)):
                compute = analysis.run_phases(c, data)["compute"]
                assert tables.fmt_s(compute) in cells, row


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_quick_answers_first_and_fits_the_width(gpukit_cli, tmp_path, width):
    out = tmp_path / "r.json"
    proc = gpukit_cli("compare", "--quick", "--budget-s", "0.02", "-o", str(out),
                      env={"COLUMNS": str(width)})
    assert proc.returncode == 0, proc.stderr
    check_fits(proc.stdout, width)
    check_fits(proc.stderr, width)
    order = sections(proc.stdout)
    assert proc.stdout.startswith("Answer: polyval, k=2\n")
    assert order[:3] == ["Answer", "Answer", "Findings"] and order[3:] == ["polyval", "polyval"]
    # No GPU here: the answer says why, in the backends' own words.
    data = json.loads(out.read_text())
    if not any(e.get("available") for e in data["backends"].values() if e.get("gpu")):
        assert re.search(r"^GPU +not run: ", proc.stdout, re.MULTILINE)
    check_best_rows(proc.stdout, data)


@pytest.mark.parametrize("width", WIDTHS)
def test_report_fits_the_width_with_either_table(gpukit_cli, gpu_results, width):
    data = json.loads(gpu_results.read_text())
    best = gpukit_cli("report", str(gpu_results), env={"COLUMNS": str(width)})
    assert best.returncode == 0, best.stderr
    check_fits(best.stdout, width)
    assert best.stdout.startswith("Answer: polyval, k=2\n")
    check_best_rows(best.stdout, data)

    full = gpukit_cli("report", str(gpu_results), "--table", "full", env={"COLUMNS": str(width)})
    assert full.returncode == 0, full.stderr
    check_fits(full.stdout, width)
    # Every case has its row in each part of the full table, and every column is in one part.
    ok = [c for c in data["cases"] if c["status"] == "ok" and c["params"] == {"k": 2}]
    parts = re.findall(r"^polyval \(k=2\)(?: \((\d) of (\d)\))?", full.stdout, re.MULTILINE)
    count = int(parts[0][1] or 1)
    assert len(parts) == count and (width > 100 or count > 1)
    headers = " ".join(line for line in full.stdout.splitlines() if line.lstrip().startswith("n "))
    for column in ("workers", "in", "compute", "out", "total", "spread", "GB/s", "GFLOP/s",
                   "limit", "note"):
        assert re.search(rf"(^| ){re.escape(column)}( |$)", headers), column
    for i in range(count):
        title = "polyval (k=2)" + (f" ({i + 1} of {count})" if count > 1 else "")
        assert len(table_rows(full.stdout, title)) == len(ok)


def test_the_best_table_names_the_columns_it_leaves_out():
    data = synthetic.load_cpu()
    an = analysis.analyze(data)
    narrow = tables.case_tables(data, an, width=80)
    wide = tables.case_tables(data, an, width=400)
    assert "left out at this width: " in narrow[0].caption
    assert "left out" not in wide[0].caption
    assert len(wide[0].columns) > len(narrow[0].columns)
    full = tables.case_tables(data, an, width=80, table=tables.TABLE_FULL)
    assert len(full) > len(data["sweep"]["param_sets"])


def test_the_answer_comes_from_the_findings_figures(gpu_results):
    data = json.loads(gpu_results.read_text())
    an = analysis.analyze(data)
    items = answer.answer(an)
    for pset in data["sweep"]["param_sets"]:
        assert [a.topic for a in items if a.params == pset] == [
            answer.FASTEST, answer.THREADS, answer.PROCESSES, answer.GPU]
    blocks = dict(tables.answer_blocks(data, an))
    k2 = dict(blocks["polyval, k=2"])
    gpu = next(f for f in an.findings if f.topic == "gpu" and f.params == {"k": 2})
    x = gpu.numbers["end_to_end"]
    assert x["status"] == "interpolated"
    assert k2["GPU"].startswith(f"wins end to end from n≈{units.fmt_n_est(x['n'])}")
    procs = next(f for f in an.findings if f.topic == "processes" and f.params == {"k": 2})
    share = procs.numbers["pickle"]["transfer_share"]
    assert f"pickle x2 spends {share:.0%} of its time" in k2["processes"]
    fastest = next(f for f in an.findings if f.topic == "fastest" and f.params == {"k": 2})
    first = fastest.numbers["winners"][0]
    assert k2["fastest"].startswith(f"{first['label']} up to n={units.fmt_n(first['to_n'])}")


def test_the_answer_says_why_no_gpu_ran():
    data = synthetic.load_cpu()
    data["backends"]["cupy"] = {"available": False, "gpu": True,
                                "reason": "cupy is not installed (the cuda extra: pip install "
                                          "'.[cuda]')"}
    data["backends"]["pycuda"] = {"available": False, "gpu": True,
                                  "reason": "pycuda is not installed (the cuda extra: pip "
                                            "install '.[cuda]')"}
    blocks = tables.answer_blocks(data)
    for _head, lines in blocks:
        assert dict(lines)["GPU"] == ("not run: cupy is not installed; pycuda is not installed "
                                      "(the cuda extra: pip install '.[cuda]')")
    for name in ("cupy", "pycuda"):
        del data["backends"][name]
    (_head, lines), *_ = tables.answer_blocks(data)
    assert dict(lines)["GPU"] == "not run: no GPU backend was selected (--backends)"


def test_a_partial_run_says_so_in_its_answer():
    data = synthetic.load_cpu()
    data.update(complete=False, note="interrupted")
    (_head, lines), *_ = tables.answer_blocks(data)
    said = "the run stopped early (interrupted): this is what it measured before"
    assert lines[0] == ("partial", said)


def test_markdown_and_html_open_with_the_answer(gpukit_cli, gpu_results, tmp_path):
    md, page = tmp_path / "r.md", tmp_path / "r.html"
    proc = gpukit_cli("report", str(gpu_results), "--quiet", "--markdown", str(md),
                      "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Answer: polyval, k=2\n")
    assert "polyval (k=2)" not in proc.stdout          # --quiet: no table
    text = md.read_text()
    assert text.index("## Answer") < text.index("## Findings")
    assert "**polyval, k=64**" in text and "\n- GPU: wins " in text
    html = page.read_text()
    assert html.index("<h2>Answer</h2>") < html.index("<h2>Findings</h2>")
    assert "<h3>polyval, k=2</h3><ul><li>fastest: " in html


def test_failed_cases_open_the_answer_they_are_left_out_of():
    data = synthetic.load_cpu()
    case = max((c for c in data["cases"] if c["label"] == "threads/numpy" and c["workers"] == 2
                and c["params"] == {"k": 2} and c["status"] == "ok"), key=lambda c: c["n"])
    case.update(status="failed", reason="check: output disagrees with the reference")
    blocks = dict(tables.answer_blocks(data))
    first = blocks["polyval, k=2"][0]
    said = (f"1 case, left out of what follows: threads/numpy x2 from "
            f"n={units.fmt_n(case['n'])} (the findings say why)")
    assert first == ("failed", said)
    assert blocks["polyval, k=64"][0][0] == "fastest"


def test_the_readme_shows_the_answer_as_report_prints_it(gpukit_cli):
    """The README's example is the answer block of the baseline run it cites, at 100 columns:
        COLUMNS=100 python -m gpukit report bench/results/compare-polyval-dev-2core-epyc.json -q
    up to "Findings", trailing blanks stripped. A change in the answer's wording shows here."""
    from conftest import ROOT
    proc = gpukit_cli("report", "bench/results/compare-polyval-dev-2core-epyc.json", "--quiet",
                      env={"COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    answer = proc.stdout.split("\nFindings\n")[0]
    block = "\n".join(line.rstrip() for line in answer.splitlines()).strip("\n")
    readme = (ROOT / "README.md").read_text()
    assert f"```\n{block}\n```" in readme
