"""glibc malloc's mmap threshold, set from the config (docs/performance.md#memory).

glibc serves a block of at least the threshold with a mapping of its own and unmaps it when it is
freed. Its default threshold slides: each freed mapped block raises it to that block's size, up to
32 MB, so after the first freed batch (12.6 MB in the 64x64 colour task) every later batch comes
from the heap, which keeps the freed space. A fixed threshold also turns the slide off, as glibc's
MALLOC_MMAP_THRESHOLD_ environment variable does.
"""
import ctypes
import os

M_MMAP_THRESHOLD = -3  # <malloc.h>
ENV_VARIABLE = "MALLOC_MMAP_THRESHOLD_"


def set_mmap_threshold(megabytes):
    """Fix glibc's mmap threshold at `megabytes` MB; True if set. Nothing is set for 0 (glibc's own
    sliding threshold), when MALLOC_MMAP_THRESHOLD_ is in the environment (glibc read it at start:
    the user's choice wins) or where the C library has no mallopt (not glibc)."""
    if not megabytes or ENV_VARIABLE in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, megabytes << 20) == 1
