"""glibc's mmap threshold from the config (src/utils/heap.py): fixed, a large freed block goes back to
the system; glibc's own sliding threshold would serve the next one from the heap, which keeps it."""
import sys

import pytest

from src.utils import heap
from tests.conftest import run_entry

# in a fresh process: optionally fix the threshold at 1 MB, free one 4 MB block (glibc's sliding
# threshold rises to 4 MB), then count glibc's mapped blocks (mallinfo2's hblks) across a 2 MB malloc
PROBE = """
import ctypes, sys
from src.utils.heap import set_mmap_threshold
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                     "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype, libc.malloc.argtypes = Info, ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
print(set_mmap_threshold(int(sys.argv[1])))
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(block)
"""


def test_zero_or_glibcs_own_variable_leaves_the_threshold_alone(monkeypatch):
    monkeypatch.delenv(heap.ENV_VARIABLE, raising=False)
    assert heap.set_mmap_threshold(0) is False
    monkeypatch.setenv(heap.ENV_VARIABLE, "131072")  # glibc read it at start: the user's choice wins
    assert heap.set_mmap_threshold(1) is False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_fixed_threshold_maps_a_large_block_that_the_sliding_one_would_keep_in_the_heap(monkeypatch):
    monkeypatch.delenv(heap.ENV_VARIABLE, raising=False)
    fixed = run_entry(["-c", PROBE, "1"]).stdout.split()
    sliding = run_entry(["-c", PROBE, "0"]).stdout.split()
    assert fixed == ["True", "1"]  # its own mapping, unmapped when freed
    assert sliding == ["False", "0"]  # from the heap, after the first freed 4 MB block raised the threshold
