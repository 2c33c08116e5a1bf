"""tools/device_check.py: the comparison on synthetic metrics, and the whole script as a CPU dry run."""
import math

import numpy as np
import pytest

from tests.conftest import TINY, error_lines, run_entry
from tools.device_check import LOSS_ATOL, MIN_VAL_ACCURACY, compare_outputs, compare_runs

SCRIPT = "scripts/run_device_check.sh"
# the CPU run of the default check (2 x 100 steps of config/cpc_mnist28_gray.yaml, seed 0), measured
CPU = {"history": [{"epoch": 1, "loss": 0.4254, "val_accuracy": 0.9844},
                   {"epoch": 2, "loss": 0.0623, "val_accuracy": 0.9781}], "val_accuracy": 0.9781}


def _metrics(losses, val_accuracy):
    return {"history": [{"epoch": e + 1, "loss": loss, "val_accuracy": val_accuracy}
                        for e, loss in enumerate(losses)], "val_accuracy": val_accuracy}


def test_a_device_run_that_follows_the_cpu_passes():
    rows, failures = compare_runs(_metrics([0.4254 + 0.1, 0.0623 - 0.03], 0.97), CPU)
    assert failures == [] and [r[-1] for r in rows] == [True, True, True]
    assert [r[0] for r in rows] == ["epoch 1 loss", "epoch 2 loss", "final val_accuracy"]


@pytest.mark.parametrize("device, expected", [
    (_metrics([0.693, 0.692], 0.5), ["epoch 1 loss 0.6930 is not within", "epoch 2 loss 0.6920",
                                     "final val_accuracy 0.5000 is below"]),  # does not learn
    (_metrics([0.4254, 0.0623 + LOSS_ATOL + 0.01], 0.97), ["epoch 2 loss"]),
    (_metrics([0.4254, math.nan], 0.97), ["epoch 2 loss nan", "did not fall"]),
    (_metrics([0.4254, 0.0623], MIN_VAL_ACCURACY - 0.01), ["below 0.9"]),
    (_metrics([0.4254, 0.0623], 0.99), []),  # within 0.05 of the CPU's 0.978
    (_metrics([0.4254], 0.97), ["1 and 2 epochs"]),
])
def test_comparison_failures(device, expected):
    _, failures = compare_runs(device, CPU)
    assert len(failures) == len(expected)
    for failure, phrase in zip(failures, expected):
        assert phrase in failure


def test_accuracy_far_from_the_cpu_fails():
    cpu = _metrics([0.4, 0.1], 0.99)
    _, failures = compare_runs(_metrics([0.4, 0.1], 0.92), cpu)
    assert failures == ["final val_accuracy 0.9200 is not within 0.05 of the CPU's 0.9900"]


def test_mindir_output_comparison():
    ref = np.linspace(-5, 5, 40, dtype=np.float32).reshape(8, 5)
    assert compare_outputs(ref, ref) == (0.0, 5e-3, True)
    assert compare_outputs(ref + 1e-3, ref)[2]
    assert not compare_outputs(ref + 1e-2, ref)[2]
    assert not compare_outputs(ref[:4], ref)[2] and not compare_outputs(ref * np.nan, ref)[2]


@pytest.mark.slow  # starts a process
def test_dry_run_on_cpu(tmp_path):
    """The whole script with DEVICE_TARGET=CPU on the tiny config: two trainings, export, MINDIR run."""
    runs = tmp_path / "runs"
    proc = run_entry(["bash", SCRIPT, "CPU", "--config_path", TINY, "--epoch_size", "2", "--steps_per_epoch", "5",
                      "--val_steps", "1", "--min_val_accuracy", "0"], env={"RUNS_DIR": str(runs)}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "PASS (dry run on CPU)"
    assert lines[-2].startswith("DRY RUN: no Ascend or GPU was used")
    table = lines[lines.index(next(ln for ln in lines if ln.startswith("check"))):-2]
    assert [row.split("  ")[0] for row in table[1:]] == ["epoch 1 loss", "epoch 2 loss", "final val_accuracy",
                                                        "MINDIR vs Cell max|diff|"]
    assert all(row.rstrip().endswith("ok") for row in table[1:])
    (run_dir,) = runs.iterdir()
    assert (run_dir / "encoder.mindir").is_file() and (run_dir / "device" / "metrics.json").is_file()


@pytest.mark.slow  # starts a process
def test_bad_target_is_one_error_line(tmp_path):
    runs = tmp_path / "runs"
    proc = run_entry(["bash", SCRIPT, "NPU"], env={"RUNS_DIR": str(runs)})
    assert proc.returncode == 2 and "DEVICE_TARGET must be auto, Ascend, GPU or CPU" in error_lines(proc.stderr)[-1]
    assert not runs.exists()
