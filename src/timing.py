"""Wall-clock timing of a call, shared by the benchmark and its PyTorch reference (pure Python:
the reference imports it without MindSpore)."""
import time

from src.errors import ConfigError


def timed(fn, repeats):
    """Seconds of each of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def check_counts(steps, warmup):
    """The timed and untimed step counts of a benchmark, or ConfigError (one line)."""
    if steps < 1 or warmup < 0:
        raise ConfigError("--steps must be >= 1 and --warmup >= 0")
