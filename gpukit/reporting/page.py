"""One self-contained HTML page of a results dict: machine facts, findings, figures, tables;
and the same in Markdown, for a README, a pull request or an issue.

Everything is inside the HTML file (figures as base64 PNG, styles inline, no scripts, nothing
fetched), so it can be mailed to a colleague and opened anywhere. The Markdown links its figures
from the folder `report --plots` wrote them to.
"""

from __future__ import annotations

import base64
import html
import re

from gpukit import analysis, units
from gpukit.analysis import params_text
from gpukit.reporting import plots, tables

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:
1200px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.8em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
td.l,th.l{text-align:left}tr.skipped td,tr.unavailable td{color:#888}tr.failed td{color:#b00}
tr.far td{background:#fdf0ff}figure{margin:1em 0}figure img{max-width:100%;height:auto;
border:1px solid #eee}figcaption{font-size:.85em;color:#555}ol li,ul li{margin:.3em 0}
.small{font-size:.85em;color:#555}.scroll{overflow-x:auto}
"""

CAPTIONS = {
    "timing": "Time per run vs n (log-log), each variant at its most workers (dotted: fewer "
              "workers, where those were the fastest); band: "
              "interquartile range of the repetitions.",
    "phases": "Share of each run phase at the smallest, a middle and the largest size, with the "
              "time per run and the one-off startup.",
    "speedup": "Speedup vs workers for threads and processes at the largest size all worker "
               "counts ran; dotted: ideal.",
    "roofline": "Roofline: compute-phase GFLOP/s against FLOPs per byte, with the bandwidth and "
                "arithmetic ceilings.",
}

_COLUMNS = (("n", "n"), ("variant", "variant"), ("workers", "workers"), ("startup", "startup_s"),
            ("in", "transfer_in_s"), ("compute", "compute_s"), ("out", "transfer_out_s"),
            ("total", "wall_s"), ("spread", "rel_spread"), ("GB/s", "gbps"),
            ("GFLOP/s", "gflops"), ("vs serial", "speedup_vs_serial"),
            ("vs model", "measured_over_predicted"), ("limit", "limit_text"))
_SECONDS = {"startup_s", "transfer_in_s", "compute_s", "transfer_out_s", "wall_s"}
_LEFT = {"variant", "limit_text"}


def _e(text) -> str:
    return html.escape(str(text))


def _cell(key: str, value) -> str:
    if value == "" or value is None:
        return ""
    if key in _SECONDS:
        return units.fmt_s(value)
    if key == "n":
        return units.fmt_n(value)
    if key == "rel_spread":
        return f"{value:.0%}"
    if key == "speedup_vs_serial":
        return f"{value:.2f}x"
    if key == "measured_over_predicted":
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _case_table(data, an, pset) -> str:
    rows = [r for r in tables.case_rows(data, an) if r["params"] == params_text(pset)]
    head = "".join(f'<th class="{"l" if k in _LEFT else ""}">{_e(t)}</th>' for t, k in _COLUMNS)
    body = []
    for r in rows:
        cls = r["status"] if r["status"] != "ok" else ("far" if r["far_from_model"] == 1 else "")
        if r["status"] != "ok":
            cells = (f"<td>{_e(_cell('n', r['n']))}</td><td class=l>{_e(r['variant'])}</td>"
                     f"<td>{r['workers']}</td><td class=l colspan={len(_COLUMNS) - 3}>"
                     f"{_e(r['reason'] or r['status'])}</td>")
        else:
            cells = "".join(f'<td class="{"l" if k in _LEFT else ""}">{_e(_cell(k, r[k]))}</td>'
                            for _t, k in _COLUMNS)
        body.append(f'<tr class="{cls}">{cells}</tr>')
    title = data["sweep"]["kernel"] + (f" ({params_text(pset)})" if pset else "")
    return (f"<h3>{_e(title)}</h3><div class=scroll><table><thead><tr>{head}</tr></thead><tbody>"
            + "".join(body) + "</tbody></table></div>")


def _inline(text) -> str:
    """Escaped text, with `code` spans (as the findings write commands) set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _list(lines, ordered=False) -> str:
    tag = "ol" if ordered else "ul"
    return f"<{tag}>" + "".join(f"<li>{_inline(line)}</li>" for line in lines) + f"</{tag}>"


def _facts(data) -> str:
    m = dict(data["machine"])
    gpu = m.pop("gpu", None) or {}
    rows = [(k, v) for k, v in m.items() if v is not None]
    rows += [(f"gpu {k}", v) for k, v in gpu.items() if isinstance(v, (str, int, float))]
    rows += [("results created", data.get("created")),
             ("command", " ".join(data.get("command") or [])),
             ("complete", data.get("complete")),
             ("sweep wall time", units.fmt_s(data.get("wall_s")))]
    return "<table>" + "".join(f"<tr><th class=l>{_e(k)}</th><td class=l>{_e(v)}</td></tr>"
                               for k, v in rows if v not in (None, "")) + "</table>"


def html_page(data: dict, an: analysis.Analysis | None = None, title: str | None = None,
              figures: dict | None = None) -> str:
    an = an if an is not None else analysis.analyze(data)
    title = title or f"gpukit: {data['sweep']['kernel']} on {data['machine'].get('hostname', '?')}"
    figs = []
    for name, fig in (figures if figures is not None else plots.figures(data, an)).items():
        png = base64.b64encode(plots.render(fig, "png")).decode("ascii")
        figs.append(f'<figure id="fig-{name}"><img alt="{_e(CAPTIONS[name])}" '
                    f'src="data:image/png;base64,{png}"><figcaption>{_e(CAPTIONS[name])}'
                    f'</figcaption></figure>')
    counts = tables.status_counts(data)
    partial = tables.partial_text(data)
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        *([f"<p><strong>{_e(partial)}</strong></p>"] if partial else []),
        f"<p class=small>{len(data['cases'])} cases: "
        + _e(", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        + ". Rendered by <code>gpukit report</code> from the saved results; "
          "nothing re-measured.</p>",
        "<h2>Answer</h2>",
        *(f"<h3>{_e(head)}</h3>" + _list(f"{topic}: {text}" for topic, text in lines)
          for head, lines in tables.answer_blocks(data, an)),
        "<h2>Findings</h2>", _list([f.text for f in an.findings], ordered=True),
        "<h2>Figures</h2>", *figs,
        "<h2>Machine</h2>", _list(tables.machine_lines(data) + tables.backend_lines(data)),
        _facts(data),
        "<h2>Ceilings the model used</h2>",
        _list(tables.ceiling_lines(data, an)) if an.ceilings.values or an.ceilings.lacking
        else "<p>none</p>",
        "<h2>Cases far from the model</h2>",
        _list(tables.flag_lines(data, an)) if tables.flag_lines(data, an) else "<p>none</p>",
        "<h2>What limits each variant at its largest size</h2>",
        _list(tables.limit_lines(data, an)),
        "<h2>Cases</h2>",
        *(_case_table(data, an, pset) for pset in data["sweep"]["param_sets"]),
        "</body></html>\n",
    ]
    return "\n".join(parts)


__all__ = ["html_page"]


def markdown_page(data: dict, an: analysis.Analysis | None = None, title: str | None = None,
                  figure_paths: dict[str, str] | None = None) -> str:
    """The findings, figures (as links to `figure_paths`, by figure name), machine, ceilings,
    cases far from the model and what limits each variant, as Markdown."""
    an = an if an is not None else analysis.analyze(data)
    title = title or f"gpukit: {data['sweep']['kernel']} on {data['machine'].get('hostname', '?')}"
    counts = tables.status_counts(data)

    def bullets(lines):
        return [f"- {line}" for line in lines] or ["none"]

    parts = [f"# {title}", ""]
    partial = tables.partial_text(data)
    if partial:
        parts += [f"**{partial}**", ""]
    parts += [f"{len(data['cases'])} cases: "
              + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
              + f"; measured {data.get('created', '?')} by `{' '.join(data.get('command') or [])}`"
              + ", rendered by `gpukit report`.", "", "## Answer", ""]
    for head, lines in tables.answer_blocks(data, an):
        parts += [f"**{head}**", "", *(f"- {topic}: {text}" for topic, text in lines), ""]
    parts += ["## Findings", "", *tables.finding_lines(data, an), ""]
    if figure_paths:
        parts += ["## Figures", ""]
        for name, path in figure_paths.items():
            parts += [f"![{CAPTIONS[name]}]({path})", "", f"*{CAPTIONS[name]}*", ""]
    parts += ["## Machine", "", *bullets(tables.machine_lines(data) + tables.backend_lines(data)),
              "", "## Ceilings the model used", "", *bullets(tables.ceiling_lines(data, an)), "",
              "## Cases far from the model", "", *bullets(tables.flag_lines(data, an)), "",
              "## What limits each variant at its largest size", "",
              *bullets(tables.limit_lines(data, an)), ""]
    return "\n".join(parts)
