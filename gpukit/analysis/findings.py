"""The findings: each a sentence with its figures (`Finding`), computed once per run with
the case limits and the model's verdicts (`analyze`)."""

from __future__ import annotations

import dataclasses
import math

from gpukit import phases, records
from gpukit.analysis import model
from gpukit.results import SKIPPED_AFTER_FAILURE
from gpukit.analysis.case_limits import DOMINANT_SHARE, GIL_SPEEDUP, footprint, limits
from gpukit.analysis.cases import (MIN_CHANGE, baseline_labels, case_text, device_phase,
                                   index, is_gpu, max_workers, noise_bar,
                                   params_key, params_text, phase, series, transfer_share,
                                   variant_name, wall, beyond)
from gpukit.units import fmt_n, fmt_n_est, fmt_s
from gpukit.analysis.crossovers import crossover, crossover_of_cases, scaling, walls
from gpukit.analysis.noise import assess, finding_text

# One pool thread this much faster or slower than serial: the threads differ, not the count.
ONE_THREAD_APART = 1.3


@dataclasses.dataclass(frozen=True)
class Finding:
    topic: str
    text: str
    numbers: dict
    params: dict | None = None   # the parameter set it speaks of; None for the whole run


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Everything a report shows, computed once from a results dict and its ceilings."""

    data: dict
    ceilings: model.Ceilings
    verdicts: dict
    limits: dict
    findings: list


def analyze(data: dict, stored_ceilings: dict | None = None) -> Analysis:
    ceil = model.resolve(data, stored_ceilings)
    verdicts = model.predict_all(data, ceil)
    lims = limits(data, ceil)
    return Analysis(data, ceil, verdicts, lims, _findings(data, ceil, verdicts))


def all_findings(data: dict, stored_ceilings: dict | None = None) -> list[Finding]:
    return analyze(data, stored_ceilings).findings


def _findings(data, ceil, verdicts) -> list[Finding]:
    idx = index(data)
    out: list[Finding] = _failure_findings(data) + _noise_findings(data)
    for pset in data["sweep"]["param_sets"]:
        start = len(out)
        pkey = params_key(pset)
        # Each finding opens with its parameter set ("[k=2] "), or nothing for a kernel without one.
        ptxt = f"[{params_text(pset)}] " if pset else ""
        out.extend(_fastest_findings(idx, pkey, ptxt, data))
        out.extend(_threads_findings(idx, pkey, ptxt, data, ceil))
        for rule in (_process_findings, _mpi_findings):
            out.extend(rule(idx, pkey, ptxt, data))
        out.extend(_scaling_findings(idx, pkey, ptxt, data, ceil))
        out.extend(_gpu_findings(data, idx, pkey, ptxt))
        out[start:] = [dataclasses.replace(f, params=pset) for f in out[start:]]
    out.extend(_model_findings(data, ceil, verdicts))
    return out


def _noise_findings(data: dict) -> list[Finding]:
    """First among the findings: a machine too busy to trust makes every other one doubtful."""
    noise = assess(data)
    text = finding_text(noise)
    return [Finding("noise", text, noise.to_json())] if text else []


def _failure_findings(data: dict) -> list[Finding]:
    """Failed cases first: every other finding leaves them out, so it must not read as whole."""
    first: dict[tuple, dict] = {}
    for c in data["cases"]:
        if c.get("status") == "failed":
            key = (params_key(c["params"]), c["label"], c["workers"])
            if key not in first or c["n"] < first[key]["n"]:
                first[key] = c
    if not first:
        return []
    parts = []
    for (pkey, label, w), c in sorted(first.items(), key=lambda kv: (kv[0], kv[1]["n"])):
        ptxt = f"[{params_text(dict(pkey))}] " if pkey else ""
        reason = (c.get("reason") or "").split(": ", 1)[-1]
        parts.append(f"{ptxt}{variant_name(label, w, data)} from n={fmt_n(c['n'])} "
                     f"({reason[:120]}{'...' if len(reason) > 120 else ''})")
    failed = sum(c.get("status") == "failed" for c in data["cases"])
    return [Finding("failed", f"failed: {failed} case{'s' * (failed != 1)}, which the findings "
                    f"below leave out: " + "; ".join(parts) + ".",
                    {"failed": failed, "first": [{"label": k[1], "workers": k[2], "n": c["n"]}
                                                 for k, c in first.items()]})]


@dataclasses.dataclass
class _Stretch:
    """Sizes from_n..to_n over which one variant stays the fastest."""

    variant: tuple[str, int]     # label, workers
    from_n: int
    to_n: int
    tied: dict[tuple[str, int], list[int]]   # variant -> sizes where it was ahead, within noise


def _fastest_stretches(idx, pkey, sizes) -> list[_Stretch]:
    """The winner at each size, kept until another variant beats it by more than MIN_CHANGE and
    both their spreads: a gap inside the noise is a tie, not a switch, so the finding does not
    flip back and forth between two variants that run about the same."""
    stretches: list[_Stretch] = []
    for n in sizes:
        cands = {(l, w): c for (p, l, w, m), c in idx.items() if p == pkey and m == n}
        best = min(cands, key=lambda lw: (wall(cands[lw]), lw))
        held = stretches[-1].variant if stretches else None
        if held in cands and not beyond(wall(cands[held]) / wall(cands[best]),
                                        noise_bar(cands[held], cands[best])):
            stretches[-1].to_n = n
            if best != held:
                stretches[-1].tied.setdefault(best, []).append(n)
        else:
            stretches.append(_Stretch(best, n, n, {}))
    return stretches


def _unfinished_sizes(data: dict, pkey: tuple) -> set[int]:
    """In a run that was interrupted, the sizes where some variant has no record at all (not
    even failed or skipped): the run stopped inside them, so "fastest" there would only be the
    fastest of what happened to run first."""
    if data.get("complete", True):
        return set()
    records: dict[int, set] = {}
    for c in data["cases"]:
        if params_key(c["params"]) == pkey:
            records.setdefault(c["n"], set()).add((c["label"], c["workers"]))
    every = set().union(*records.values()) if records else set()
    return {n for n, seen in records.items() if seen != every}


def _cut_sizes(data: dict, idx: dict, pkey: tuple) -> set[int]:
    """Sizes where the run limit stopped some variant and every case that did run there took
    longer than the limit: the stopped ones were predicted slower than the limit, not slower
    than those, so nothing says which would have won."""
    limit_s = data["sweep"].get("run_limit_s")
    if not limit_s:
        return set()
    cut = {c["n"] for c in data["cases"] if params_key(c["params"]) == pkey
           and c.get("status") == "skipped"
           and not (c.get("reason") or "").startswith(SKIPPED_AFTER_FAILURE)}
    return {n for n in cut
            if min((wall(c) for (p, _l, _w, m), c in idx.items() if p == pkey and m == n),
                   default=0.0) > limit_s}


def _failed_sizes(data: dict, pkey: tuple) -> tuple[dict[int, list], list]:
    """Sizes where a variant that ran elsewhere failed (or was skipped after failing), with the
    variants; and the variants that ran nowhere. At such a size "fastest" would be the fastest
    of the rest, and a variant that won below it would seem to be overtaken there. A variant
    skipped by the run limit would have been slower than the limit, so it is absent rightly."""
    ran, unknown = set(), {}
    for c in data["cases"]:
        if params_key(c["params"]) != pkey:
            continue
        variant = (c["label"], c["workers"])
        status, reason = c.get("status"), c.get("reason") or ""
        if status == "ok":
            ran.add(variant)
        elif status == "failed" or (status == "skipped"
                                    and reason.startswith(SKIPPED_AFTER_FAILURE)):
            unknown.setdefault(variant, set()).add(c["n"])
    sizes: dict[int, list] = {}
    for variant, ns in sorted(unknown.items()):
        for n in ns if variant in ran else ():
            sizes.setdefault(n, []).append(variant)
    return sizes, sorted(v for v in unknown if v not in ran)


def _left_out_notes(data, unfinished, failed, never, cut=()) -> list[str]:
    notes = []
    if cut:
        notes.append("left out, where the run limit stopped other variants and what ran took "
                     "longer than the limit: n=" + ", ".join(fmt_n(n) for n in sorted(cut)))
    if unfinished:
        notes.append("left out, where the interrupted run stopped: n="
                     + ", ".join(fmt_n(n) for n in sorted(unfinished)))
    if failed:
        variants = sorted({v for vs in failed.values() for v in vs})
        notes.append("left out, where a case failed: n="
                     + ", ".join(fmt_n(n) for n in sorted(failed)) + " ("
                     + ", ".join(variant_name(*v, data) for v in variants) + ")")
    if never:
        notes.append(", ".join(variant_name(*v, data) for v in never)
                     + f" failed wherever {'it was' if len(never) == 1 else 'they were'} tried")
    return notes


def _fastest_findings(idx, pkey, ptxt, data):
    unfinished = _unfinished_sizes(data, pkey)
    failed, never = _failed_sizes(data, pkey)
    cut = _cut_sizes(data, idx, pkey) - unfinished - set(failed)
    left_out = _left_out_notes(data, unfinished, failed, never, cut)
    sizes = sorted({n for (p, _l, _w, n) in idx if p == pkey} - unfinished - set(failed) - cut)
    if not sizes:
        if not left_out:
            return []
        return [Finding("fastest", f"{ptxt}fastest: no size to compare ({'; '.join(left_out)}).",
                        {"winners": [], "switches": [], "left_out": left_out})]
    stretches = _fastest_stretches(idx, pkey, sizes)
    parts = []
    switches = []
    for i, st in enumerate(stretches):
        (label, w), lo, hi = st.variant, st.from_n, st.to_n
        name = variant_name(label, w, data)
        tied = "; ".join(f"{variant_name(*lw, data)} at n=" + ", ".join(fmt_n(n) for n in ns)
                         for lw, ns in st.tied.items())
        if i == 0 and len(stretches) == 1:
            part = (f"{name} at every size{' compared' * bool(left_out)} ("
                    + (f"n={fmt_n(lo)}..{fmt_n(hi)}" if hi > lo else f"n={fmt_n(lo)}")
                    + (f"; tied with {tied}" if tied else "") + ")")
        elif i == 0:
            part = f"{name} up to n={fmt_n(hi)}"
        else:
            (prev_label, prev_w), prev_hi = stretches[i - 1].variant, stretches[i - 1].to_n
            x = crossover({n: t for n, t in walls(series(idx, pkey, prev_label, prev_w)).items()
                           if n in (prev_hi, lo)},
                          {n: t for n, t in walls(series(idx, pkey, label, w)).items()
                           if n in (prev_hi, lo)})
            where = f"n≈{fmt_n_est(x.n)}" if x.status == "interpolated" else f"n={fmt_n(lo)}"
            part = f"{name} from {where}" + (f" to {fmt_n(hi)}" if i < len(stretches) - 1 else "")
            switches.append({"from": prev_label, "to": label, "workers": w, "measured_n": lo,
                             "n": x.n if x.status == "interpolated" else lo,
                             "interpolated": x.status == "interpolated"})
        if tied and len(stretches) > 1:
            part += f" (tied with {tied})"
        parts.append(part)
    notes = []
    if switches:
        notes.append("switch points interpolated on log n between measured sizes")
    notes.extend(left_out)
    if any(st.tied for st in stretches):
        notes.append(f"tied: a gap under {MIN_CHANGE:.0%} or inside either one's spread, where "
                     f"the earlier winner is kept")
    text = (f"{ptxt}fastest: " + "; ".join(parts)
            + (f" ({'; '.join(notes)})" if notes else "") + ".")
    winners = [{"label": st.variant[0], "workers": st.variant[1], "from_n": st.from_n,
                "to_n": st.to_n,
                "tied": [{"label": tl, "workers": tw, "n": ns} for (tl, tw), ns in st.tied.items()]}
               for st in stretches]
    return [Finding("fastest", text, {"winners": winners, "switches": switches,
                                      "left_out": left_out})]


def _backends_with(data: dict, workers: str) -> list[tuple[str, records.BackendTraits]]:
    """The run's backends whose workers are `workers` (threads, processes, ranks)."""
    return [(name, t) for name in model.backend_names(data)
            for t in [records.backend_traits(data, name)] if t.workers == workers]


def _pct_range(lo: float, hi: float) -> str:
    lo_t, hi_t = f"{lo:.0%}", f"{hi:.0%}"
    return lo_t if lo_t == hi_t else f"{lo_t[:-1]}-{hi_t}"


def share_text(share, impl: str) -> str:
    """A thread variant's measured serialized share in words: how much of its time it holds the
    GIL (or, for an implementation whose threads share memory bandwidth, runs serialized), the
    repetitions' spread, and what its released time does beyond the cores."""
    e, lo, hi = (min(1.0, max(0.0, v)) for v in (share.share, share.low, share.high))
    counts = ", ".join(map(str, share.workers))
    where = f"from {counts} threads against one at n={fmt_n(share.n)}"
    if e >= 0.5:
        amount = "all" if f"{e:.0%}" == "100%" else f"about {e:.0%}"
        spread = _pct_range(lo, hi)
        if impl in model.MEMORY_SENSITIVE:
            text = (f"runs serialized {amount} of its time (the GIL, or the memory bandwidth its "
                    f"threads share; {spread} over the repetitions, {where})")
        else:
            text = f"holds the GIL {amount} of its time ({spread} over the repetitions, {where})"
    else:
        text = (f"releases the GIL for about {1 - e:.0%} of its time ({_pct_range(1 - hi, 1 - lo)}"
                f" over the repetitions, {where})")
    slower = share.contention()
    if slower is not None:
        worst = max((w for w in share.per_count if w <= share.cores), key=share.per_count.get)
        text += (f", and its threads fight over it: {worst} threads took {slower:.2f}x one "
                 f"thread's time")
    if share.waiting is not None:
        if share.waiting >= 0.5:
            text += (f"; what it releases mostly waits rather than computes (about "
                     f"{share.waiting:.0%}: sleep, I/O), so threads beyond the {share.cores} "
                     f"cores still gain")
        else:
            text += (f"; what it releases computes, so threads beyond the {share.cores} cores "
                     f"gain nothing")
    return text


def _threads_findings(idx, pkey, ptxt, data, ceil=None):
    reference = records.reference_backend(data)
    found = []
    for backend, pool in _backends_with(data, records.THREAD) if reference else ():
        found.extend(_thread_pool_findings(idx, pkey, ptxt, data, ceil, backend, pool, reference))
    return found


def _thread_pool_findings(idx, pkey, ptxt, data, ceil, backend, pool, reference):
    found = []
    prefix = f"{backend}/"
    labels = sorted({l for (p, l, _w, _n) in idx if p == pkey and l.startswith(prefix)},
                    key=lambda l: (l != f"{prefix}python", l))
    for label in labels:
        impl = label.split("/")[1]
        w = max_workers(idx, pkey, label)
        serial = series(idx, pkey, f"{reference}/{impl}", 1)
        threads = series(idx, pkey, label, w) if w else {}
        common = sorted(set(serial) & set(threads))
        if not common:
            continue
        n = common[-1]
        speedup = wall(serial[n]) / wall(threads[n])
        numbers = {"impl": impl, "label": label, "workers": w, "n": n, "speedup": speedup}
        share = ceil.shares.get((pkey, label)) if ceil else None
        numbers["serialized"] = share.to_json() if share else None
        one = series(idx, pkey, label, 1).get(n)
        head = (f"{ptxt}{label} on {w} thread{'s' * (w != 1)}: "
                f"{speedup:.2f}x {reference}/{impl}")
        if share is None and impl in model.GIL_HOLDING:
            # No one-thread run beside more threads to measure the share from: judged by the
            # gain, against the GIL this implementation holds by its kind.
            vs_one = wall(one) / wall(threads[n]) if one is not None and w > 1 else None
            numbers["speedup_vs_one_thread"] = vs_one
            gain = vs_one if vs_one is not None else speedup
            gil_on = data["machine"].get("gil_enabled", True)
            if w == 1:
                verdict = "one thread only: run more threads to see the GIL"
            elif gain < GIL_SPEEDUP:
                verdict = "GIL-bound: one thread runs at a time"
            elif gil_on:
                spread = threads[n]["summary"]["wall_s"]["rel_spread"]
                verdict = (f"more than the GIL should allow, with the GIL on: parts of the loop "
                           f"may release it (C calls, I/O), or check the noise (spread "
                           f"{spread:.0%})")
            else:
                verdict = "it scales: this Python runs without the GIL"
            text = (head + (f", {vs_one:.2f}x one thread" if vs_one is not None else "")
                    + f" at n={fmt_n(n)} ({verdict}).")
        else:
            x = crossover_of_cases(serial, threads)
            numbers["crossover"] = dataclasses.asdict(x)
            numbers["crossover_n"] = x.n
            held = (f"; it {share_text(share, impl)};" if share is not None else
                    " (no one-thread run beside more threads to measure its serialized share);")
            text = f"{head} at n={fmt_n(n)}{held} threads beat serial {x.text()}."
            if one is not None and w > 1:
                text += _one_thread_text(one, serial[n], n, numbers, data, ceil, pool)
        found.append(Finding("threads", text, numbers))
    return found


def _one_thread_text(one: dict, serial: dict, n: int, numbers: dict, data: dict, ceil,
                     pool: records.BackendTraits) -> str:
    """Why one pool thread runs apart from serial, where it does: the same work on one thread
    either way, so what differs is the pool's round trips, the chunking or the thread itself."""
    apart = wall(serial) / wall(one)
    numbers["one_thread_vs_serial"] = apart
    chunks = model.chunks_per_worker(data, n)
    # Only a round trip `gpukit limits` measured: one derived from this run is this very gap
    # (one pool thread minus serial at the smallest size), which would explain itself.
    name = pool.dispatch_s
    round_trip = (ceil.get(name) if name and ceil and ceil.sources.get(name) == model.LIMITS_SOURCE
                  else None)
    gap = wall(one) - wall(serial)
    head = (f" One pool thread alone already runs {apart:.2f}x serial "
            f"({fmt_s(wall(one))} against {fmt_s(wall(serial))})")
    if (apart <= 1 / ONE_THREAD_APART and round_trip is not None
            and round_trip * chunks >= DOMINANT_SHARE * gap):
        # A small problem: handing the tasks to a thread and back is most of it.
        numbers["one_thread_gap_is_dispatch"] = True
        tasks = f" times {chunks} tasks" if chunks > 1 else ""
        return (f"{head}: at this size the pool's round trip per task ({fmt_s(round_trip)}, "
                f"from `gpukit limits`){tasks} is most of that gap, so each task needs far "
                f"more work than that before threads can pay.")
    if 1 / ONE_THREAD_APART < apart < ONE_THREAD_APART:
        return ""
    if chunks > 1:
        # --chunks-per-worker C: one pool thread makes C calls where serial makes one, so the
        # two no longer do the same work on different threads.
        numbers["one_thread_chunks"] = chunks
        why = ("and each pays the implementation's per-call costs again (a NumPy loop over a "
               "fixed number of steps, such as mandelbrot's max_iter, runs them over every "
               "chunk)" if apart < 1 else
               f"each {chunks} times smaller, which can stay in a cache that all n rows "
               f"overflow")
        return (f"{head}: with --chunks-per-worker {chunks} it works through {chunks} chunks "
                f"where serial makes one call, {why}; so that gap mixes the chunking with the "
                f"pool thread (--chunks-per-worker 1 shows the thread alone).")
    base = (f" One pool thread alone already runs {apart:.2f}x serial on the same work, so that "
            f"much of the threads' figure is the pool thread, not the number of threads (the "
            f"scaling finding, which compares against one pool thread, shows the count alone")
    if (data["machine"].get("malloc") or {}).get("thresholds_fixed"):
        # gpukit held the allocator steady (gpukit.allocator), so that is not it: what differs
        # is the thread itself, its core and caches.
        return base + "; gpukit held the allocator steady, so it is not page faults)."
    # Same work, one thread either way: what differs is the thread. One known cause (others,
    # such as caches, are possible): glibc hands the main thread's large temporaries back to
    # the system on every free (its heap is trimmed, or they were mmapped), so each new one
    # faults its pages in again; a pool thread's heap keeps them. Measured here: np.exp on
    # 2^16 float32 in a loop ran 1.34x slower on the main thread, 1.03x with
    # MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_ raised, which gpukit now does unless
    # --default-malloc.
    return base + ("; glibc's malloc was left to its own thresholds here (--default-malloc), so "
                   "the main thread's large temporaries may pay page faults a pool thread's "
                   "do not: reuse buffers with out=).")


def _process_findings(idx, pkey, ptxt, data):
    base = baseline_labels(data)[:1]
    return [f for backend, _t in _backends_with(data, records.PROCESS) for label in base
            for f in _process_pool_findings(idx, pkey, ptxt, data, backend, label)]


def _process_pool_findings(idx, pkey, ptxt, data, backend, base):
    serial = series(idx, pkey, base, 1)
    parts, numbers = [], {}
    prefix = f"{backend}/numpy/"
    for label in sorted({l for (p, l, _w, _n) in idx if p == pkey and l.startswith(prefix)}):
        transfer = label.rsplit("/", 1)[-1]
        w = max_workers(idx, pkey, label)
        cases = series(idx, pkey, label, w)
        common = sorted(set(cases) & set(serial))
        if not common:
            continue
        n = common[-1]
        speedup = wall(serial[n]) / wall(cases[n])
        share = transfer_share(cases[n], data)
        x = crossover_of_cases(serial, cases)
        numbers[transfer] = {"workers": w, "n": n, "speedup": speedup, "transfer_share": share,
                             "crossover": dataclasses.asdict(x), "crossover_n": x.n}
        parts.append(f"{transfer}: {speedup:.2f}x {base} at n={fmt_n(n)} on {w} "
                     f"process{'es' * (w != 1)}, {share:.0%} of it moving data, ahead of serial "
                     f"{x.text()}")
    if not parts:
        return []
    return [Finding("processes", f"{ptxt}{backend}/numpy " + "; ".join(parts) + ".", numbers)]


def _mpi_findings(idx, pkey, ptxt, data):
    base = baseline_labels(data)[:1]
    return [f for backend, _t in _backends_with(data, records.RANK) for label in base
            for f in _rank_findings(idx, pkey, ptxt, data, f"{backend}/numpy", label)]


def _rank_findings(idx, pkey, ptxt, data, label, base):
    """Does splitting over R ranks pay, and what does moving the data cost: at the largest n,
    each rank count against serial NumPy, with the share of scatter and gather."""
    serial = series(idx, pkey, base, 1)
    ranks = sorted({w for (p, l, w, _n) in idx if p == pkey and l == label})
    if not serial or not ranks:
        return []
    # Serial may have failed wherever the ranks ran: then there is nothing to set them against.
    n = max((n for (p, l, _w, n) in idx if p == pkey and l == label and n in serial),
            default=None)
    if n is None:
        return []
    parts, numbers = [], {"n": n, "ranks": {}}
    for r in ranks:
        case = idx.get((pkey, label, r, n))
        if case is None:
            continue
        speedup = wall(serial[n]) / wall(case)
        share = transfer_share(case, data)
        numbers["ranks"][r] = {"speedup": speedup, "transfer_share": share}
        parts.append(f"{r}: {speedup:.2f}x ({share:.0%} scatter and gather)")
    split = {r: v["speedup"] for r, v in numbers["ranks"].items() if r > 1}
    best = max(split, key=split.get) if split else None
    if best is None:
        verdict = "one rank only: run more to see whether splitting pays"
    elif split[best] > 1 + MIN_CHANGE:
        verdict = f"splitting pays, most on {best} ranks"
    else:
        verdict = "splitting over ranks does not pay here"
    return [Finding("mpi", f"{ptxt}{label} at n={fmt_n(n)} against {base}, by ranks: "
                    + ", ".join(parts) + f"; {verdict}.", numbers)]


def _scaling_findings(idx, pkey, ptxt, data, ceil=None):
    labels = sorted({l for (p, l, _w, _n) in idx if p == pkey})
    results = [s for s in (scaling(idx, pkey, l) for l in labels) if s is not None]
    if not results:
        return []
    parts = []
    regimes: set[str] = set()
    numbers = {}
    for s in results:
        above = {w: efficiency_regime(data, idx[(pkey, s.label, w, s.n)], s.workers[0], ceil)
                 for w, e in zip(s.workers, s.efficiency) if round(100 * e) > 100}
        regimes |= set(above.values())
        eff = ", ".join(f"{w}: {e:.0%}" + (f" {above[w]}" if w in above else "")
                        for w, e in zip(s.workers, s.efficiency))
        numbers[s.label] = {**dataclasses.asdict(s), "above_100": above}
        backend, impl = (s.label.split("/") + [""])[:2]
        share = ceil.shares.get((pkey, s.label)) if ceil else None
        # Measured where the run has a one-thread run beside more: above one half, the loop
        # holds the GIL most of its time. Else judged by the implementation's kind.
        gil_held = records.backend_traits(data, backend).shares_gil and (
            share.share >= 0.5 if share is not None else impl in model.GIL_HOLDING)
        # Measured from the fewest workers to the most: `speedup` assumes the fewest scaled
        # perfectly where no one-worker run exists, which a GIL-holding loop does not.
        gain = s.wall_s[0] / s.wall_s[-1]
        if gil_held and gain < GIL_SPEEDUP:
            # The same test as the threads finding's: a few percent is not the GIL letting go.
            sat = "GIL-bound, no real gain"
        elif gil_held and share is None and data["machine"].get("gil_enabled", True):
            # The threads finding says the same: with the GIL on, a gain this large is noise.
            sat = "more than the GIL should allow: check the noise"
        elif s.saturates_at is not None:
            sat = f"no gain beyond {s.saturates_at} worker{'s' * (s.saturates_at > 1)}"
        else:
            sat = f"still gaining at {s.workers[-1]}"
        parts.append(f"{s.label} {s.speedup[-1]:.2f}x on {s.workers[-1]} at n={fmt_n(s.n)}, "
                     f"{sat} (efficiency {eff})")
    note = ("" if all(s.workers[0] == 1 for s in results)
            else " (speedup taken against the fewest workers where no one-worker run exists)")
    for tag in sorted(regimes):
        note += f"; {EFFICIENCY_REGIMES[tag]}"
    return [Finding("scaling", f"{ptxt}scaling: " + "; ".join(parts) + note + ".", numbers)]


# Why a variant's efficiency can pass 100% (its one-worker run is the ceiling), by the tag the
# efficiency list names it with.
EFFICIENCY_REGIMES = {
    "in cache": ("efficiency above 100% in cache: each worker's share of the data fits its "
                 "core's L2 cache, where one worker's whole did not"),
    "smaller messages": ("efficiency above 100% with smaller messages: each worker's share is "
                         "pickled at a higher rate per byte than one worker's whole (the pickle "
                         "curve `gpukit limits` measures)"),
    "one slow": ("efficiency above 100% where one worker ran slow: its run paid for something "
                 "the others split or avoided (the main thread's memory allocation, or load "
                 "during its repetitions)"),
}


def efficiency_regime(data: dict, case: dict, fewest: int, ceil) -> str:
    """Why `case` ran more than its worker count times faster than the same variant on
    `fewest` workers: the tag of EFFICIENCY_REGIMES that applies."""
    l2 = (data["machine"].get("caches") or {}).get("l2_bytes")
    size, workers = footprint(case), case["workers"]
    if (case.get("variant") or {}).get("options", {}).get("transfer") == "pickle" and ceil:
        whole = case["work"]["bytes_in"] / fewest
        rate_whole, rate_share = ceil.pickle_gbps(whole), ceil.pickle_gbps(whole * fewest / workers)
        if rate_whole and rate_share and rate_share > (1 + MIN_CHANGE) * rate_whole:
            return "smaller messages"
    if l2 and size / workers <= l2 < size / fewest:
        return "in cache"
    return "one slow"


def _gpu_findings(data, idx, pkey, ptxt):
    cpu_best: dict[int, dict] = {}
    gpu_best: dict[int, dict] = {}
    cpu_compute: dict[int, float] = {}
    gpu_compute: dict[int, float] = {}
    for (p, _l, _w, n), c in idx.items():
        if p != pkey:
            continue
        gpu = is_gpu(c, data)
        best, comp = (gpu_best, gpu_compute) if gpu else (cpu_best, cpu_compute)
        if n not in best or wall(c) < wall(best[n]):
            best[n] = c
        t = device_phase(c, phases.COMPUTE) if gpu else phase(c, phases.COMPUTE)
        comp[n] = min(t, comp.get(n, math.inf))
    common = sorted(set(cpu_best) & set(gpu_best))
    if not common:
        return []
    end_to_end = crossover(walls(cpu_best), walls(gpu_best))
    compute = crossover(cpu_compute, gpu_compute)
    n = common[-1]
    g, c = gpu_best[n], cpu_best[n]
    text = (f"{ptxt}GPU vs best CPU: end to end the GPU wins {end_to_end.text()}; on compute "
            f"alone {compute.text()}; at n={fmt_n(n)} {g['label']} takes {fmt_s(wall(g))} "
            f"({transfer_share(g, data):.0%} transfers) vs {c['label']} x{c['workers']} "
            f"{fmt_s(wall(c))} ({wall(c) / wall(g):.3g}x).")
    return [Finding("gpu", text, {"end_to_end": dataclasses.asdict(end_to_end),
                                  "compute": dataclasses.asdict(compute),
                                  "end_to_end_crossover_n": end_to_end.n,
                                  "compute_crossover_n": compute.n, "n": n,
                                  "gpu_label": g["label"], "gpu_wall_s": wall(g),
                                  "gpu_transfer_share": transfer_share(g, data),
                                  "cpu_label": c["label"], "cpu_workers": c["workers"],
                                  "cpu_wall_s": wall(c)})]


def _model_findings(data, ceil, verdicts) -> list[Finding]:
    acc = model.accuracy(verdicts)
    stored, derived = ceil.stored(), ceil.derived()
    lacking = sorted(ceil.lacking)
    src = []
    if stored:
        src.append(f"{len(stored)} from `gpukit limits`"
                   + (" --quick (rough: re-measure without --quick)" if ceil.rough else ""))
    if derived:
        src.append(f"{len(derived)} derived from this run ({', '.join(derived)})")
    if ceil.kernel_rates:
        # Not multiply-adds: limits' rate does not fit its work, its own run's rate does.
        by_params: dict[tuple, list] = {}
        flops = model.flops_known(data)
        for (pkey, impl), (r, _src) in sorted(ceil.kernel_rates.items()):
            by_params.setdefault(pkey, []).append(f"{impl} {r:.3g} "
                                                  + ("GFLOP/s" if flops else "G rows/s"))
        src.append(("the kernel's arithmetic rated by its own runs, not as multiply-adds ("
                    if flops else "the kernel, which declares no FLOPs, rated per row by its "
                    "own runs (") + "; ".join((f"{params_text(dict(p))}: " if len(by_params) > 1
                                               else "") + ", ".join(rs)
                                              for p, rs in by_params.items()) + ")")
    src.append(f"lacking {', '.join(lacking)}" + ("" if stored else " (`gpukit limits` measures "
                                                 "this machine's)")
               if lacking else "none lacking for these cases")
    numbers = {"predicted": acc.predicted, "scored": acc.scored, "within": acc.within,
               "within_band": model.WITHIN, "far": acc.far, "far_factor": model.FAR,
               "anchors": acc.anchors, "unpredicted": acc.unpredicted,
               "stored": stored, "derived": derived, "lacking": lacking}
    if acc.scored == 0:
        text = (f"model: no case could be predicted ({'; '.join(src) or 'no ceilings'}).")
        return [Finding("model", text, numbers)]
    text = (f"model: {acc.within} of {acc.scored} cases within {model.WITHIN:.0%} of the "
            f"prediction, {acc.far} more than {model.FAR:g}x off")
    if acc.anchors:
        text += f" ({acc.anchors} calibration case{'s' * (acc.anchors != 1)} not counted)"
    if acc.worst is not None and acc.worst.far:
        p, label, w, n = acc.worst.key
        text += (f"; furthest: {case_text(acc.worst.key, data)}, "
                 f"{acc.worst.ratio:.3g}x the prediction")
        numbers["worst"] = {"label": label, "workers": w, "n": n, "ratio": acc.worst.ratio}
    text += f". Ceilings: {'; '.join(src)}."
    if data["cases"] and not model.flops_known(data) and not ceil.kernel_rates:
        # No FLOPs to count and no serial run to rate it per row (model.rated_work).
        text += (" The kernel declares no FLOPs and no serial run rated it per row, so the "
                 "model prices its arithmetic at nothing (set flops_per_row).")
    return [Finding("model", text, numbers)]


def flag_text(case: dict, verdict: model.Verdict, data: dict) -> str | None:
    """For a case far from its prediction: by how much, and in which phase most of the gap is."""
    if not verdict.far:
        return None
    gap = model.gap_phase(case, verdict, device=is_gpu(case, data))
    way = "slower" if verdict.ratio > 1 else "faster"
    text = f"{verdict.ratio:.3g}x the model ({way})"
    if gap:
        text += f"; most of the gap in {gap[0]}: {fmt_s(gap[1])} measured vs {fmt_s(gap[2])}"
    return text

