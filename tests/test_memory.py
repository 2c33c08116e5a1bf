"""Memory a batch_size asks for and the machine cannot give: one line naming the key."""
import json
import os
import resource
import subprocess
import sys

import pytest

from src.utils.errors import CPCError, batch_guard, out_of_memory
from tests.conftest import REPO, TINY, error_lines

# MindSpore 2.10's CPU allocator, as raised by a graph run (the framework stack cut)
MINDSPORE_OOM = ("\n----------------------------------------------------\n- Memory not enough:\n"
                 "----------------------------------------------------\nMemory isn't enough and alloc failed, "
                 "kernel name: 0_Default/Tile-op0, alloc size: 8192000000B.\n- C++ Call Stack: ...")


def test_mindspores_out_of_memory_becomes_one_line_naming_the_key():
    assert out_of_memory(RuntimeError(MINDSPORE_OOM)) == "MindSpore could not allocate 8.19 GB for Tile-op0"
    assert out_of_memory(RuntimeError("std::bad_alloc")) and out_of_memory(MemoryError())
    assert out_of_memory(RuntimeError("For 'Conv2D', the shape is wrong")) is None
    with pytest.raises(CPCError) as err, batch_guard("batch_size", 4096, "4096 sequences"):
        raise RuntimeError(MINDSPORE_OOM)
    assert str(err.value) == ("batch_size 4096 (4096 sequences) needs more memory than this machine can give "
                              "(MindSpore could not allocate 8.19 GB for Tile-op0); use a smaller batch_size")
    with pytest.raises(RuntimeError, match="shape"), batch_guard("batch_size", 2):
        raise RuntimeError("For 'Conv2D', the shape is wrong")


def _limit_address_space():
    limit = 5 * 1024 ** 3  # 5 GB: MindSpore and the tiny net fit, a batch of 100,000 sequences does not
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.slow
@pytest.mark.parametrize("flags, expected", [
    (["--batch_size", "100000"], "batch_size 100000 (100000 sequences of 2 + 2 images 1x28x28 a step) needs more "
                                 "memory than this machine can give"),
    (["--hidden_size", "100000"], "the network (image_size 28, encoder_channels 64, encoder_hidden 256, code_size "
                                  "32, hidden_size 100000) needs more memory than this machine can give"),
])
def test_what_the_machine_cannot_hold_is_one_line(tmp_path, flags, expected):
    """The real thing, bounded so no other process on the machine feels it: train.py under a 5 GB
    address-space limit with a batch or a network far too large."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "train.py", "--config_path", TINY, "--epoch_size", "1",
                           "--steps_per_epoch", "1", "--val_steps", "1", "--output_path", str(out)] + flags,
                          cwd=REPO, env=dict(os.environ, GLOG_v="3"), capture_output=True, text=True, timeout=600,
                          preexec_fn=_limit_address_space)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[0].startswith("error: " + expected), lines[0]
    left = [p.name for p in out.iterdir() if p.name.endswith((".ckpt", ".json"))]
    assert left in ([], ["run_status.json"])  # the run's account of itself, if it got as far as the folder
    assert not left or json.loads((out / left[0]).read_text())["error"] == lines[0][len("error: "):]
