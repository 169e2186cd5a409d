"""A machine too busy to trust: the load recorded around a sweep and the finding it leads to."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time

import pytest
import synthetic

from gpukit import analysis, machine, results
from gpukit.analysis import noise


def snapshot(loadavg: float, busy_s: float, idle_s: float, own_s: float, steal_s: float = 0.0,
             cores: int = 2) -> dict:
    """A `machine.load()` snapshot: CPU seconds since boot of the whole machine and our own."""
    return {"time_s": 0.0, "cores": cores, "loadavg": [loadavg, loadavg, loadavg],
            "cpu_s": {"user": busy_s, "nice": 0.0, "system": 0.0, "idle": idle_s,
                      "iowait": 0.0, "irq": 0.0, "softirq": 0.0, "steal": steal_s},
            "own_cpu_s": own_s}


def with_load(data: dict, before: dict, after: dict) -> dict:
    data = copy.deepcopy(data)
    data["load"] = {"before": before, "after": after}
    return data


def quiet_data() -> dict:
    """The small CPU run (measured on the 2-core development machine), its serial repetitions
    held to a quiet machine's spread, with a quiet machine's load around it: 10 s of sweep on
    2 cores (20 CPU-seconds), of which gpukit used 12 and other work 0.5."""
    data = synthetic.load_cpu()
    for case in data["cases"]:
        if case["status"] == "ok" and case["backend"] == "serial":
            case["summary"]["wall_s"]["rel_spread"] = 0.02
    return with_load(data, snapshot(0.3, 100.0, 100.0, 0.0),
                     snapshot(1.4, 112.5, 107.5, 12.0))


def noise_findings(data: dict) -> list:
    return [f for f in analysis.all_findings(data) if f.topic == "noise"]


def test_a_quiet_run_has_no_noise_finding():
    data = quiet_data()
    found = noise.assess(data)
    assert not found.busy and found.reasons == ()
    assert found.others_share == pytest.approx(0.5 / 20)
    assert found.load_before == 0.3 and found.load_after == 1.4
    assert noise_findings(data) == []


def test_other_work_during_the_sweep_makes_the_first_finding_a_warning():
    # Same sweep, but the busy time grew by 12 s of ours and 7 s of someone else's.
    data = quiet_data()
    data["load"]["after"] = snapshot(3.1, 119.0, 101.0, 12.0)
    found = noise_findings(data)
    assert len(found) == 1
    text = found[0].text
    assert text.startswith("machine too busy for these figures to be trusted")
    assert "other work took 35% of the machine's CPU time during the sweep" in text
    assert found[0].numbers["others_share"] == pytest.approx(7 / 20)
    assert analysis.all_findings(data)[0].topic == "noise"  # before anything it casts doubt on


def test_stolen_time_counts_as_other_work():
    data = quiet_data()
    # Another guest of the hypervisor took 6 of the 20 CPU-seconds.
    data["load"]["after"] = snapshot(1.4, 118.5, 101.5, 12.0, steal_s=6.0)
    assert noise.assess(data).others_share == pytest.approx((18.5 + 6 - 12 - 0) / 26)
    assert noise.assess(data).busy


def test_a_load_at_the_core_count_as_it_began_is_too_busy():
    data = quiet_data()
    data["load"]["before"]["loadavg"] = [2.5, 1.0, 0.5]
    (found,) = noise_findings(data)
    assert "the load average was 2.5 on 2 cores as it began" in found.text


def test_a_wide_spread_of_the_serial_repetitions_is_too_busy_even_without_load_figures():
    data = quiet_data()
    del data["load"]  # a file saved before the load was recorded
    assert noise_findings(data) == []
    for case in data["cases"]:
        if case["status"] == "ok" and case["backend"] == "serial":
            case["summary"]["wall_s"]["rel_spread"] = 0.12
    (found,) = noise_findings(data)
    assert "the serial repetitions spread 12%" in found.text
    assert found.numbers["others_share"] is None and found.numbers["load_before"] is None


def test_older_results_files_still_load_and_analyze(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(synthetic.CPU_RESULTS.read_text())
    data = results.load(path)
    assert "load" not in data
    assert not noise.assess(data).busy  # its serial spread (3.5%) is a quiet machine's
    analysis.analyze(data)


def test_machine_load_counts_the_cpu_time_of_processes_we_started():
    before = machine.load()
    if "cpu_s" not in before:
        pytest.skip("no /proc/stat here")
    assert before["cores"] >= 1 and len(before["loadavg"]) == 3
    # A child spins 0.3 s of CPU and ends: its time is ours once it is reaped.
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    subprocess.run([sys.executable, "-c", spin], check=True)
    t0 = time.process_time()
    while time.process_time() - t0 < 0.2:
        pass
    after = machine.load()
    assert after["own_cpu_s"] - before["own_cpu_s"] >= 0.45
    share = noise.others_share(before, after)
    assert share is not None and 0.0 <= share <= 1.0


def test_compare_records_the_load_before_and_after_the_sweep(gpukit_cli, tmp_path):
    out = tmp_path / "r.json"
    proc = gpukit_cli("compare", "--backends", "serial", "--impls", "numpy", "--sizes", "1024",
                      "--param", "k=2", "--budget-s", "0.01", "--no-limits", "-o", str(out),
                      env={"COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    load = json.loads(out.read_text())["load"]
    for when in ("before", "after"):
        assert len(load[when]["loadavg"]) == 3 and load[when]["cores"] >= 1
    assert load["after"]["time_s"] >= load["before"]["time_s"]
    assert set(load["assessment"]) >= {"busy", "reasons", "others_share", "spread"}
    # What the findings say follows the recorded assessment.
    busy = load["assessment"]["busy"]
    assert ("machine too busy" in proc.stdout) == busy
