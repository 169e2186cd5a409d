"""Human-readable views of a results dict: rich tables, lines of text and CSV rows.

Never measures and never prints: commands print what these return. Each takes the results dict
and, optionally, an `analysis.Analysis` already computed for it (one is computed if not given).
"""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from gpukit import analysis, model, phases
from gpukit.analysis import fmt_n, fmt_s, params_key, params_text

__all__ = ["backend_lines", "case_rows", "case_tables", "ceiling_lines", "csv_text", "CSV_COLUMNS",
           "finding_lines", "flag_lines", "fmt_s", "machine_lines", "status_counts"]


def _analysis(data: dict, an: analysis.Analysis | None) -> analysis.Analysis:
    return an if an is not None else analysis.analyze(data)


def startup_s(data: dict, case: dict) -> float | None:
    """The one-off cost before a case's runs: its session's start (pool, context, compile),
    shared by the sizes, plus the case's own prepare (allocating, pinning, shared memory,
    handing rank 0 its inputs), which grows with n."""
    sid = case.get("session")
    session = next((s for s in data["sessions"] if s["id"] == sid), None)
    if session is None or session["startup"] is None:
        return None
    total = session["startup"]["total_s"]
    return total + (case.get("prepare") or {}).get("total_s", 0.0)


def _sort_key(case: dict, data: dict):
    """Size, then the reference backend's variants first (the baseline heads each size)."""
    reference = model.traits(data, case).reference
    return (case["n"], not reference, case["label"], case["workers"])


def _status_reason(case: dict) -> str:
    reason = case.get("reason") or case["status"]
    if not reason.startswith(case["status"]):
        reason = f"{case['status']}: {reason}"
    return reason


def case_tables(data: dict, an: analysis.Analysis | None = None) -> list[Table]:
    """One table per kernel parameter set: phases, total, throughput, speedup, limit, model."""
    an = _analysis(data, an)
    idx = analysis.index(data)
    tables = []
    for pset in data["sweep"]["param_sets"]:
        pkey = params_key(pset)
        title = data["sweep"]["kernel"] + (f" ({params_text(pset)})" if pset else "")
        table = Table(title=title, title_justify="left",
                      header_style="bold")
        cases = sorted((c for c in data["cases"] if params_key(c["params"]) == pkey), key=lambda c: _sort_key(c, data))
        label_width = max((len(c["label"]) for c in cases), default=7)
        # Figures never wrap or shrink; the words (limit, note) wrap when the terminal is narrow.
        for name, justify, width in (("n", "right", 5), ("variant", "left", label_width),
                                     ("workers", "right", 3), ("startup+prep", "right", None),
                                     ("in", "right", None), ("compute", "right", None),
                                     ("out", "right", None), ("total", "right", None),
                                     ("spread", "right", None), ("GB/s", "right", None),
                                     ("GFLOP/s", "right", None), ("vs serial", "right", None)):
            table.add_column(name, justify=justify, no_wrap=True, min_width=width)
        table.add_column("limit", overflow="fold", min_width=12, ratio=1)
        table.add_column("vs model", justify="right", no_wrap=True)
        table.add_column("note", overflow="fold", min_width=10, ratio=1)
        skipped = {}
        for c in cases:
            head = [fmt_n(c["n"]), c["label"], str(c["workers"])]
            if c["status"] == "skipped":
                # One line per series under the table, not a row per size it did not run.
                series = (c["label"], c["workers"])
                reason = (c.get("reason") or "").removeprefix("skipped: ")
                skipped.setdefault(series, (c["n"], reason or "over the run limit"))
                continue
            if c["status"] != "ok":
                style = {"failed": "red", "skipped": "dim", "unavailable": "yellow"}.get(c["status"])
                reason = escape(_status_reason(c))
                table.add_row(*head, *[""] * 11, f"[{style}]{reason}[/]" if style else reason)
                continue
            key = model.case_key(c)
            tp = analysis.throughput(c)
            speedup = analysis.speedup_vs_baseline(idx, c, data)
            ph = analysis.run_phases(c, data)
            s = c["summary"]
            verdict = an.verdicts.get(key)
            ratio = verdict.ratio if verdict else None
            note = ""
            if verdict is not None and verdict.far:
                note = "[magenta]far from the model[/]"
            elif verdict is not None and verdict.anchor:
                note = "[dim]calibrates the model[/]"
            table.add_row(*head, fmt_s(startup_s(data, c)),
                          fmt_s(ph[phases.TRANSFER_IN]), fmt_s(ph[phases.COMPUTE]),
                          fmt_s(ph[phases.TRANSFER_OUT]), fmt_s(s["wall_s"]["median"]),
                          f"{s['wall_s']['rel_spread']:.0%}",
                          f"{tp['gbps']:.3g}", f"{tp['gflops']:.3g}",
                          f"{speedup:.2f}x" if speedup is not None else "-",
                          escape(an.limits[key].short) if key in an.limits else "",
                          f"{ratio:.2f}" if ratio is not None else "-", note)
        if skipped:
            table.caption = "\n".join(
                f"{label} x{workers}: not run from n={fmt_n(n)} ({escape(reason)})"
                for (label, workers), (n, reason) in sorted(skipped.items()))
            table.caption_justify = "left"
        tables.append(table)
    return tables


CSV_COLUMNS = ("kernel", "params", "n", "variant", "backend", "impl", "options", "workers",
               "status", "reason", "startup_s", "transfer_in_s", "compute_s", "transfer_out_s",
               "wall_s", "wall_q1_s", "wall_q3_s", "rel_spread", "reps", "gbps", "gflops",
               "speedup_vs_serial", "dominant_phase", "limit", "limit_percent", "predicted_s",
               "measured_over_predicted", "far_from_model", "limit_text")


def case_rows(data: dict, an: analysis.Analysis | None = None) -> list[dict]:
    """The case table as flat rows (CSV_COLUMNS): seconds as plain floats, blanks as ''."""
    an = _analysis(data, an)
    idx = analysis.index(data)
    rows = []
    for c in sorted(data["cases"], key=lambda c: (params_key(c["params"]), *_sort_key(c, data))):
        options = (c.get("variant") or {}).get("options") or {}
        row = dict.fromkeys(CSV_COLUMNS, "")
        row.update(kernel=c["kernel"], params=params_text(c["params"]), n=c["n"],
                   variant=c["label"], backend=c["backend"], impl=c["impl"],
                   options=";".join(f"{k}={v}" for k, v in sorted(options.items())),
                   workers=c["workers"], status=c["status"], reason=c.get("reason") or "")
        if c["status"] == "ok":
            key = model.case_key(c)
            ph = analysis.run_phases(c, data)
            s = c["summary"]["wall_s"]
            tp = analysis.throughput(c)
            speedup = analysis.speedup_vs_baseline(idx, c, data)
            lim = an.limits.get(key)
            verdict = an.verdicts.get(key)
            startup = startup_s(data, c)
            row.update(startup_s=startup if startup is not None else "",
                       transfer_in_s=ph[phases.TRANSFER_IN], compute_s=ph[phases.COMPUTE],
                       transfer_out_s=ph[phases.TRANSFER_OUT], wall_s=s["median"],
                       wall_q1_s=s["q1"], wall_q3_s=s["q3"], rel_spread=s["rel_spread"],
                       reps=s["count"], gbps=tp["gbps"], gflops=tp["gflops"],
                       speedup_vs_serial=speedup if speedup is not None else "")
            if lim is not None:
                row.update(dominant_phase=lim.dominant, limit=lim.kind,
                           limit_percent="" if lim.percent is None else lim.percent,
                           limit_text=lim.text)
            if verdict is not None and verdict.prediction is not None:
                row.update(predicted_s=verdict.prediction.wall_s,
                           measured_over_predicted=verdict.ratio,
                           far_from_model=int(verdict.far))
        rows.append(row)
    return rows


def backend_lines(data: dict) -> list[str]:
    lines = []
    for name, entry in data["backends"].items():
        if entry.get("available"):
            facts = entry.get("facts") or {}
            extra = f" ({facts['device']})" if facts.get("device") else ""
            lines.append(f"{name}: available{extra}")
        else:
            lines.append(f"{name}: unavailable: {entry.get('reason')}")
    sweep = data.get("sweep") or {}
    has = sweep.get("implementations")
    cpu_backends = [n for n, e in data["backends"].items()
                    if e.get("available") and not e.get("gpu")]
    if has is not None and cpu_backends:
        for impl in ("python", "numpy"):
            if impl not in has and (not sweep.get("impls") or impl in sweep["impls"]):
                lines.append(f"{impl}: skipped: kernel {sweep['kernel']} has no {impl} "
                             f"implementation (it has: {', '.join(has) or 'none'})")
    return lines


def partial_text(data: dict) -> str | None:
    """What to say of a run that did not finish, or None for a complete one."""
    if data.get("complete", True):
        return None
    why = data.get("note") or "it did not finish"
    return (f"partial run ({why}): only the {len(data['cases'])} cases measured before that are "
            "here; the findings leave out the size it stopped inside, and know nothing of the "
            "sizes after it")


def machine_lines(data: dict) -> list[str]:
    m = data["machine"]
    gpu = (m.get("gpu") or {}).get("device")
    start = next((s["startup"]["facts"].get("start_method") for s in data["sessions"]
                  if s.get("startup") and s["startup"]["facts"].get("start_method")), None)
    line = (f"{m['cpu']}, {m['cores']} cores, Python {m['python']} "
            f"(GIL {'on' if m['gil_enabled'] else 'off'}), NumPy {m['numpy']}")
    if gpu:
        line += f"; GPU {gpu}"
    if start:
        line += f"; process start method {start}"
    partial = partial_text(data)
    return [line] + ([partial] if partial else [])


def finding_lines(data: dict, an: analysis.Analysis | None = None,
                  topics: tuple[str, ...] | None = None) -> list[str]:
    """The findings, numbered: `1. [k=2] fastest: ...`."""
    found = [f for f in _analysis(data, an).findings if topics is None or f.topic in topics]
    return [f"{i}. {f.text}" for i, f in enumerate(found, start=1)]


def ceiling_lines(data: dict, an: analysis.Analysis | None = None) -> list[str]:
    """Each figure the model used, with where it came from, then the ones it lacks and why."""
    ceil = _analysis(data, an).ceilings
    lines = []
    for name in sorted(ceil.values):
        unit = name.rsplit("_", 1)[-1]
        value = ceil.values[name]
        shown = fmt_s(value) if unit == "s" else f"{value:.3g} {unit.replace('gbps', 'GB/s').replace('gflops', 'GFLOP/s')}"
        source = ceil.sources[name]
        if source == model.LIMITS_SOURCE and ceil.rough:
            source += " --quick: rough"
        lines.append(f"{name} = {shown} ({source})")
    for name, why in sorted(ceil.lacking.items()):
        lines.append(f"{name}: lacking: {why}")
    return lines


def flag_lines(data: dict, an: analysis.Analysis | None = None) -> list[str]:
    """Cases far from the model, each with the phase holding most of the gap."""
    an = _analysis(data, an)
    idx = analysis.index(data)
    lines = []
    for key, verdict in sorted(an.verdicts.items(), key=lambda kv: analysis.key_order(kv[0])):
        text = analysis.flag_text(idx[key], verdict, data)
        if text:
            lines.append(f"{analysis.case_text(key, data)}: {text}")
    return lines


def limit_lines(data: dict, an: analysis.Analysis | None = None) -> list[str]:
    """Every case's limit in a sentence, at the largest size each variant reached."""
    an = _analysis(data, an)
    idx = analysis.index(data)
    last: dict[tuple, tuple] = {}
    for key in idx:
        p, label, w, n = key
        if (p, label, w) not in last or n > last[(p, label, w)][3]:
            last[(p, label, w)] = key
    lines = []
    for key in sorted(last.values(), key=analysis.key_order):
        lines.append(f"{analysis.case_text(key, data)}: "
                     f"{an.limits[key].text} (most time in {an.limits[key].dominant})")
    return lines


def status_counts(data: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in data["cases"]:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    return counts


def csv_text(data: dict, an: analysis.Analysis | None = None) -> str:
    """The case table as CSV (CSV_COLUMNS, one row per case, seconds as plain numbers)."""
    import csv
    import io
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(case_rows(data, an))
    return buf.getvalue()
