"""The compiled CPU kernels: built once into the cache, and the MindSpore-op path when they cannot be."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY, run_entry

PROBE = ("from src.model.cpc import Encoder; e = Encoder(64, 3, 8, 'valid', 'cpu', False, 4, 64, 256); "
         "from src.model.cpu import kernels; print(kernels.library()); print(sorted({b.conv.form for b in e.blocks}))")


def _probe(env):
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, GLOG_v="3", **env), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    path, forms = proc.stdout.splitlines()[-2:]
    return path, forms, proc.stderr


@pytest.mark.slow  # a fresh Python process each
def test_library_is_built_once_into_the_cache(tmp_path):
    cache = str(tmp_path / "cache")
    path, forms, _ = _probe({"CPC_KERNEL_CACHE": cache})
    assert forms == "['kernel']"
    assert os.path.dirname(path) == cache and os.path.basename(path).startswith("cpu_kernels-")
    assert os.listdir(cache) == [os.path.basename(path)]   # no temporary file left behind
    stamp = os.stat(path).st_mtime_ns
    assert _probe({"CPC_KERNEL_CACHE": cache})[0] == path and os.stat(path).st_mtime_ns == stamp   # reused


@pytest.mark.slow  # a fresh Python process each
def test_without_a_compiler_the_encoder_uses_mindspore_ops(tmp_path):
    for env, reason in (({"CXX": str(tmp_path / "no-such-compiler")}, "building"),
                        ({"CPC_CPU_KERNELS": "0"}, "CPC_CPU_KERNELS=0")):
        path, forms, stderr = _probe(dict(env, CPC_KERNEL_CACHE=str(tmp_path / "cache")))
        assert path == "None" and forms == "['gather']"
        warnings = [line for line in stderr.splitlines() if "compiled CPU kernels not used" in line]
        assert len(warnings) == 1 and reason in warnings[0]   # said once, with the reason


@pytest.mark.slow  # starts a process
def test_training_runs_on_the_fallback_path(tmp_path):
    out = tmp_path / "run"
    proc = run_entry(["train.py", "--config_path", TINY, "--device_target", "CPU", "--epoch_size", "1",
                      "--steps_per_epoch", "20", "--output_path", str(out)], env={"CPC_CPU_KERNELS": "0"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 1 and 0 <= metrics["val_accuracy"] <= 1
    assert all(loss == loss for loss in metrics["step_losses"])   # finite, not NaN
