"""The image task's view term (view_ntxent_weight): two augmented views of each training image,
their patch grids, the patch InfoNCE plus NT-Xent between pooled codes; off by default."""
import os

import numpy as np
import pytest
from mindspore import Tensor

from src.config import model_hparams, parse_config
from src.data.patch_views import PatchViewSource
from src.data.patches import PatchSource
from src.methods import create_method
from src.utils.errors import ConfigError
from tests.conftest import REPO

GRAY = os.path.join(REPO, "config", "cpc_image28_gray.yaml")
SMALL = ["--config_path", GRAY, "--batch_size", "4", "--code_size", "8", "--hidden_size", "8",
         "--encoder_channels", "8", "--encoder_hidden", "16"]


def test_off_by_default_and_validation_stays_the_patch_task():
    cfg = parse_config(SMALL)
    method = create_method("image")
    assert cfg.view_ntxent_weight == 0 and isinstance(method.build_source(cfg, "train", 1), PatchSource)
    assert method.loss_name(cfg) == "patch_infonce"
    weighted = parse_config(SMALL + ["--view_ntxent_weight", "0.5"])
    assert isinstance(method.build_source(weighted, "val", 1), PatchSource)
    assert method.loss_name(weighted) == "patch_infonce + 0.5 ntxent"


def test_a_training_row_is_two_views_of_the_patch_batch_digits():
    cfg = parse_config(SMALL + ["--view_ntxent_weight", "0.5"])
    source = create_method("image").build_source(cfg, "train", 3)
    first, second = source[1]
    assert isinstance(source, PatchViewSource) and first.shape == second.shape and first.shape[0] == 4
    assert not np.array_equal(first, second)
    again = create_method("image").build_source(cfg, "train", 2, start=1)[0]  # a resumed source
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_the_weighted_loss_is_a_finite_scalar_above_the_patch_loss_alone(ms_cpu):
    cfg = parse_config(SMALL + ["--view_ntxent_weight", "1.0"])
    method = create_method("image")
    net = method.build_net(model_hparams(cfg), "cpu")
    row = [Tensor(a) for a in method.build_source(cfg, "train", 1)[0]]
    both = method.loss_cell(net, cfg)(*row).asnumpy()
    alone = method.loss_cell(net, parse_config(SMALL))(row[0]).asnumpy()
    assert both.shape == () and np.isfinite(both) and both > alone  # NT-Xent is > 0


@pytest.mark.parametrize("flags, key", [(["--view_ntxent_weight", "-1"], "'view_ntxent_weight'"),
                                        (["--view_ntxent_weight", "0.5", "--temperature", "0"], "'temperature'")])
def test_bad_view_term_settings_are_one_line(flags, key):
    with pytest.raises(ConfigError) as err:
        parse_config(SMALL + flags)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_the_sequence_task_refuses_the_view_term():
    with pytest.raises(ConfigError, match="'view_ntxent_weight'"):
        parse_config(["--view_ntxent_weight", "0.5"])


@pytest.mark.slow
def test_the_image_task_trains_with_the_view_term(tmp_path):
    import mindspore as ms

    from src.data.mnist import load_split
    from src.train.engine import train
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    data = load_split("", "train"), load_split("", "val")
    ms.set_seed(0)
    metrics = train(parse_config(SMALL + ["--view_ntxent_weight", "0.5", "--output_path", str(tmp_path),
                                          "--epoch_size", "1", "--steps_per_epoch", "2", "--log_interval", "1",
                                          "--val_steps", "1", "--precise_bn_batches", "1", "--repr_eval", "False"]),
                    "CPU", data)
    assert metrics["loss"] == "patch_infonce + 0.5 ntxent" and np.isfinite(metrics["step_losses"]).all()
