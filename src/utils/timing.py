"""Wall-clock timing of a call, shared by the benchmark and its PyTorch reference (pure Python:
the reference imports it without MindSpore)."""
import statistics
import time

from src.utils.errors import ConfigError


def timed(fn, repeats):
    """Seconds of each of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def throughput(fn, items, repeats):
    """(items/s from the median call, items/s from the fastest call) of `repeats` calls of fn()
    after two untimed ones. The fastest call is the one least disturbed by other work on a shared
    machine; the median is the typical call."""
    timed(fn, 2)
    times = timed(fn, repeats)
    return items / statistics.median(times), items / min(times)


def inference_repeats(steps):
    """Encoder inference calls timed by both benchmarks for a run of `steps` training steps."""
    return max(10, steps // 2)


def check_counts(steps, warmup):
    """The timed and untimed step counts of a benchmark, or ConfigError (one line)."""
    if steps < 1 or warmup < 0:
        raise ConfigError("--steps must be >= 1 and --warmup >= 0")
