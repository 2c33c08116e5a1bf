"""src/utils/timing.py: call counts, median and fastest throughput on a controlled clock, the count check."""
import pytest

from src.utils import timing
from src.utils.errors import ConfigError


def test_throughput_from_the_median_and_the_fastest_timed_call(monkeypatch):
    durations = iter([9.0, 9.0, 2.0, 1.0, 4.0])  # two untimed calls, then three timed ones
    clock = {"now": 0.0}
    calls = []

    def perf_counter():
        return clock["now"]

    def fn():
        calls.append(1)
        clock["now"] += next(durations)

    monkeypatch.setattr(timing.time, "perf_counter", perf_counter)
    median, best = timing.throughput(fn, items=8, repeats=3)
    assert len(calls) == 5
    assert (median, best) == (8 / 2.0, 8 / 1.0)


def test_counts():
    assert timing.inference_repeats(4) == 10 and timing.inference_repeats(60) == 30
    timing.check_counts(1, 0)
    for steps, warmup in ((0, 1), (5, -1)):
        with pytest.raises(ConfigError, match="--steps must be >= 1"):
            timing.check_counts(steps, warmup)
