"""Human-readable views of a results dict: rich tables, lines of text and CSV rows.

Never measures and never prints: commands print what these return. Each takes the results dict
and, optionally, an `analysis.Analysis` already computed for it (one is computed if not given).
"""

from __future__ import annotations

import io

from rich import box
from rich.markup import escape
from rich.table import Table

from gpukit import analysis, phases, records
from gpukit.analysis import model
from gpukit.analysis import params_key, params_text
from gpukit.units import fmt_n, fmt_n_est, fmt_s

__all__ = ["CSV_COLUMNS", "TABLES", "TABLE_BEST", "TABLE_FULL", "answer_blocks",
           "answer_renderables", "backend_lines", "case_rows", "case_tables", "ceiling_lines",
           "csv_text", "finding_lines", "flag_lines", "machine_lines", "status_counts"]


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


# The table's columns: name, justification, and for the best-per-size table its rank when the
# terminal is too narrow for all (lower ranks stay longest; None: never shown there).
_COLUMNS = (("n", "right", 0, 0), ("variant", "left", 0, 0), ("workers", "right", 0, None),
            ("startup+prep", "right", 1, 6), ("in", "right", 1, None),
            ("in+out", "right", None, 5), ("compute", "right", 1, 4), ("out", "right", 1, None),
            ("total", "right", 1, 1), ("spread", "right", 1, 7), ("GB/s", "right", 1, 9),
            ("GFLOP/s", "right", 1, 10), ("vs serial", "right", 1, 2), ("limit", "left", 1, 3),
            ("vs model", "right", 1, 8), ("note", "left", 1, None))
_HEADERS = {"startup+prep": "startup\n+prep", "vs serial": "vs\nserial", "vs model": "vs\nmodel"}
TABLE_BEST, TABLE_FULL = "best", "full"
TABLES = (TABLE_BEST, TABLE_FULL)


def case_tables(data: dict, an: analysis.Analysis | None = None, width: int | None = None,
                table: str = TABLE_BEST) -> list[Table]:
    """The cases of each kernel parameter set, as tables that fit `width` columns (None: one
    table with every column) without cutting a cell.

    TABLE_BEST: one row per size and variant, at its fastest worker count; the columns that do
    not fit are left out, and named under the table. TABLE_FULL: every case, and every column:
    where they do not fit side by side, the columns go on in a second table (and a third), each
    repeating n, variant and workers."""
    an = _analysis(data, an)
    idx = analysis.index(data)
    full = table == TABLE_FULL
    tables = []
    for pset in data["sweep"]["param_sets"]:
        pkey = params_key(pset)
        title = data["sweep"]["kernel"] + (f" ({params_text(pset)})" if pset else "")
        cases = sorted((c for c in data["cases"] if params_key(c["params"]) == pkey),
                       key=lambda c: _sort_key(c, data))
        ok = [c for c in cases if c["status"] == "ok"]
        if not full:
            ok = _best_per_size(ok, data)
        rows = [_cells(data, an, idx, c, full) for c in ok]
        notes = _not_ok_lines(data, cases)
        ranks = {name: (rank if full else best) for name, _j, rank, best in _COLUMNS}
        shown = [name for name, r in ranks.items() if r is not None]
        groups, left_out = _fit(shown, ranks, rows, width, split=full)
        if not full:
            notes.insert(0, "each variant at its fastest worker count (xN)"
                         + (f"; left out at this width: {', '.join(left_out)}" if left_out
                            else "")
                         + "; --table full shows every case and column")
        for i, names in enumerate(groups):
            part = f" ({i + 1} of {len(groups)})" if len(groups) > 1 else ""
            t = _table(title + part, names, rows)
            if i == len(groups) - 1 and notes:
                t.caption = "\n".join(notes)
                t.caption_justify = "left"
            tables.append(t)
    return tables


def _best_per_size(cases: list[dict], data: dict) -> list[dict]:
    """Of each variant at each size, the worker count that ran fastest."""
    best: dict[tuple, dict] = {}
    for c in cases:
        key = (c["n"], c["label"])
        if key not in best or analysis.wall(c) < analysis.wall(best[key]):
            best[key] = c
    return sorted(best.values(), key=lambda c: _sort_key(c, data))


def _cells(data: dict, an: analysis.Analysis, idx: dict, c: dict, full: bool) -> dict[str, str]:
    """Every column's text for one case that ran."""
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
    return {"n": fmt_n(c["n"]),
            "variant": (c["label"] if full
                        else analysis.variant_name(c["label"], c["workers"], data)),
            "workers": str(c["workers"]), "startup+prep": fmt_s(startup_s(data, c)),
            "in": fmt_s(ph[phases.TRANSFER_IN]), "compute": fmt_s(ph[phases.COMPUTE]),
            "out": fmt_s(ph[phases.TRANSFER_OUT]),
            "in+out": fmt_s(ph[phases.TRANSFER_IN] + ph[phases.TRANSFER_OUT]),
            "total": fmt_s(s["wall_s"]["median"]), "spread": f"{s['wall_s']['rel_spread']:.0%}",
            "GB/s": f"{tp['gbps']:.3g}", "GFLOP/s": f"{tp['gflops']:.3g}",
            "vs serial": f"{speedup:.2f}x" if speedup is not None else "-",
            "limit": escape(an.limits[key].short) if key in an.limits else "",
            "vs model": f"{ratio:.2f}" if ratio is not None else "-", "note": note}


def _not_ok_lines(data: dict, cases: list[dict]) -> list[str]:
    """Under the table, not a row each: the variants the run limit stopped, in one line by the
    size they stopped at; then one line per variant and worker count that failed, was skipped
    for another reason, or was unavailable."""
    first: dict[tuple, list] = {}
    for c in cases:
        if c["status"] != "ok":
            reason = (c.get("reason") or "").removeprefix(f"{c['status']}: ")
            entry = first.setdefault((c["label"], c["workers"], c["status"]), [[], reason])
            entry[0].append(c["n"])
    cut: dict[int, dict[str, list[int]]] = {}
    lines = []
    for (label, workers, status), (sizes, reason) in sorted(first.items()):
        name = analysis.variant_name(label, workers, data)
        reason = reason.splitlines()[0] if reason else ""
        if len(reason) > 160:
            reason = reason[:157] + "..."
        if status == "skipped" and reason.startswith("predicted "):
            cut.setdefault(min(sizes), {}).setdefault(label, []).append(workers)
            continue
        if status == "skipped":
            text = f"{name}: not run from n={fmt_n(min(sizes))} ({reason or 'skipped'})"
        else:
            text = (f"{name}: {status} at n=" + ", ".join(fmt_n(n) for n in sorted(sizes))
                    + (f" ({reason})" if reason else ""))
        style = {"failed": "red", "unavailable": "yellow"}.get(status)
        lines.append(f"[{style}]{escape(text)}[/]" if style else escape(text))
    if cut:
        def names(by_label):
            return ", ".join(label + "".join(f" x{w}" for w in sorted(ws))
                             if analysis.variant_name(label, 2, data) != label else label
                             for label, ws in sorted(by_label.items()))
        limit = data["sweep"].get("run_limit_s")
        lines.insert(0, escape(f"not run, one run predicted over the run limit ({limit:g} s): "
                               + "; ".join(f"from n={fmt_n(n)}, {names(by_label)}"
                                           for n, by_label in sorted(cut.items()))))
    return lines


def _table(title: str, names: list[str], rows: list[dict]) -> Table:
    # A light frame: a rule under the header and two spaces between columns, so that more
    # columns fit a terminal than with a box drawn around every cell.
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True)
    justify = {name: j for name, j, _r, _b in _COLUMNS}
    for name in names:
        # Figures and words alike never wrap nor shrink: `_fit` keeps the table within width.
        # A header wider than its figures ('vs serial' over '1.96x') takes two lines.
        table.add_column(_HEADERS.get(name, name), justify=justify[name], no_wrap=True,
                         vertical="bottom")
    for row in rows:
        table.add_row(*(row[name] for name in names))
    return table


def _fit(names: list[str], ranks: dict[str, int], rows: list[dict], width: int | None,
         split: bool) -> tuple[list[list[str]], list[str]]:
    """Which columns go in which table so that each fits `width`: the rank-0 columns (n,
    variant) in every one. split: all the others, in order, over as many tables as they need;
    else one table, the others taken by rank while they fit, the rest named as left out."""
    key = [n for n in names if ranks[n] == 0]
    rest = [n for n in names if ranks[n] != 0]
    if width is None:
        return [names], []
    if split:
        groups, current = [], []
        for name in rest:
            if current and _width(key + current + [name], rows) > width:
                groups.append(current)
                current = []
            current.append(name)
        groups.append(current)
        return [[n for n in names if n in key or n in g] for g in groups], []
    kept: list[str] = []
    left_out = []
    for name in sorted(rest, key=lambda n: ranks[n]):
        trial = [n for n in names if n in key or n in kept or n == name]
        if _width(trial, rows) <= width:
            kept.append(name)
        else:
            left_out.append(name)
    return [[n for n in names if n in key or n in kept]], [n for n in names if n in left_out]


def _width(names: list[str], rows: list[dict]) -> int:
    """The columns the table of these columns needs, as rich lays it out."""
    from rich.console import Console
    from rich.measure import Measurement
    probe = Console(width=100_000, file=io.StringIO())
    return Measurement.get(probe, probe.options, _table("", names, rows)).maximum


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
        shown = fmt_s(value) if unit == "s" else \
            f"{value:.3g} {unit.replace('gbps', 'GB/s').replace('gflops', 'GFLOP/s')}"
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


def answer_blocks(data: dict, an: analysis.Analysis | None = None) -> list[tuple[str, list]]:
    """The answer block in words: per parameter set, its name ('polyval, k=2') and (topic,
    sentence) pairs. The
    one place its sentences are written; the terminal, the Markdown and the HTML page lay
    them out."""
    from gpukit.analysis import answer
    an = _analysis(data, an)
    blocks: dict[tuple, tuple[str, list]] = {}
    for item in answer.answer(an):
        pkey = params_key(item.params)
        head = data["sweep"]["kernel"] + (f", {params_text(item.params)}" if item.params
                                          else "")
        _, lines = blocks.setdefault(pkey, (head, []))
        lines.append((item.topic, _answer_text(item, data)))
    out = list(blocks.values())
    if out and not data.get("complete", True):
        why = data.get("note") or "it did not finish"
        text = f"the run stopped early ({why}): this is what it measured before"
        out[0][1].insert(0, ("partial", text))
    return out


def answer_renderables(data: dict, an: analysis.Analysis | None = None) -> list:
    """The answer block for a terminal: each heading, then its topics with the sentences
    wrapped beside them at the console's width."""
    from rich.text import Text
    out = []
    for head, lines in answer_blocks(data, an):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for topic, text in lines:
            grid.add_row(Text(topic), Text(text))
        out += [Text(f"Answer: {head}", style="bold"), grid, Text()]
    return out[:-1]


def _answer_text(item, data: dict) -> str:
    from gpukit.analysis import answer
    facts = item.facts
    if "not_run" in facts:
        return f"not run: {facts['not_run']}"
    return {answer.FAILED: _failed_text, answer.FASTEST: _fastest_text,
            answer.THREADS: _threads_text,
            answer.PROCESSES: _processes_text, answer.GPU: _gpu_text}[item.topic](facts, data)


def _where(x: dict) -> str:
    """A crossover's facts (analysis.Crossover as a dict) as a short phrase: 'from n≈2^19.4
    (about 701k)', 'at every size', 'at no size'; each sentence names the largest size."""
    if x["status"] == "from_start":
        return "at every size"
    if x["status"] == "interpolated":
        return f"from n≈{fmt_n_est(x['n'])}"
    if x["status"] == "never" and x["won_at"]:
        return "only at n=" + ", ".join(fmt_n(n) for n in x["won_at"])
    return "at no size"


def _failed_text(facts: dict, data: dict) -> str:
    n = facts["cases"]
    return (f"{n} case{'s' * (n != 1)}, left out of what follows: "
            + ", ".join(f"{analysis.variant_name(v['label'], v['workers'], data)} from "
                        f"n={fmt_n(v['from_n'])}" for v in facts["variants"])
            + " (the findings say why)")


def _fastest_text(facts: dict, data: dict) -> str:
    winners = facts["winners"]
    if not winners:
        return "no size to compare (see the findings)"
    parts = []
    for i, w in enumerate(winners):
        name = analysis.variant_name(w["label"], w["workers"], data)
        span = (f"n={fmt_n(w['from_n'])}..{fmt_n(w['to_n'])}" if w["to_n"] > w["from_n"]
                else f"n={fmt_n(w['from_n'])}")
        if len(winners) == 1:
            parts.append(f"{name} at every size ({span})")
        elif i == 0:
            parts.append(f"{name} up to n={fmt_n(w['to_n'])}")
        elif not w["interpolated"] and w["from_n"] == w["to_n"] and i < len(winners) - 1:
            parts.append(f"{name} at n={fmt_n(w['from_n'])}")
        else:
            start = (f"n≈{fmt_n_est(w['takes_over_n'])}" if w["interpolated"]
                     else f"n={fmt_n(w['from_n'])}")
            parts.append(f"{name} from {start}"
                         + (f" to {fmt_n(w['to_n'])}" if i < len(winners) - 1 else ""))
    text = "; ".join(parts)
    if facts["left_out"]:
        text += " (some cases left out: see the findings)"
    return text


def _threads_text(facts: dict, data: dict) -> str:
    # NumPy first, then pure Python, then whatever other implementations a kernel brings.
    order = sorted(facts, key=lambda impl: ({"numpy": 0, "python": 1}.get(impl, 2), impl))
    return ". ".join(_thread_variant_text(impl, facts[impl], data) for impl in order)


def _reference(data: dict) -> str:
    return records.reference_backend(data)


def _serialized_text(share: dict | None, impl: str) -> str:
    """The measured serialized share in a few words."""
    if not share:
        return ""
    e = min(1.0, max(0.0, share["serialized_share"]))
    if e < 0.5:
        return f"releases the GIL for about {1 - e:.0%} of its time (measured)"
    if impl in model.MEMORY_SENSITIVE:
        return f"runs serialized about {e:.0%} of its time (measured: the GIL or shared memory)"
    return f"holds the GIL about {e:.0%} of its time (measured)"


def _thread_variant_text(impl: str, v: dict, data: dict) -> str:
    w = v["workers"]
    name = analysis.variant_name(v["label"], w, data)
    held = _serialized_text(v.get("serialized"), impl)
    if "crossover" in v:
        text = (f"{name} beat {_reference(data)}/{impl} {_where(v['crossover'])}; "
                f"{v['speedup']:.2f}x at n={fmt_n(v['n'])}")
        lims = v["limits"]
        if len(lims) == 2 and lims[0]["bound"] == lims[1]["bound"]:
            text += f", {lims[0]['bound']} throughout"
        else:
            text += ", " + ", ".join(f"{lim['bound']} at n={fmt_n(lim['n'])}" for lim in lims)
        if held:
            text += f"; it {held}"
        if v["saturates_at"] is not None:
            s = v["saturates_at"]
            text += f"; no gain beyond {s} thread{'s' * (s != 1)}"
        return text
    one = v["speedup_vs_one_thread"]
    # Against one pool thread where that ran at the same size, else against serial.
    gain, against = ((one, "one thread") if one is not None
                     else (v["speedup"], f"{_reference(data)}/{impl}"))
    if w == 1:
        return f"{name} runs {gain:.2f}x {against} (run more threads to see the GIL)"
    if v["gil_bound"]:
        return f"{name} run {gain:.2f}x {against}: the GIL lets one run at a time"
    if v["gil_enabled"]:
        return (f"{name} run {gain:.2f}x {against}, more than the GIL should allow (see the "
                f"findings)")
    return f"{name} run {gain:.2f}x {against}: this Python has no GIL"


def _processes_text(facts: dict, data: dict) -> str:
    by = facts["by_transfer"]
    same_n = len({v["n"] for v in by.values()}) == 1
    parts = []
    for i, (transfer, v) in enumerate(by.items()):
        at = "" if same_n else f" at n={fmt_n(v['n'])}"
        if i == 0:
            parts.append(f"{transfer} x{v['workers']} spends {v['transfer_share']:.0%} of its "
                         f"time{at} moving data, runs {v['speedup']:.2f}x serial/numpy, ahead "
                         f"of it {_where(v['crossover'])}")
        else:
            parts.append(f"{transfer} x{v['workers']}{at} {v['transfer_share']:.0%}, "
                         f"{v['speedup']:.2f}x, ahead {_where(v['crossover'])}")
    head = f"at n={fmt_n(next(iter(by.values()))['n'])}: " if same_n else ""
    return head + "; ".join(parts)


def _gpu_text(facts: dict, data: dict) -> str:
    n = facts["n"]
    e2e, compute = _where(facts["end_to_end"]), _where(facts["compute"])
    wins = (f"wins {e2e}, end to end and on compute alone" if e2e == compute
            else f"wins end to end {e2e}, on compute alone {compute}")
    return (f"{wins}; at n={fmt_n(n)} {facts['gpu_label']} takes "
            f"{fmt_s(facts['gpu_wall_s'])} ({facts['gpu_transfer_share']:.0%} of it "
            f"transfers) against {fmt_s(facts['cpu_wall_s'])} for "
            f"{analysis.variant_name(facts['cpu_label'], facts['cpu_workers'], data)}")
