"""Wall-clock timing of a call, shared by the benchmark and its PyTorch reference (pure Python:
the reference imports it without MindSpore)."""
import time


def timed(fn, repeats):
    """Seconds of each of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
