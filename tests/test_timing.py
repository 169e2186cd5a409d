
import pytest

from gpukit.backends.base import RunTiming
from gpukit.timing import Budget, describe, repeat, summarize


class FakeClock:
    """Advances only when a run happens: each run costs `run_s`."""

    def __init__(self, run_s):
        self.now = 0.0
        self.run_s = run_s

    def __call__(self):
        return self.now

    def run(self):
        self.now += self.run_s
        return RunTiming({"compute": self.run_s}, self.run_s)


@pytest.mark.parametrize("run_s,budget_s,expected", [
    (0.0625, 0.5, 8),  # budget decides
    (1.0, 0.1, 3),     # min_reps decides: a slow case still gets three runs
    (1e-6, 1.0, 50),   # max_reps decides: a tiny case stops at the cap
    (0.1, 0.0, 3),
])
def test_repeat_stops_on_budget_min_and_max(run_s, budget_s, expected):
    clock = FakeClock(run_s)
    runs = repeat(clock.run, Budget(budget_s=budget_s, min_reps=3, max_reps=50), clock)
    assert len(runs) == expected


def test_budget_validates():
    with pytest.raises(ValueError):
        Budget(min_reps=0)
    with pytest.raises(ValueError):
        Budget(min_reps=5, max_reps=4)


def test_describe_median_and_spread():
    d = describe([1.0, 2.0, 3.0, 4.0, 100.0])
    assert d["median"] == 3.0 and d["min"] == 1.0 and d["max"] == 100.0
    assert d["q1"] == 2.0 and d["q3"] == 4.0
    assert d["rel_spread"] == pytest.approx(2.0 / 3.0)  # the outlier does not move it
    assert describe([2.0])["rel_spread"] == 0.0


def test_summarize_keeps_device_clock_beside_host():
    runs = [RunTiming({"compute": c}, c + 1e-3, device_s={"compute": c * 0.9})
            for c in (1.0, 2.0, 3.0)]
    s = summarize(runs)
    assert s["wall_s"]["median"] == pytest.approx(2.001)
    assert s["phases_s"]["compute"]["median"] == 2.0
    assert s["device_s"]["compute"]["median"] == pytest.approx(1.8)
