"""Pre-training methods: what a method must provide, the registry that finds them by name, and a
toy method trained, resumed and evaluated through the unchanged engine and eval.py."""
import json
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src import checkpoint
from src.config import parse_config
from src.data.mnist import load_split
from src.methods import REQUIRED, create_method, method_names, method_of_checkpoint, register_method
from src.methods.sequence import SequenceMethod
from src.utils.errors import ConfigError
from tests.conftest import REPO, TINY

# what a new method (SimCLR, SupCon, CMC, ...) must define: the whole interface, nothing else
INTERFACE = {"unit", "export_nets", "loss_name", "describe_batch", "build_net", "build_source", "loss_cell",
             "scorer", "evaluate", "calibration_batches"}


def test_the_interface_is_what_a_method_must_provide():
    assert set(REQUIRED) == INTERFACE
    for name in ("sequence", "image"):
        method = create_method(name)
        assert all(getattr(method, attr, None) is not None for attr in INTERFACE), name
        assert {"encoder", "classifier"} <= set(method.export_nets)  # eval/export use every net's encoder


def test_an_unknown_method_is_one_line_naming_the_known_ones():
    with pytest.raises(ConfigError) as err:
        create_method("simclr_typo")
    assert "'simclr_typo'" in str(err.value) and "image, sequence" in str(err.value) and "\n" not in str(err.value)


def test_a_method_lacking_part_of_the_interface_is_refused_at_registration():
    class Half(SequenceMethod):
        scorer = None

    with pytest.raises(TypeError, match="lacks scorer"):
        register_method("half", Half)
    assert "half" not in method_names()


def test_eval_refuses_an_unknown_method_name_before_writing(tmp_path):
    """The mode flag was once --task: `eval.py --task classify` now names a method, which is refused."""
    import eval as eval_entry
    with pytest.raises(ConfigError, match="'classify'"):
        eval_entry.main(["--config_path", TINY, "--task", "classify", "--output_path", str(tmp_path / "o"),
                         "--ckpt_path", os.path.join(REPO, "pretrained", "cpc_mnist64_color.ckpt")])
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_names_its_method():
    cfg = parse_config(["--config_path", TINY])
    assert method_of_checkpoint(cfg, {"hparams": {"code_size": 4}}) is create_method("sequence")  # no task: sequence
    assert method_of_checkpoint(cfg, {"hparams": {"task": "image"}}) is create_method("image")
    assert method_of_checkpoint(cfg, None) is create_method(cfg.task)


class SquaredErrorLoss(nn.Cell):
    """The toy's loss: squared error of the sorted/random probability (not the binary cross-entropy)."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, x, y, label):
        return ops.reduce_mean(ops.square(ops.sigmoid(self.net(x, y)) - label))


class ToyMethod(SequenceMethod):
    """A method the engine has never seen: the sequence data and net with its own loss."""

    @staticmethod
    def loss_name(cfg):
        return "toy_squared_error"

    @staticmethod
    def loss_cell(net, cfg, amp_level="O0"):
        return SquaredErrorLoss(net)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    register_method("toy", ToyMethod)
    from src.train.engine import train
    out = tmp_path_factory.mktemp("toy")
    flags = ["--config_path", TINY, "--task", "toy", "--output_path", str(out), "--steps_per_epoch", "6",
             "--log_interval", "3", "--val_steps", "2", "--precise_bn_batches", "1", "--repr_eval", "False"]
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    data = load_split("", "train"), load_split("", "val")
    ms.set_seed(0)
    metrics = train(parse_config(flags + ["--epoch_size", "1"]), "CPU", data)
    ms.set_seed(0)
    resumed = train(parse_config(flags + ["--epoch_size", "2", "--resume", "True"]), "CPU", data)
    return out, flags, metrics, resumed


@pytest.mark.slow
def test_the_engine_trains_and_resumes_a_registered_toy_method_unedited(toy_run):
    out, _, metrics, resumed = toy_run
    assert (metrics["task"], metrics["loss"], metrics["epochs"]) == ("toy", "toy_squared_error", 1)
    assert resumed["epochs"] == 2 and resumed["resumed_from"].endswith("cpc_e2_s6.ckpt")
    assert all(0.0 <= loss <= 1.0 for loss in resumed["step_losses"]) and len(resumed["step_losses"]) == 12
    _, meta = checkpoint.load(os.path.join(out, "cpc_last.ckpt"))
    assert meta["hparams"]["task"] == "toy"  # eval.py and export.py find the method from the checkpoint
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as handle:
        assert json.load(handle)["history"][-1]["val_accuracy"] == resumed["val_accuracy"]


@pytest.mark.slow
def test_eval_scores_a_toy_checkpoint_through_its_method(toy_run, tmp_path):
    import eval as eval_entry
    out, _, _, _ = toy_run
    eval_entry.main(["--config_path", TINY, "--ckpt_path", os.path.join(out, "cpc_last.ckpt"), "--output_path",
                     str(tmp_path), "--test_steps", "2", "--device_target", "CPU"])
    with open(tmp_path / "eval_metrics.json", encoding="utf-8") as handle:
        result = json.load(handle)
    assert result["loss"] == "toy_squared_error" and result["num_sequences"] == 2 * 16
    assert np.isfinite(result["test_loss"]) and 0.0 <= result["test_accuracy"] <= 1.0
