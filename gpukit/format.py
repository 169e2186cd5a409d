"""Human-readable views of a results dict. Builds rich renderables and lines; never measures."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from gpukit import analysis, phases
from gpukit.analysis import fmt_n, params_key, params_text


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _startup_s(data: dict, case: dict) -> float | None:
    sid = case.get("session")
    session = next((s for s in data["sessions"] if s["id"] == sid), None)
    if session is None or session["startup"] is None:
        return None
    total = session["startup"]["total_s"]
    return total + case.get("prepare", {}).get("total_s", 0.0)


def _sort_key(case: dict):
    return (case["n"], case["backend"] not in ("serial",), case["label"], case["workers"])


def case_tables(data: dict) -> list[Table]:
    """One table per kernel parameter set: phases, total, throughput, speedup."""
    idx = analysis.index(data)
    tables = []
    for pset in data["sweep"]["param_sets"]:
        pkey = params_key(pset)
        table = Table(title=f"{data['sweep']['kernel']} ({params_text(pset)})", title_justify="left",
                      header_style="bold")
        for name, justify in (("n", "right"), ("variant", "left"), ("workers", "right"),
                              ("startup", "right"), ("in", "right"), ("compute", "right"),
                              ("out", "right"), ("total", "right"), ("spread", "right"),
                              ("GB/s", "right"), ("GFLOP/s", "right"), ("vs serial", "right")):
            table.add_column(name, justify=justify, no_wrap=True)
        cases = sorted((c for c in data["cases"] if params_key(c["params"]) == pkey), key=_sort_key)
        for c in cases:
            head = [fmt_n(c["n"]), c["label"], str(c["workers"])]
            if c["status"] != "ok":
                style = {"failed": "red", "skipped": "dim", "unavailable": "yellow"}.get(c["status"])
                reason = c.get("reason") or c["status"]
                if not reason.startswith(c["status"]):
                    reason = f"{c['status']}: {reason}"
                table.add_row(*head, f"[{style}]{escape(reason)}[/]" if style else escape(reason),
                              *[""] * 8)
                continue
            tp = analysis.throughput(c)
            speedup = analysis.speedup_vs_baseline(idx, c)
            s = c["summary"]
            table.add_row(*head, fmt_s(_startup_s(data, c)),
                          fmt_s(s["phases_s"][phases.TRANSFER_IN]["median"]),
                          fmt_s(s["phases_s"][phases.COMPUTE]["median"]),
                          fmt_s(s["phases_s"][phases.TRANSFER_OUT]["median"]),
                          fmt_s(s["wall_s"]["median"]),
                          f"{s['wall_s']['rel_spread']:.0%}",
                          f"{tp['gbps']:.3g}", f"{tp['gflops']:.3g}",
                          f"{speedup:.2f}x" if speedup is not None else "-")
        tables.append(table)
    return tables


def backend_lines(data: dict) -> list[str]:
    lines = []
    for name, entry in data["backends"].items():
        if entry.get("available"):
            facts = entry.get("facts") or {}
            extra = f" ({facts['device']})" if facts.get("device") else ""
            lines.append(f"{name}: available{extra}")
        else:
            lines.append(f"{name}: unavailable: {entry.get('reason')}")
    return lines


def machine_lines(data: dict) -> list[str]:
    m = data["machine"]
    gpu = m.get("gpu", {}).get("device")
    start = next((s["startup"]["facts"].get("start_method") for s in data["sessions"]
                  if s.get("startup") and s["startup"]["facts"].get("start_method")), None)
    line = (f"{m['cpu']}, {m['cores']} cores, Python {m['python']} "
            f"(GIL {'on' if m['gil_enabled'] else 'off'}), NumPy {m['numpy']}")
    if gpu:
        line += f"; GPU {gpu}"
    if start:
        line += f"; process start method {start}"
    return [line]


def finding_lines(data: dict) -> list[str]:
    return [f.text for f in analysis.findings(data)]


def status_counts(data: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in data["cases"]:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    return counts
