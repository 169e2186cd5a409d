"""What a sweep means: pure functions of a results dict (as saved), no measuring, no printing.

- `cases`: the vocabulary: cases by key, their times, phases and work;
- `model`: what each case should take, from the machine's ceilings and the backend's traits
  (`predict_all`, `resolve`); `serialized`: how much of a thread variant's time runs serialized
  (the GIL or shared memory), measured from its scaling over worker counts;
- `case_limits.limit(...)`: per case, the phase that dominates and the limit it runs into, in
  words a user can act on (GIL, dispatch, transfer, launch, memory, compute, interpreter); the
  machine's ceilings it is held against are measured by the gpukit.limits package;
- `crossovers.crossover(...)`: the n from which one series beats another, interpolated on log n
  between the two measured sizes that bracket the change (and said so); `scaling(...)`: speedup
  and parallel efficiency per worker count, and where scaling saturates;
- `findings.analyze(...)`: the findings, each a `Finding(topic, text, numbers)`: a sentence with
  its figures, so reports can render it and tests can check it; how well the model did is one;
- `answer.answer(...)`: the answer block that opens every report: per parameter set, the
  figures of a few findings (fastest, threads, processes, GPU), or why a topic did not run;
- `noise.assess(...)`: whether the machine was too busy for the run's figures to be trusted
  (other work's CPU time during the sweep, the load as it began, the serial repetitions' spread);
- `rundiff.diff(...)`: what `gpukit diff` computes: two runs case by case, faster or slower and
  whether beyond their noise: the repetitions' rank test, a minimum change, both cases' spreads,
  and how much all the cases moved between the two runs (the run-to-run noise that repetitions
  within one run cannot see).

The names below are the ones reports and commands use, so that they need only
`from gpukit import analysis`. Numbers are written by gpukit.units, findings rendered by
gpukit.reporting.
"""

# The model first: it imports none of the rules below, which all read it.
from gpukit.analysis import model, serialized
from gpukit.analysis.case_limits import Limit, limit, limits
from gpukit.analysis.cases import (MIN_CHANGE, baseline_labels, case_text, device_phase, index,
                                   intensity, is_gpu, key_order, max_workers, ok_cases,
                                   params_key, params_text, phase, run_phases, series,
                                   speedup_vs_baseline, throughput, transfer_share, variant_name,
                                   wall)
from gpukit.analysis.crossovers import (Crossover, Scaling, crossover, crossover_of_cases,
                                        scaling, walls)
from gpukit.analysis.findings import Analysis, Finding, all_findings, analyze, flag_text
from gpukit.analysis.rundiff import (ALPHA, MWU_MIN_RUNS, RUN_NOISE_MIN_CASES, RUN_NOISE_SIGMAS,
                                     Change, Diff, Lost, compare_cases, diff, mann_whitney_p,
                                     run_to_run)

__all__ = [
    "model",
    "serialized",
    "ALPHA",
    "all_findings",
    "Analysis",
    "analyze",
    "baseline_labels",
    "case_text",
    "Change",
    "compare_cases",
    "Crossover",
    "crossover",
    "crossover_of_cases",
    "device_phase",
    "Diff",
    "diff",
    "Finding",
    "flag_text",
    "index",
    "intensity",
    "is_gpu",
    "key_order",
    "Limit",
    "limit",
    "limits",
    "Lost",
    "mann_whitney_p",
    "max_workers",
    "MIN_CHANGE",
    "MWU_MIN_RUNS",
    "ok_cases",
    "params_key",
    "params_text",
    "phase",
    "RUN_NOISE_MIN_CASES",
    "RUN_NOISE_SIGMAS",
    "run_phases",
    "run_to_run",
    "Scaling",
    "scaling",
    "series",
    "speedup_vs_baseline",
    "throughput",
    "transfer_share",
    "variant_name",
    "wall",
    "walls",
]
