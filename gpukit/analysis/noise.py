"""Was the machine quiet enough for the figures to be trusted?

On a machine shared with other work the same sweep can read very differently from one run to
the next: two runs of the same code on a shared 2-core machine put 6 and then 37 cases more than
2x off the model. A run is called too busy to trust when any of these held:

- other work took at least `BUSY_SHARE` of the machine's CPU time during the sweep: the busy
  time /proc/stat counts, less what gpukit's own process and the processes it started used,
  plus what the hypervisor gave to other guests (steal);
- other work already kept every core busy as the sweep began: a 1-minute load average of at
  least the core count;
- the repetitions spread: the median, over the serial cases (one thread, nothing to coordinate,
  so their spread is the machine's), of each case's interquartile range over its median is at
  least `NOISY_SPREAD`, against about `QUIET_SPREAD` on a quiet machine.

Results saved before the load was recorded are judged by their spread alone.
"""

from __future__ import annotations

import dataclasses
import statistics

# Measured on the 2-core AMD EPYC development VM: serial cases' median relative IQR was 2.0%
# (serial/numpy) and 2.6% (serial/python) in a quiet run, 3-5% with other engineers' tests running.
QUIET_SPREAD = 0.03
NOISY_SPREAD = 3 * QUIET_SPREAD
# A quarter of the machine: on 2 cores, half a core taken from a sweep that uses both.
BUSY_SHARE = 0.25
BACKEND = "serial"


@dataclasses.dataclass(frozen=True)
class Noise:
    busy: bool
    reasons: tuple[str, ...]
    others_share: float | None  # of the machine's CPU time during the sweep
    load_before: float | None  # 1-minute load averages
    load_after: float | None
    cores: int | None
    spread: float | None  # median relative IQR of the serial cases
    spread_cases: int

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["reasons"] = list(self.reasons)
        data.update(quiet_spread=QUIET_SPREAD, noisy_spread=NOISY_SPREAD, busy_share=BUSY_SHARE)
        return data


def others_share(before: dict, after: dict) -> float | None:
    """Share of the machine's CPU time that other work took between two `machine.load()`
    snapshots: busy time less our own, plus steal, over all the time of all cores."""
    a, b = before.get("cpu_s"), after.get("cpu_s")
    if not a or not b or "own_cpu_s" not in before or "own_cpu_s" not in after:
        return None
    delta = {name: b[name] - a[name] for name in a if name in b}
    total = sum(delta.values())
    if total <= 0:
        return None
    idle = delta.get("idle", 0.0) + delta.get("iowait", 0.0)
    own = after["own_cpu_s"] - before["own_cpu_s"]
    # Steal is in the busy time already: time this machine wanted and another guest got.
    return min(1.0, max(0.0, (total - idle - own) / total))


def serial_spread(data: dict) -> tuple[float | None, int]:
    spreads = [c["summary"]["wall_s"]["rel_spread"] for c in data.get("cases", ())
               if c.get("status") == "ok" and c.get("backend") == BACKEND]
    return (statistics.median(spreads) if spreads else None), len(spreads)


def assess(data: dict) -> Noise:
    load = data.get("load") or {}
    before, after = load.get("before") or {}, load.get("after") or {}
    cores = before.get("cores") or data.get("machine", {}).get("cores")
    load_before = (before.get("loadavg") or [None])[0]
    load_after = (after.get("loadavg") or [None])[0]
    share = others_share(before, after) if before and after else None
    spread, count = serial_spread(data)
    reasons = []
    if share is not None and share >= BUSY_SHARE:
        reasons.append(f"other work took {share:.0%} of the machine's CPU time during the sweep")
    if load_before is not None and cores and load_before >= cores:
        reasons.append(f"the load average was {load_before:.1f} on {cores} cores as it began")
    if spread is not None and spread >= NOISY_SPREAD:
        reasons.append(f"the serial repetitions spread {spread:.0%} (median IQR over the median "
                       f"time; about {QUIET_SPREAD:.0%} on a quiet machine)")
    return Noise(bool(reasons), tuple(reasons), share, load_before, load_after, cores, spread,
                 count)


def finding_text(noise: Noise) -> str | None:
    if not noise.busy:
        return None
    return ("machine too busy for these figures to be trusted: " + "; ".join(noise.reasons)
            + ". Times, speedups and the model's misses may be the other work's, not the "
              "code's: run again when the machine is quiet (see `uptime`)")
