"""tools/torch_reference.py, the benchmark's PyTorch side: the same network as the port, and the
comparison line of scripts/run_benchmark.sh. Needs torch (optional, not in requirements): skipped
without it."""
import json

import numpy as np
import pytest

from src.config import model_hparams, parse_config
from tests.conftest import REPO, TINY, run_entry

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("config", [TINY, f"{REPO}/config/cpc_mnist64_color.yaml",
                                    f"{REPO}/config/cpc_mnist28_gray.yaml"])
def test_reference_has_the_ports_trainable_parameters(ms_cpu, config):
    from src.model.build import build_cpc
    from tools.torch_reference import CPC
    cfg = parse_config(["--config_path", config])
    port = sorted(tuple(p.shape) for p in build_cpc(model_hparams(cfg), fast_conv=True).trainable_params())
    reference = sorted(tuple(p.shape) for p in CPC(cfg).parameters())
    assert port == reference


def test_benchmark_prints_both_frameworks_and_their_ratio(tmp_path):
    proc = run_entry(["bash", "scripts/run_benchmark.sh", TINY, "CPU", "--steps", "2", "--warmup", "1",
                      "--profile_path", str(tmp_path / "prof")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    mindspore, reference, ratio = (json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{"))
    assert mindspore["framework"] == "mindspore" and reference["framework"] == "torch"
    assert reference["steps"] == 2 and reference["batch_size"] == mindspore["batch_size"]
    np.testing.assert_allclose(ratio["step_ms_median_ratio"],
                               mindspore["step_ms_median"] / reference["step_ms_median"], atol=1e-3)
    for key in ("images_per_s", "images_per_s_best", "images_per_s_fresh", "images_per_s_fresh_best"):
        ratio_key = key.replace("images_per_s", "encoder_images_per_s") + "_ratio"
        np.testing.assert_allclose(ratio[ratio_key], mindspore[key] / reference[key], atol=1e-3)


def test_reference_rejects_bad_input_in_one_line():
    for args, message in ((["--config_path", "missing.yaml"], "config file not found"),
                          (["--config_path", TINY, "--steps", "0"], "--steps must be >= 1")):
        proc = run_entry(["tools/torch_reference.py"] + args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
