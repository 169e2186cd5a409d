"""Pictures of a results dict, drawn with matplotlib's object API on the Agg canvas (no pyplot,
no display, no global state): a pure function of saved results, like every report.

- `timing`: time per run vs n, log-log, one line per variant at its most workers, the band
  the interquartile range of the repetitions;
- `phases`: per variant, the share of each run phase (transfer in, compute, transfer out) at
  chosen sizes, with the time per run and the one-off startup written beside each bar;
- `speedup`: speedup vs workers for every pooled variant at the largest size all counts ran,
  against the ideal;
- `roofline`: each case placed by FLOPs per byte and GFLOP/s of its compute phase against the
  bandwidth and arithmetic ceilings (stored by `gpukit limits`, or the best this run reached).
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

from matplotlib.figure import Figure

from gpukit import analysis, phases
from gpukit.analysis import model
from gpukit.analysis import params_key, params_text
from gpukit.units import fmt_n, fmt_s

FORMATS = ("png", "svg")
NAMES = ("timing", "phases", "speedup", "roofline")
DPI = 110
# Average width of a character of the default sans-serif font, in font sizes: what a line of
# text may hold across a figure (measured: 0.52 for the suptitles here).
CHAR_WIDTH_EM = 0.55

PHASE_COLORS = {phases.TRANSFER_IN: "#4c72b0", phases.COMPUTE: "#55a868",
                phases.TRANSFER_OUT: "#c44e52"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939")


def _colors(labels) -> dict[str, str]:
    return {label: _PALETTE[i % len(_PALETTE)] for i, label in enumerate(sorted(labels))}


def _param_sets(data):
    return [(params_key(p), params_text(p)) for p in data["sweep"]["param_sets"]]


def _title(data, ptxt):
    """The kernel and its parameter set; a kernel without parameters has no parentheses."""
    kernel = data["sweep"]["kernel"]
    return f"{kernel} ({ptxt})" if ptxt else kernel


# No kernel says what its rows are (points, options, bodies...): "n" alone names no wrong unit.
N_LABEL = "n"


def _suptitle(fig: Figure, text: str, fontsize: float = 9) -> None:
    """A figure title wrapped to the figure's width: a one-panel figure is narrower than one
    line of it, and matplotlib would cut it at both edges."""
    width_pt = fig.get_figwidth() * 72
    chars = max(20, int(0.95 * width_pt / (CHAR_WIDTH_EM * fontsize)))
    fig.suptitle(textwrap.fill(text, chars), fontsize=fontsize)


def _grid(count: int, width: float = 6.4, height: float = 4.2, cols: int | None = None):
    cols = cols or min(count, 2)
    rows = max(1, math.ceil(count / cols))
    fig = Figure(figsize=(width * cols, height * rows), dpi=DPI, layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(count)]
    return fig, axes


def _no_data(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


# -- time vs n ---------------------------------------------------------------------------------


def timing(data: dict, an: analysis.Analysis | None = None) -> Figure:
    idx = analysis.index(data)
    psets = _param_sets(data)
    fig, axes = _grid(len(psets))
    colors = _colors({l for (_p, l, _w, _n) in idx})
    for ax, (pkey, ptxt) in zip(axes, psets):
        drawn = False
        for label, w in _timing_lines(idx, pkey):
            cases = analysis.series(idx, pkey, label, w)
            ns = sorted(cases)
            med = [analysis.wall(cases[n]) for n in ns]
            q1 = [cases[n]["summary"]["wall_s"]["q1"] for n in ns]
            q3 = [cases[n]["summary"]["wall_s"]["q3"] for n in ns]
            most = w == analysis.max_workers(idx, pkey, label)
            name = analysis.variant_name(label, w, data)
            style = "--" if analysis.is_gpu(cases[ns[0]], data) else "-" if most else ":"
            ax.plot(ns, med, style, marker="o", ms=3, color=colors[label], label=name)
            if most:
                ax.fill_between(ns, q1, q3, color=colors[label], alpha=0.2, linewidth=0)
            drawn = True
        if not drawn:
            _no_data(ax, "no case ran")
            continue
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(N_LABEL)
        ax.set_ylabel("time per run (s)")
        ax.set_title(_title(data, ptxt) + ": time per run", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    _suptitle(fig, "Median time per run (band: interquartile range of the repetitions; each "
                   "variant at its most workers, dotted: fewer workers where fastest)")
    return fig


def _timing_lines(idx: dict, pkey: tuple) -> list[tuple[str, int]]:
    """Each variant at its most workers, and any other worker count that was the fastest case
    at some size (a finding may name it, so the plot must show it)."""
    lines = {(label, analysis.max_workers(idx, pkey, label))
             for (p, label, _w, _n) in idx if p == pkey}
    by_n: dict[int, list] = {}
    for (p, label, w, n), case in idx.items():
        if p == pkey:
            by_n.setdefault(n, []).append(((label, w), analysis.wall(case)))
    lines |= {min(cands, key=lambda c: c[1])[0] for cands in by_n.values()}
    return sorted(lines)


# -- phase bars --------------------------------------------------------------------------------


def chosen_sizes(data: dict, count: int = 3) -> list[int]:
    """Smallest, middle and largest measured size."""
    sizes = sorted({c["n"] for c in analysis.ok_cases(data)})
    if len(sizes) <= count:
        return sizes
    picks = {sizes[round(i * (len(sizes) - 1) / (count - 1))] for i in range(count)}
    return sorted(picks)


def phase_bars(data: dict, an: analysis.Analysis | None = None,
               sizes: list[int] | None = None) -> Figure:
    from gpukit.reporting.tables import startup_s
    idx = analysis.index(data)
    psets = _param_sets(data)
    sizes = sizes or chosen_sizes(data)
    panels = [(pkey, ptxt, n) for pkey, ptxt in psets for n in sizes]
    fig, axes = _grid(max(1, len(panels)), width=6.0, height=3.6, cols=max(1, len(sizes)))
    for ax, (pkey, ptxt, n) in zip(axes, panels):
        rows = []
        for label in sorted({l for (p, l, _w, m) in idx if p == pkey and m == n}, reverse=True):
            w = max(ww for (p, l, ww, m) in idx if p == pkey and l == label and m == n)
            rows.append((label + (f" x{w}" if w > 1 else ""), idx[(pkey, label, w, n)]))
        if not rows:
            _no_data(ax, f"n={fmt_n(n)}: no case ran")
            continue
        for y, (_label, case) in enumerate(rows):
            ph = analysis.run_phases(case, data)
            total = sum(ph.values()) or 1.0
            left = 0.0
            for phase_name in phases.RUN_PHASES:
                share = ph[phase_name] / total
                ax.barh(y, share, left=left, color=PHASE_COLORS[phase_name], height=0.7,
                        label=phase_name if y == 0 else None)
                left += share
            start = startup_s(data, case)
            note = f"{fmt_s(analysis.wall(case))}/run"
            if start:
                note += f"; startup + prepare {fmt_s(start)} once"
            ax.text(1.02, y, note, va="center", fontsize=7)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of a run", fontsize=8)
        ax.set_title(f"{_title(data, ptxt)}, n={fmt_n(n)}", fontsize=9)
    if axes:
        axes[0].legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.08), ncols=3,
                       frameon=False)
    _suptitle(fig, "Where each run's time goes (bars: phase shares; text: time per run and the "
                   "session's one-off startup)")
    return fig


# -- speedup vs workers ------------------------------------------------------------------------


def speedup(data: dict, an: analysis.Analysis | None = None) -> Figure:
    idx = analysis.index(data)
    psets = _param_sets(data)
    fig, axes = _grid(len(psets))
    colors = _colors({l for (_p, l, _w, _n) in idx})
    cores = model.cores(data)
    for ax, (pkey, ptxt) in zip(axes, psets):
        results = [s for s in (analysis.scaling(idx, pkey, l)
                               for l in sorted({l for (p, l, _w, _n) in idx if p == pkey}))
                   if s is not None]
        if not results:
            _no_data(ax, "no variant ran at more than one worker count")
            continue
        top = max(max(s.workers) for s in results)
        ax.plot([1, top], [1, top], ":", color="#444", label="ideal")
        for s in results:
            ax.plot(s.workers, s.speedup, marker="o", ms=4, color=colors[s.label],
                    label=f"{s.label} (n={fmt_n(s.n)})")
        if cores <= top:
            ax.axvline(cores, color="#999", linewidth=0.8)
            ax.text(cores, ax.get_ylim()[1], f" {cores} cores", fontsize=7, va="top")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({w for s in results for w in s.workers}),
                      [str(w) for w in sorted({w for s in results for w in s.workers})])
        ax.set_xlabel("workers")
        ax.set_ylabel("speedup vs 1 worker")
        ax.set_title(_title(data, ptxt) + ": speedup at the largest common n", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return fig


# -- roofline ----------------------------------------------------------------------------------


def _roofs(data, ceil: model.Ceilings):
    """(kind, label, value): 'bw' lines in GB/s and 'flops' lines in GFLOP/s."""
    cores = model.cores(data)
    roofs = []

    def src(name):
        return "" if ceil.sources.get(name) == model.LIMITS_SOURCE else ", this run's best"

    bw1, bw_all = ceil.get("host_copy_1t_gbps"), ceil.get("host_copy_all_gbps")
    if bw1:
        roofs.append(("bw", f"host memory, 1 core{src('host_copy_1t_gbps')}", bw1))
    if bw_all:
        roofs.append(("bw", f"host memory, all cores{src('host_copy_all_gbps')}", bw_all))
    rate = ceil.get("host_numpy_1t_gflops")
    if rate:
        roofs.append(("flops", f"NumPy, 1 core{src('host_numpy_1t_gflops')}", rate))
        if cores > 1:
            roofs.append(("flops", f"NumPy, {cores} cores", rate * cores))
    if ceil.get("d2d_gbps"):
        roofs.append(("bw", f"GPU memory{src('d2d_gbps')}", ceil.get("d2d_gbps")))
    if ceil.get("fma_gflops"):
        roofs.append(("flops", f"GPU FMA{src('fma_gflops')}", ceil.get("fma_gflops")))
    if ceil.get("h2d_pinned_gbps"):
        roofs.append(("bw", f"PCIe pinned (data from the host){src('h2d_pinned_gbps')}",
                      ceil.get("h2d_pinned_gbps")))
    return roofs


def roofline(data: dict, an: analysis.Analysis | None = None) -> Figure:
    an = an if an is not None else analysis.analyze(data)
    idx = analysis.index(data)
    fig = Figure(figsize=(8.0, 5.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    if not idx:
        _no_data(ax, "no case ran")
        return fig
    colors = _colors({l for (_p, l, _w, _n) in idx})
    markers = dict(zip(sorted({p for (p, _l, _w, _n) in idx}), "os^Dv<>"))
    # Each series at its largest size: where it runs in its steadiest state.
    last: dict[tuple, tuple] = {}
    for key in idx:
        p, label, w, n = key
        if (p, label, w) not in last or n > last[(p, label, w)][3]:
            last[(p, label, w)] = key
    xs, ys = [], []
    for key in sorted(last.values()):
        p, label, w, n = key
        case = idx[key]
        clock = analysis.device_phase if analysis.is_gpu(case, data) else analysis.phase
        t = clock(case, phases.COMPUTE)
        if t <= 0:
            continue
        x, y = analysis.intensity(case), case["work"]["flops"] / t / 1e9
        xs.append(x)
        ys.append(y)
        widest = max(ww for (pp, ll, ww) in last if pp == p and ll == label)
        ax.scatter([x], [y], color=colors[label], marker=markers[p], s=28 + 6 * math.log2(w),
                   label=(label + (f" ({params_text(dict(p))})" if p else ""))
                   if w == widest else None,
                   edgecolors="black", linewidths=0.4, zorder=3)
    roofs = _roofs(data, an.ceilings)
    lo_x = min(xs) / 4 if xs else 0.01
    hi_x = max(xs) * 4 if xs else 100
    top = max((v for kind, _t, v in roofs if kind == "flops"), default=None)
    labels = []
    for kind, text, value in roofs:
        if kind == "bw":
            # A bandwidth roof rises until it meets the highest arithmetic roof.
            x_end = min(hi_x, top / value) if top else hi_x
            ax.plot([lo_x, x_end], [value * lo_x, value * x_end], "-", color="#555",
                    linewidth=0.9)
            labels.append(ax.annotate(f"{text}: {value:.3g} GB/s",
                                      (lo_x * 1.15, value * lo_x * 1.3), xytext=(0, 0),
                                      textcoords="offset points", fontsize=6.5, color="#333"))
        else:
            ax.axhline(value, color="#555", linewidth=0.9, linestyle="--")
            labels.append(ax.annotate(f"{text}: {value:.3g} GFLOP/s", (hi_x / 1.1, value * 1.08),
                                      xytext=(0, 0), textcoords="offset points", fontsize=6.5,
                                      ha="right", color="#333"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo_x, hi_x)
    ax.set_xlabel("arithmetic intensity (FLOPs per byte to and from memory)")
    ax.set_ylabel("GFLOP/s in the compute phase")
    lacking = [n for n in ("host_copy_1t_gbps", "host_numpy_1t_gflops", "d2d_gbps", "fma_gflops")
               if n in an.ceilings.lacking]
    title = "Roofline: each variant at its largest size (bigger marker: more workers)"
    if lacking:
        title += f"\nlacking ceilings: {', '.join(lacking)}"
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    _keep_apart(fig, labels)
    return fig


def _keep_apart(fig: Figure, labels) -> None:
    """Move roof labels up until none overlaps another.

    Two roofs a few percent apart (one core's and all cores' memory bandwidth on a machine whose
    one core nearly fills the bus) put their labels on the same spot. Where each lands on screen
    is known only after the layout, so the figure is laid out first; the labels stay out of the
    layout, so moving them does not move the axes."""
    if len(labels) < 2:
        return
    for label in labels:
        label.set_in_layout(False)
    fig.draw_without_rendering()
    renderer = fig._get_renderer()
    placed = []
    gap_px = 1.0
    for label in sorted(labels, key=lambda t: t.get_window_extent(renderer).y0):
        box = label.get_window_extent(renderer)
        lift = 0.0
        for other in placed:
            overlaps_x = box.x0 < other.x1 and other.x0 < box.x1
            if overlaps_x and box.y0 + lift < other.y1 + gap_px and other.y0 < box.y1 + lift:
                lift = other.y1 + gap_px - box.y0
        if lift:
            dx, dy = label.xyann
            label.xyann = (dx, dy + lift * 72.0 / fig.dpi)
            box = label.get_window_extent(renderer)
        placed.append(box)


# -- all of them -------------------------------------------------------------------------------

_DRAW = {"timing": timing, "phases": phase_bars, "speedup": speedup, "roofline": roofline}


def figures(data: dict, an: analysis.Analysis | None = None) -> dict[str, Figure]:
    an = an if an is not None else analysis.analyze(data)
    return {name: _DRAW[name](data, an) for name in NAMES}


def render(fig: Figure, fmt: str = "png") -> bytes:
    buf = io.BytesIO()
    # svg: keep text as text (searchable, small); the date stamp would make every file differ.
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def write_all(data: dict, out_dir: str | Path, an: analysis.Analysis | None = None,
              prefix: str = "", formats: tuple[str, ...] = FORMATS,
              figs: dict[str, Figure] | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in (figs if figs is not None else figures(data, an)).items():
        for fmt in formats:
            path = out_dir / f"{prefix}{name}.{fmt}"
            path.write_bytes(render(fig, fmt))
            paths.append(path)
    return paths
