"""export.py: MINDIR of the encoder and the CPC net load back and match the Cells; AIR off Ascend fails."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from src import checkpoint
from src.config import model_hparams, parse_config
from src.model import build_cpc
from tests.conftest import TINY, error_lines, run_entry


@pytest.mark.parametrize("net_name", ["encoder", "cpc"])
def test_mindir_matches_cell(ms_cpu, tiny_run, tmp_path, net_name):
    out, _ = tiny_run
    name = str(tmp_path / net_name)
    proc = run_entry(["export.py", "--config_path", TINY, "--ckpt_path", str(out / "cpc_best.ckpt"),
                      "--net", net_name, "--export_batch_size", "2", "--file_name", name])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.listdir(tmp_path) == [f"{net_name}.mindir"]
    cfg = parse_config(["--config_path", TINY])
    net = build_cpc(model_hparams(cfg), fast_conv=True)  # the CPU training form of the same weights
    checkpoint.load_into(net, checkpoint.load(str(out / "cpc_best.ckpt"))[0], "cpc_best.ckpt")
    net.set_train(False)
    rng = np.random.default_rng(0)
    image = (2, 1, 28, 28)
    if net_name == "encoder":
        inputs = [rng.uniform(-1, 1, image).astype(np.float32)]
        cell = net.encoder
    else:
        inputs = [rng.uniform(-1, 1, (2, cfg.terms) + image[1:]).astype(np.float32),
                  rng.uniform(-1, 1, (2, cfg.predict_terms) + image[1:]).astype(np.float32)]
        cell = net
    graph = nn.GraphCell(ms.load(name + ".mindir"))
    expected = cell(*[ms.Tensor(x) for x in inputs]).asnumpy()
    got = graph(*[ms.Tensor(x) for x in inputs]).asnumpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_air_off_ascend_fails_cleanly(tiny_run, tmp_path):
    out, _ = tiny_run
    proc = run_entry(["export.py", "--config_path", TINY, "--ckpt_path", str(out / "cpc_best.ckpt"),
                      "--file_format", "AIR", "--file_name", str(tmp_path / "x")])
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == ["error: AIR export needs an Ascend device (this run is on CPU); "
                                        "use MINDIR or ONNX"]
    assert os.listdir(tmp_path) == []
