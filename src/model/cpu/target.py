"""Compiler target flags for the CPU kernels, chosen from what the processor reports.

The x86-64 baseline (no -m flag) compiles the kernels to 128-bit SSE2 vectors. Processors with AVX2
or AVX-512 run wider vectors, which GCC emits for the psABI levels x86-64-v3 / -v4 (GCC >= 11).
The level is chosen from /proc/cpuinfo's flags, not `-march=native`, so that two machines with the
same level share one build and a shared home folder never runs a build made for features this
processor lacks: the cache key holds the level and the features that chose it.

`-ffp-contract=off` keeps the numerics of the baseline build: with FMA available GCC would fuse
a*b+c into one rounding, changing results in the last bits; without it every float operation
rounds as in the baseline build (no -ffast-math: the order of operations is unchanged).
"""
import platform

# psABI levels (x86-64-psABI 1.0): the features each level adds, checked in /proc/cpuinfo's names
LEVELS = (
    ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")),
    ("x86-64-v3", ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave", "abm")),
    ("x86-64-v2", ("cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3")),
)
PORTABLE = ()  # the compiler's default target: what a build falls back to


def processor_name(path="/proc/cpuinfo"):
    """The processor's model name as /proc/cpuinfo gives it (platform.processor() elsewhere)."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features(path="/proc/cpuinfo"):
    """The feature names of the first processor in /proc/cpuinfo (empty where there is none)."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def level(features, machine=None):
    """The highest x86-64 level whose features (and every lower level's) the processor has; None off
    x86-64 or below v2."""
    if (machine or platform.machine()) not in ("x86_64", "AMD64"):
        return None
    best = None
    for name, needed in reversed(LEVELS):  # v2, v3, v4: each needs all below it
        if not set(needed) <= features:
            break
        best = name
    return best


def target_flags(features, machine=None):
    """(flags, key): the compiler flags for this processor and the text that goes into the build's
    cache key (level and the features that decided it)."""
    chosen = level(features, machine)
    if chosen is None:
        return list(PORTABLE), "portable"
    decisive = sorted(f for _, needed in LEVELS for f in needed if f in features)
    return [f"-march={chosen}", "-ffp-contract=off"], chosen + ":" + ",".join(decisive)
