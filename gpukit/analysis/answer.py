"""The answer block: for each parameter set, a few facts that answer the user's question (which
way of running wins over which sizes, where threads help and why, what moving data costs
processes, where the GPU wins, or why no GPU ran), taken from the findings and case limits.

Only figures: `gpukit.reporting.tables.answer_lines` writes them as sentences, for the
terminal, the Markdown and the HTML page alike.
"""

from __future__ import annotations

import dataclasses
import re

from gpukit import records
from gpukit.analysis.findings import Analysis, Finding
from gpukit.analysis.cases import index, params_key, series

FAILED, FASTEST, THREADS, PROCESSES, GPU = "failed", "fastest", "threads", "processes", "GPU"
TOPICS = (FAILED, FASTEST, THREADS, PROCESSES, GPU)


@dataclasses.dataclass(frozen=True)
class Answer:
    """What one topic comes to for one parameter set: `facts` holds the figures (or, under
    "not_run", why nothing of the topic ran)."""

    params: dict
    topic: str
    facts: dict


def answer(an: Analysis) -> list[Answer]:
    """The answer block, parameter set by parameter set, each in the order of TOPICS. A topic
    with nothing measured and nothing to explain (threads not asked for, no case failed) is
    left out."""
    data = an.data
    idx = index(data)
    out = []
    for pset in data["sweep"]["param_sets"]:
        found = {f.topic: f for f in an.findings if f.params == pset and f.topic != "failed"}
        for topic, facts in ((FAILED, _failed(data, pset)), (FASTEST, _fastest(found)),
                             (THREADS, _threads(found, an, idx, pset)),
                             (PROCESSES, _processes(found)),
                             (GPU, _gpu(found))):
            if facts is None and topic != FAILED:
                facts = _not_run(data, topic, pset)
            if facts is not None:
                out.append(Answer(pset, topic, facts))
    return out


def _failed(data: dict, pset: dict) -> dict | None:
    """The cases that failed, which every other line leaves out: by variant, from which size."""
    first: dict[tuple, int] = {}
    for c in data["cases"]:
        if c.get("status") == "failed" and params_key(c["params"]) == params_key(pset):
            key = (c["label"], c["workers"])
            first[key] = min(first.get(key, c["n"]), c["n"])
    if not first:
        return None
    return {"cases": sum(c.get("status") == "failed" and params_key(c["params"]) == params_key(pset)
                         for c in data["cases"]),
            "variants": [{"label": l, "workers": w, "from_n": n}
                         for (l, w), n in sorted(first.items())]}


def _fastest(found: dict[str, Finding]) -> dict | None:
    f = found.get("fastest")
    if f is None:
        return None
    switches = f.numbers["switches"]
    winners = []
    for i, w in enumerate(f.numbers["winners"]):
        # Switch i leads into winner i + 1: where it took over, estimated or measured.
        into = switches[i - 1] if i > 0 else None
        winners.append({"label": w["label"], "workers": w["workers"], "from_n": w["from_n"],
                        "to_n": w["to_n"], "takes_over_n": into["n"] if into else None,
                        "interpolated": bool(into and into["interpolated"])})
    return {"winners": winners, "left_out": list(f.numbers.get("left_out") or [])}


def _threads(found: dict[str, Finding], an: Analysis, idx: dict, pset: dict) -> dict | None:
    """NumPy threads: where they start beating serial, how far they scale and what limits them
    at the smallest and largest size; Python threads: what the GIL leaves of a second thread."""
    threads = [f for f in an.findings if f.params == pset and f.topic == THREADS]
    if not threads:
        return None
    scaling = found.get("scaling")
    facts = {}
    for f in threads:
        nums = f.numbers
        impl, w = nums["impl"], nums["workers"]
        label = nums["label"]
        entry = {"label": label, "workers": w, "n": nums["n"], "speedup": nums["speedup"],
                 "serialized": nums.get("serialized")}
        if "crossover" in nums:
            entry["crossover"] = nums["crossover"]
            ran = sorted(series(idx, params_key(pset), label, w))
            entry["limits"] = [{"n": n, **_limit(an, (params_key(pset), label, w, n))}
                               for n in dict.fromkeys((ran[0], ran[-1]))]
        else:
            entry["speedup_vs_one_thread"] = nums.get("speedup_vs_one_thread")
            entry["gil_enabled"] = an.data["machine"].get("gil_enabled", True)
            entry["gil_bound"] = an.limits[(params_key(pset), label, w, nums["n"])].kind == "GIL"
        sc = (scaling.numbers.get(label) if scaling else None) or {}
        entry["saturates_at"] = sc.get("saturates_at")
        facts[impl] = entry
    return facts


def _limit(an: Analysis, key: tuple) -> dict:
    lim = an.limits[key]
    # The sentence's head names the bound ("memory-bound on 2 cores"); its figures follow.
    return {"kind": lim.kind, "bound": lim.text.split(":", 1)[0]}


def _processes(found: dict[str, Finding]) -> dict | None:
    f = found.get(PROCESSES)
    if f is None:
        return None
    return {"by_transfer": {t: dict(v) for t, v in f.numbers.items()}}


def _gpu(found: dict[str, Finding]) -> dict | None:
    f = found.get("gpu")
    return dict(f.numbers) if f is not None else None


def _not_run(data: dict, topic: str, pset: dict) -> dict | None:
    """Why a topic has nothing measured: its backends were unavailable (with their reasons), or
    none of their cases ran for this parameter set. None where it was not asked for (threads
    left out of --backends), except the GPU, whose absence the answer always explains."""
    entries = {name: e for name, e in data["backends"].items() if _of_topic(data, name, e, topic)}
    if not entries:
        return {"not_run": "no GPU backend was selected (--backends)"} if topic == GPU else None
    usable = [name for name, e in entries.items() if e.get("available")]
    if not usable:
        return {"not_run": _reasons([e.get("reason") or "unavailable" for e in entries.values()])}
    cases = [c for c in data["cases"] if c["backend"] in usable
             and params_key(c["params"]) == params_key(pset)]
    if any(c["status"] == "ok" for c in cases):
        # Something ran, yet no finding: there was no serial run to hold it against.
        return {"not_run": "no serial run at the same sizes to compare with"}
    if any(c["status"] == "failed" for c in cases):
        return {"not_run": "its cases failed (see the findings)"}
    why = [(c.get("reason") or c["status"]) for c in cases]
    return {"not_run": _reasons(why) if why else "no case of it was planned"}


def _of_topic(data: dict, name: str, entry: dict, topic: str) -> bool:
    if topic == GPU:
        return bool(entry.get("gpu"))
    workers = records.backend_traits(data, name).workers
    return (topic, workers) in ((THREADS, records.THREAD), (PROCESSES, records.PROCESS))


def _reasons(reasons: list[str]) -> str:
    """Each distinct reason once; an install hint in parentheses that all of them end with is
    said once at the end ("cupy is not installed; pycuda is not installed (the cuda extra...)")."""
    reasons = list(dict.fromkeys(r.strip() for r in reasons))
    hints = {m[2] if (m := re.fullmatch(r"(.*\S) (\([^()]*\))", r)) else None for r in reasons}
    if len(reasons) > 1 and len(hints) == 1 and None not in hints:
        (hint,) = hints
        return "; ".join(r.removesuffix(" " + hint) for r in reasons) + " " + hint
    return "; ".join(reasons)


__all__ = ["FAILED", "FASTEST", "GPU", "PROCESSES", "THREADS", "TOPICS", "Answer", "answer"]
