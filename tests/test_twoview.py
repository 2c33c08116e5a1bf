"""The two-view methods (task twoview: ntxent, supcon, margin, triplet; task cmc): their batch source,
their registry entries, each loss choice, the Lab split in the graph, the refusals; end to end
(slow) training, resume, export of the encoder, contrastive evaluation and the downstream study."""
import json
import os

import numpy as np
import pytest
from mindspore import Tensor

from src import checkpoint
from src.config import model_hparams, namespace, parse_config
from src.data.mnist import SPLITS, load_split
from src.data.twoview import build_twoview_source
from src.data.views import lab_views
from src.methods import REQUIRED, create_method
from src.model.twoview import LabSplit, top1
from src.utils.errors import ConfigError
from src.utils.streams import stream_rng
from tests.conftest import REPO, error_lines, run_entry

SIMCLR_GRAY = os.path.join(REPO, "config", "simclr_mnist28_gray.yaml")
CMC = os.path.join(REPO, "config", "cmc_mnist64_color.yaml")
# a tiny grey two-view net: compiles and steps in about a second
TINY = dict(task="twoview", image_size=28, color=False, padding="same", input_contrast=False, code_size=8,
            encoder_channels=8, encoder_hidden=16, encoder_layers=3, projection_hidden=16, projection_dim=8,
            batch_size=8)
TINY_FLAGS = [f"--{k}" if i % 2 == 0 else str(v) for k, v in TINY.items() if k != "task" for i in range(2)]


@pytest.fixture(scope="module")
def grey_data():
    return load_split("", "train")


def test_a_batch_is_a_function_of_seed_split_and_index(grey_data):
    cfg = namespace(**TINY)
    first = build_twoview_source(cfg, "train", 4, data=grey_data)
    again = build_twoview_source(cfg, "train", 2, start=2, data=grey_data)  # a resumed run's source
    for got, want in zip(again[0], first[2]):
        np.testing.assert_array_equal(got, want)
    other_seed = build_twoview_source(namespace(**dict(TINY, seed=1)), "train", 1, data=grey_data)
    assert not np.array_equal(other_seed[0][0], first[0][0])
    assert not np.array_equal(first[0][0], first[1][0])


def test_the_two_views_differ_and_keep_shape_and_range(grey_data):
    view1, view2, labels = build_twoview_source(namespace(**TINY), "train", 1, data=grey_data)[0]
    assert view1.shape == view2.shape == (8, 1, 28, 28) and view1.dtype == np.float32
    assert view1.min() >= -1.0 and view1.max() <= 1.0
    assert all(not np.array_equal(a, b) for a, b in zip(view1, view2))  # every image's two views differ


def test_the_labels_of_the_digits_drawn_are_carried(grey_data):
    """SupCon needs them: the labels are those of the very digits in the views."""
    images, all_labels = grey_data
    source = build_twoview_source(namespace(**TINY), "train", 2, data=grey_data)
    rng = stream_rng("twoview_batch", 0, split=SPLITS.index("train"), index=1)
    pick = rng.integers(0, len(images), size=8)
    labels = source[1][-1]
    assert labels.dtype == np.int32 and np.array_equal(labels, all_labels[pick])


def test_cmc_rows_hold_one_colour_image_and_its_labels():
    cfg = namespace(task="cmc", batch_size=4)
    row = create_method("cmc").build_source(cfg, "val", 1)[0]
    assert len(row) == 2 and row[0].shape == (4, 3, 64, 64) and row[1].shape == (4,)


@pytest.mark.parametrize("task", ["twoview", "cmc"])
def test_the_methods_provide_the_whole_interface(task):
    method = create_method(task)
    assert all(getattr(method, attr, None) is not None for attr in REQUIRED)
    assert {"encoder", "classifier"} <= set(method.export_nets) and "cpc" not in method.export_nets


def test_supcon_says_it_uses_the_labels():
    method = create_method("twoview")
    assert "label" in method.loss_name(namespace(**dict(TINY, contrastive_loss="supcon")))
    assert method.loss_name(namespace(**TINY)) == "ntxent"
    assert "two augmented views" in method.describe_batch(namespace(**TINY))


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
@pytest.mark.parametrize("loss", ["ntxent", "supcon", "margin", "triplet"])
def test_each_loss_builds_and_gives_a_finite_scalar(ms_cpu, grey_data, loss):
    cfg = namespace(**dict(TINY, contrastive_loss=loss))
    method = create_method("twoview")
    net = method.build_net(model_hparams(cfg), "cpu")
    row = [Tensor(a) for a in method.build_source(cfg, "train", 1, data=grey_data)[0]]
    value = method.loss_cell(net, cfg)(*row)
    assert value.shape == () and np.isfinite(value.asnumpy())
    score, accuracy = method.scorer(net, cfg)(*row)
    assert np.isfinite(score.asnumpy()) and 0.0 <= float(accuracy.asnumpy()) <= 1.0
    assert net.encoder(row[0]).shape == (8, 8)  # the backbone's codes, not the projection


def test_top1_finds_each_row_in_a_copy_and_misses_in_a_shifted_one(ms_cpu):
    codes = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    assert float(top1(Tensor(codes), Tensor(codes)).asnumpy()) == 1.0
    assert float(top1(Tensor(codes), Tensor(np.roll(codes, 1, 0))).asnumpy()) == 0.0


def test_the_graph_lab_split_matches_the_numpy_one(ms_cpu):
    images = np.random.default_rng(1).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    lightness, colour = LabSplit()(Tensor(images))
    want_l, want_ab = lab_views(images)
    np.testing.assert_allclose(lightness.asnumpy(), want_l, atol=1e-4)
    np.testing.assert_allclose(colour.asnumpy(), want_ab, atol=1e-4)


def test_the_cmc_encoder_concatenates_both_views_codes(ms_cpu):
    cfg = namespace(task="cmc", code_size=8, encoder_channels=8, encoder_hidden=16, batch_size=4)
    net = create_method("cmc").build_net(model_hparams(cfg), "cpu")
    assert net.encoder(Tensor(np.zeros((4, 3, 64, 64), np.float32))).shape == (4, 16)


@pytest.mark.parametrize("flags, key", [
    (["--config_path", CMC, "--color", "false"], "'color'"),
    (["--config_path", SIMCLR_GRAY, "--contrastive_loss", "infonce"], "'contrastive_loss'"),
    (["--config_path", SIMCLR_GRAY, "--temperature", "0"], "'temperature'"),
    (["--config_path", SIMCLR_GRAY, "--temperature", "-0.5"], "'temperature'"),
    (["--config_path", SIMCLR_GRAY, "--margin", "0"], "'margin'"),
    (["--contrastive_loss", "supcon"], "'contrastive_loss'"),  # the sequence task would ignore it
])
def test_bad_two_view_settings_are_one_line_naming_the_key(flags, key):
    with pytest.raises(ConfigError) as err:
        parse_config(flags)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_the_configs_parse_as_their_methods():
    for name, task in (("simclr_mnist64_color", "twoview"), ("simclr_mnist28_gray", "twoview"),
                       ("supcon_mnist64_color", "twoview"), ("cmc_mnist64_color", "cmc")):
        cfg = parse_config(["--config_path", os.path.join(REPO, "config", name + ".yaml")])
        assert cfg.task == task and create_method(cfg.task) is not None
    assert parse_config(["--config_path", os.path.join(REPO, "config", "supcon_mnist64_color.yaml")]) \
        .contrastive_loss == "supcon"


# --- end to end (slow) ---

def tiny_flags(out, epochs):
    return ["--config_path", SIMCLR_GRAY, *TINY_FLAGS, "--output_path", str(out), "--steps_per_epoch", "4",
            "--log_interval", "2", "--val_steps", "2", "--precise_bn_batches", "1", "--repr_train_digits", "100",
            "--repr_val_digits", "100", "--epoch_size", str(epochs), "--test_steps", "2"]


@pytest.fixture(scope="module")
def simclr_runs(tmp_path_factory):
    """A 2-epoch run straight through, and one of 1 epoch resumed to 2, in process."""
    import mindspore as ms

    from src.train.engine import train
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    data = load_split("", "train"), load_split("", "val")
    straight, split = tmp_path_factory.mktemp("straight"), tmp_path_factory.mktemp("split")
    ms.set_seed(0)
    whole = train(parse_config(tiny_flags(straight, 2)), "CPU", data)
    ms.set_seed(0)
    train(parse_config(tiny_flags(split, 1)), "CPU", data)
    ms.set_seed(0)
    resumed = train(parse_config(tiny_flags(split, 2) + ["--resume", "True"]), "CPU", data)
    return straight, whole, resumed


@pytest.mark.slow
def test_simclr_trains_and_resumes_to_the_same_losses(simclr_runs):
    straight, whole, resumed = simclr_runs
    assert (whole["task"], whole["loss"], whole["epochs"]) == ("twoview", "ntxent", 2)
    assert resumed["resumed_from"] and resumed["step_losses"] == whole["step_losses"]
    assert resumed["val_accuracy"] == whole["val_accuracy"] and np.isfinite(whole["step_losses"]).all()
    assert "knn_accuracy" in whole["history"][-1]  # the kNN / probe monitor ran on the backbone's codes
    _, meta = checkpoint.load(os.path.join(straight, "cpc_last.ckpt"))
    assert meta["hparams"]["task"] == "twoview" and meta["hparams"]["contrastive_loss"] == "ntxent"


@pytest.mark.slow
def test_export_gives_the_backbone_encoder_and_refuses_the_cpc_net(simclr_runs, tmp_path):
    straight = simclr_runs[0]
    ckpt = os.path.join(straight, "cpc_last.ckpt")
    done = run_entry(["export.py", "--ckpt_path", ckpt, "--net", "encoder", "--file_format", "MINDIR",
                      "--file_name", str(tmp_path / "encoder")])
    assert done.returncode == 0 and (tmp_path / "encoder.mindir").exists()
    refused = run_entry(["export.py", "--ckpt_path", ckpt, "--net", "cpc", "--file_name", str(tmp_path / "cpc")])
    lines = error_lines(refused.stderr)
    assert refused.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:") and "twoview" in lines[0]
    assert not (tmp_path / "cpc.mindir").exists()


@pytest.mark.slow
def test_eval_scores_the_contrastive_top1_and_classifies_with_the_frozen_encoder(simclr_runs, tmp_path):
    import eval as eval_entry
    ckpt = os.path.join(simclr_runs[0], "cpc_last.ckpt")
    eval_entry.main(["--config_path", SIMCLR_GRAY, *TINY_FLAGS, "--ckpt_path", ckpt, "--output_path",
                     str(tmp_path / "c"), "--test_steps", "2", "--device_target", "CPU"])
    with open(tmp_path / "c" / "eval_metrics.json", encoding="utf-8") as handle:
        result = json.load(handle)
    assert result["loss"] == "ntxent" and result["num_images"] == 2 * 8 and result["chance_accuracy"] == 1 / 8
    assert 0.0 <= result["test_accuracy"] <= 1.0
    eval_entry.main(["--config_path", SIMCLR_GRAY, "--ckpt_path", ckpt, "--output_path", str(tmp_path / "d"),
                     "--eval_mode", "classify", "--methods", "cpc_linear", "--label_fractions", "0.1",
                     "--head_steps", "5", "--tsne_points", "0", "--device_target", "CPU"])
    with open(tmp_path / "d" / "downstream_metrics.json", encoding="utf-8") as handle:
        downstream = json.load(handle)
    assert downstream["hparams"]["task"] == "twoview" and downstream["results"][0]["method"] == "cpc_linear"


@pytest.mark.slow
def test_train_refuses_cmc_on_grey_digits_in_one_line_writing_nothing(tmp_path):
    done = run_entry(["train.py", "--config_path", CMC, "--color", "false", "--output_path", str(tmp_path / "o")])
    lines = error_lines(done.stderr)
    assert done.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:") and "'color'" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cmc_trains_exports_both_encoders_and_classifies_on_their_codes(tmp_path):
    import mindspore as ms

    import eval as eval_entry
    from src.deploy.nets import build_inference_net
    from src.train.engine import train
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    small = ["--code_size", "8", "--encoder_channels", "8", "--encoder_hidden", "16", "--batch_size", "8",
             "--repr_train_digits", "100", "--repr_val_digits", "100", "--precise_bn_batches", "1"]
    out = tmp_path / "cmc"
    out.mkdir()  # train.py's main prepares it
    ms.set_seed(0)
    metrics = train(parse_config(["--config_path", CMC, *small, "--output_path", str(out), "--epoch_size", "1",
                                  "--steps_per_epoch", "2", "--log_interval", "1", "--val_steps", "1"]), "CPU")
    assert (metrics["task"], metrics["loss"]) == ("cmc", "cmc_lab_infonce") and metrics["chance_accuracy"] == 1 / 8
    ckpt = str(out / "cpc_last.ckpt")
    params, meta = checkpoint.load(ckpt)
    encoder = build_inference_net("encoder", meta["hparams"], params, meta, ckpt)
    assert encoder(Tensor(np.zeros((2, 3, 64, 64), np.float32))).shape == (2, 16)  # L and ab codes side by side
    done = run_entry(["export.py", "--ckpt_path", ckpt, "--net", "encoder", "--file_format", "MINDIR",
                      "--file_name", str(tmp_path / "encoder")])
    assert done.returncode == 0 and (tmp_path / "encoder.mindir").exists()
    eval_entry.main(["--config_path", CMC, "--ckpt_path", ckpt, "--output_path", str(tmp_path / "d"),
                     "--eval_mode", "classify", "--methods", "cpc_linear", "--label_fractions", "0.1",
                     "--head_steps", "5", "--tsne_points", "0", "--device_target", "CPU"])
    with open(tmp_path / "d" / "downstream_metrics.json", encoding="utf-8") as handle:
        assert json.load(handle)["hparams"]["task"] == "cmc"
