"""MindSpore 2.10 as the project uses it prints none of its deprecation warnings: a default training
run, eval.py (both modes) and export.py to MINDIR and ONNX, with MindSpore's warnings shown; the
one MindSpore-internal message nn.Adam's constructor logs is kept out, and only that one."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY

# MindSpore's own words for it: "is deprecated", "will be deprecated", and for ONNX through
# ms.export "will be deleted, please use mindspore.onnx.export()"
DEPRECATION = re.compile(r"deprecat|will be (deleted|removed)", re.IGNORECASE)


def run_showing_warnings(args):
    """`python <args>` from the repo with MindSpore's warnings on stderr (GLOG_v=2; run_entry sets 3)."""
    return subprocess.run([sys.executable] + args, cwd=REPO, env=dict(os.environ, GLOG_v="2"),
                          capture_output=True, text=True, timeout=600)


def deprecations(text):
    return [line for line in text.splitlines() if DEPRECATION.search(line)]


@pytest.fixture
def ms_messages(monkeypatch):
    """The messages MindSpore's logger emits during the test (its handler writes to the stderr of the
    process as it was when the logger was set up, which capfd does not see). MindSpore logs each
    deprecation once per process: the ones already logged here are forgotten first."""
    import logging

    from mindspore import log as ms_log
    from mindspore.common import _decorator
    monkeypatch.setattr(_decorator, "DEPRECATE_SET", set())
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger, handler = ms_log._get_logger(), Collect()
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


def test_adam_is_built_without_mindspores_internal_deprecation(ms_messages):
    import numpy as np
    from mindspore import Parameter, Tensor, nn
    from mindspore.common import _decorator

    from src.model.optim import adam
    params = [Parameter(Tensor(np.zeros(3, np.float32)), name="w")]
    nn.Adam(params, learning_rate=1e-3)  # the plain constructor logs it: the check below can fail
    assert len(ms_messages) == 1 and "'FusedSparseAdam' is deprecated" in ms_messages[0]
    ms_messages.clear()
    _decorator.DEPRECATE_SET.clear()
    assert isinstance(adam(params, 1e-3), nn.Adam) and ms_messages == []


def test_the_filter_drops_only_that_message(ms_messages):
    from mindspore import log as ms_log

    from src.model import optim
    with optim._without_internal_deprecation():
        ms_log.warning("'Other' is deprecated from version 2.9.0")
    ms_log.warning("'FusedSparseAdam' is deprecated from version 2.8.0 (outside the constructor)")
    assert len(ms_messages) == 2 and "'Other'" in ms_messages[0] and "outside the constructor" in ms_messages[1]


@pytest.mark.slow  # starts processes
def test_train_eval_and_export_print_no_deprecation_warning(tmp_path):
    run = tmp_path / "run"
    commands = {
        "train.py": ["train.py", "--config_path", TINY, "--epoch_size", "1", "--steps_per_epoch", "20",
                     "--output_path", str(run)],
        "eval.py": ["eval.py", "--config_path", TINY, "--ckpt_path", str(run / "cpc_best.ckpt"),
                    "--output_path", str(tmp_path / "eval")],
        "eval.py classify": ["eval.py", "--eval_mode", "classify", "--config_path", TINY, "--ckpt_path",
                             str(run / "cpc_best.ckpt"), "--output_path", str(tmp_path / "classify"),
                             "--methods", "cpc_mlp", "--label_fractions", "1.0", "--head_steps", "5"],
    }
    for fmt in ("MINDIR", "ONNX"):
        commands[f"export.py {fmt}"] = ["export.py", "--config_path", TINY, "--ckpt_path", str(run / "cpc_best.ckpt"),
                                        "--net", "encoder", "--file_format", fmt, "--file_name",
                                        str(tmp_path / f"encoder_{fmt}")]
    for name, args in commands.items():
        proc = run_showing_warnings(args)
        assert proc.returncode == 0, f"{name}: {proc.stderr[-2000:]}"
        assert deprecations(proc.stdout + proc.stderr) == [], name
    assert deprecations((run / "train.log").read_text(encoding="utf-8")) == []
