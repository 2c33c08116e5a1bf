"""The image task end to end (slow tier): train.py -> eval.py (contrastive and classify) -> export.py
--net encoder, whose MINDIR equals the Cell; bad input stops with one line and a non-zero exit."""
import json
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from src import checkpoint
from src.model.build import build_cpc, feature_size
from tests.conftest import REPO, error_lines, run_entry

CONFIG = os.path.join(REPO, "config", "cpc_image28_gray.yaml")
QUICK = ["--config_path", CONFIG, "--device_target", "CPU", "--batch_size", "8", "--code_size", "16",
         "--hidden_size", "16", "--encoder_channels", "8", "--encoder_hidden", "32"]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("image_run"))
    proc = run_entry(["train.py", *QUICK, "--output_path", out, "--epoch_size", "2", "--steps_per_epoch", "20",
                      "--val_steps", "2", "--log_interval", "10", "--precise_bn_batches", "2"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.slow
def test_train_writes_the_run_and_learns(image_run):
    names = set(os.listdir(image_run))
    assert {"cpc_best.ckpt", "cpc_last.ckpt", "encoder_best.ckpt", "metrics.json", "config.yaml",
            "training_curves.png"} <= names
    metrics = json.load(open(os.path.join(image_run, "metrics.json")))
    assert metrics["task"] == "image" and metrics["loss"] == "patch_infonce"
    assert metrics["history"][-1]["val_loss"] < metrics["history"][0]["val_loss"]
    assert metrics["val_accuracy"] > metrics["chance_accuracy"]
    # the pooled patch codes scored as digit features every epoch, well above chance (0.10)
    for epoch in metrics["history"]:
        assert epoch["knn_accuracy"] > 0.3 and epoch["probe_accuracy"] > 0.3, epoch
    meta = checkpoint.load(os.path.join(image_run, "cpc_best.ckpt"))[1]
    assert meta["hparams"]["task"] == "image" and meta["hparams"]["code_size"] == 16


@pytest.mark.slow
def test_eval_contrastive_and_classify(image_run, tmp_path):
    ckpt = os.path.join(image_run, "cpc_best.ckpt")
    proc = run_entry(["eval.py", "--config_path", CONFIG, "--ckpt_path", ckpt, "--output_path",
                      str(tmp_path / "c"), "--test_steps", "2", "--batch_size", "8"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.load(open(tmp_path / "c" / "eval_metrics.json"))
    assert result["loss"] == "patch_infonce" and result["num_images"] == 16
    proc = run_entry(["eval.py", "--eval_mode", "classify", "--config_path", CONFIG, "--ckpt_path", ckpt,
                      "--output_path", str(tmp_path / "k"), "--methods", "cpc_linear,cpc_mlp",
                      "--label_fractions", "0.1", "--head_steps", "20"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.load(open(tmp_path / "k" / "downstream_metrics.json"))["results"]
    assert {r["method"] for r in rows} == {"cpc_linear", "cpc_mlp"}
    assert all(r["test_images"] == 1000 for r in rows)


@pytest.mark.slow
def test_feature_layers_code_row_is_eval_linear_head(image_run, tmp_path):
    """tools.feature_layers' `code` layer is eval.py's cpc_linear exactly (same features, subset,
    head and seed); the other layers are scored too; a bad --layers is one line, nothing written."""
    ckpt, common = os.path.join(image_run, "cpc_best.ckpt"), ["--label_fractions", "0.1", "--head_steps", "20"]
    proc = run_entry(["eval.py", "--eval_mode", "classify", "--config_path", CONFIG, "--ckpt_path", ckpt,
                      "--output_path", str(tmp_path / "k"), "--methods", "cpc_linear", "--tsne_points", "0", *common])
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = json.load(open(tmp_path / "k" / "downstream_metrics.json"))["results"][0]["accuracy"]
    proc = run_entry(["-m", "tools.feature_layers", "--config_path", CONFIG, "--ckpt_path", ckpt, "--output_path",
                      str(tmp_path / "f"), "--layers", "code,hidden,context", "--seeds", "0", *common])
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["layer"]: r for r in json.load(open(tmp_path / "f" / "feature_layers.json"))["rows"]}
    assert rows["code"]["accuracy"] == [want]
    assert rows["code"]["features"] == 16 * 9 and rows["hidden"]["features"] == 32 * 9
    assert rows["context"]["features"] == 16 * 9 and 0.1 < rows["context"]["mean"] <= 1
    proc = run_entry(["-m", "tools.feature_layers", "--config_path", CONFIG, "--ckpt_path", ckpt, "--output_path",
                      str(tmp_path / "bad"), "--layers", "code,nope"])
    assert proc.returncode != 0 and len(error_lines(proc.stderr)) == 1 and "--layers" in proc.stderr
    assert not os.path.exists(tmp_path / "bad")


@pytest.mark.slow
def test_exported_encoder_equals_the_cell(ms_cpu, image_run, tmp_path):
    ckpt = os.path.join(image_run, "encoder_best.ckpt")
    name = str(tmp_path / "enc")
    proc = run_entry(["export.py", "--config_path", CONFIG, "--ckpt_path", ckpt, "--net", "encoder",
                      "--batch_size", "2", "--file_name", name])
    assert proc.returncode == 0, proc.stderr[-2000:]
    params, meta = checkpoint.load(ckpt)
    hparams = meta["hparams"]
    cell = build_cpc(hparams, "cpu").encoder  # its parameters keep their full names, encoder.*
    checkpoint.load_into(cell, params, ckpt)
    cell.set_train(False)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 1, 28, 28)).astype(np.float32)
    want = cell(ms.Tensor(x)).asnumpy()
    got = nn.GraphCell(ms.load(name + ".mindir"))(ms.Tensor(x)).asnumpy()
    assert got.shape == (2, feature_size(hparams))
    np.testing.assert_allclose(got, want, atol=1e-4)
    proc = run_entry(["export.py", "--config_path", CONFIG, "--ckpt_path", os.path.join(image_run, "cpc_best.ckpt"),
                      "--net", "cpc", "--file_name", str(tmp_path / "cpc")])
    assert proc.returncode != 0 and len(error_lines(proc.stderr)) == 1 and "--net cpc" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("flags, key", [(["--min_row_offset", "6"], "min_row_offset"),
                                        (["--norm", "batchy"], "norm"), (["--pool_grid", "9"], "pool_grid"),
                                        (["--directions", "3"], "directions")])
def test_bad_image_config_is_one_line(tmp_path, flags, key):
    proc = run_entry(["train.py", *QUICK, "--output_path", str(tmp_path / "o"), *flags])
    assert proc.returncode != 0
    assert len(error_lines(proc.stderr)) == 1 and key in proc.stderr
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.slow  # starts a process
def test_two_msrun_workers_train_the_image_task_together(tmp_path):
    """Data parallel on the image task: two CPU workers through msrun end with identical parameters
    (LayerNorm has no statistics to sync; the gradients are averaged), each on its own shard."""
    proc = run_entry(["bash", "scripts/run_distribute_train.sh", "CPU", "2", CONFIG, "", *QUICK[4:],
                      "--epoch_size", "2", "--steps_per_epoch", "10", "--val_steps", "2", "--log_interval", "5",
                      "--precise_bn_batches", "2"], env={"RUNS_DIR": str(tmp_path)}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run_dir,) = tmp_path.iterdir()
    ranks = [run_dir, run_dir / "rank_1"]
    metrics = [json.load(open(d / "metrics.json")) for d in ranks]
    assert [(m["rank"], m["group_size"], m["task"]) for m in metrics] == [(0, 2, "image"), (1, 2, "image")]
    assert metrics[0]["history"][0]["loss"] != metrics[1]["history"][0]["loss"]  # different shards
    first, second = (checkpoint.load(str(d / "cpc_last.ckpt"))[0] for d in ranks)
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_array_equal(first[name].asnumpy(), second[name].asnumpy(), err_msg=name)
