"""tools/torch_twoview.py, the benchmark's PyTorch side of the two-view methods: the port's trainable
parameters, and with the port's weights copied in, the port's training loss on the same batch
(twoview with each loss, cmc, the image task's view term). Needs torch (optional, not in
requirements): skipped without it."""
import json

import numpy as np
import pytest

from src.config import model_hparams, parse_config
from tests.conftest import REPO, run_entry

torch = pytest.importorskip("torch")

SIMCLR, CMC = f"{REPO}/config/simclr_mnist64_color.yaml", f"{REPO}/config/cmc_mnist64_color.yaml"
IMAGE64 = f"{REPO}/config/cpc_image64_color.yaml"
# small nets: the loss is what is compared, not the speed
SMALL = ["--batch_size", "8", "--code_size", "16", "--encoder_channels", "8", "--encoder_hidden", "32"]
SMALL_TWOVIEW = SMALL + ["--projection_hidden", "24", "--projection_dim", "12"]
SMALL_IMAGE = SMALL + ["--hidden_size", "16", "--view_ntxent_weight", "0.5"]
TOL = 1e-5


def nets(config, flags):
    """(config, the port's net, its twin), each initialised its own way from the config's seed."""
    import mindspore as ms

    from src.methods import create_method
    from tools import torch_twoview
    from tools.torch_reference import ImageCPC
    cfg = parse_config(["--config_path", config] + flags)
    ms.set_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    twin = {"twoview": torch_twoview.TwoViewNet, "cmc": torch_twoview.CMCNet, "image": ImageCPC}[cfg.task](cfg)
    return cfg, create_method(cfg.task).build_net(model_hparams(cfg), "cpu"), twin


def twin_loss(cfg, twin):
    """The twin's training loss as a function of a training row's tensors."""
    from tools import torch_twoview
    make = {"twoview": torch_twoview.twoview_loss, "cmc": torch_twoview.cmc_loss,
            "image": torch_twoview.patch_views_loss}[cfg.task]
    return make(twin, cfg)


@pytest.mark.parametrize("config", [SIMCLR, CMC])
def test_twins_have_the_ports_trainable_parameters(ms_cpu, config):
    from tools.benchmark import trainable_scalars
    from tools.torch_reference import parameter_count
    _, port, twin = nets(config, [])
    assert [tuple(p.shape) for p in port.trainable_params()] == [tuple(p.shape) for p in twin.parameters()]
    assert trainable_scalars(port) == parameter_count(twin)


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
@pytest.mark.parametrize("config, flags", [
    (SIMCLR, SMALL_TWOVIEW), (SIMCLR, SMALL_TWOVIEW + ["--contrastive_loss", "supcon"]),
    (SIMCLR, SMALL_TWOVIEW + ["--contrastive_loss", "margin"]),
    (SIMCLR, SMALL_TWOVIEW + ["--contrastive_loss", "triplet"]), (CMC, SMALL), (IMAGE64, SMALL_IMAGE)],
    ids=["ntxent", "supcon", "margin", "triplet", "cmc", "image_view_term"])
def test_twin_gives_the_ports_loss_on_copied_weights(ms_cpu, config, flags):
    """Training mode (batch statistics) in both, on the first training row of the port's own source."""
    from mindspore import Tensor

    from src.methods import create_method
    from tools.torch_reference import copy_port_weights
    cfg, port, twin = nets(config, flags)
    with torch.no_grad():  # by name: the twin's modules are named as the port's Cells
        copy_port_weights({p.name: p.asnumpy() for p in port.get_parameters()}, twin)
    row = create_method(cfg.task).build_source(cfg, "train", 1)[0]
    port.set_train(True)
    twin.train()
    port_loss = float(create_method(cfg.task).loss_cell(port, cfg)(*(Tensor(a) for a in row)).asnumpy())
    with torch.no_grad():
        twin_value = twin_loss(cfg, twin)(*(torch.from_numpy(np.asarray(a)) for a in row)).item()
    assert np.isfinite(port_loss) and port_loss > 0
    assert twin_value == pytest.approx(port_loss, abs=TOL)


@pytest.mark.slow  # starts a process
# one method through the script (CI time): the twoview and view-term twins' losses are compared in
# process above, and tools.benchmark picks each method's twin the same way
@pytest.mark.parametrize("config, flags", [(CMC, SMALL)], ids=["cmc"])
def test_benchmark_times_the_port_and_its_twin_in_one_run(config, flags):
    proc = run_entry(["bash", "scripts/run_benchmark.sh", "CPU", config, "--steps", "2", "--warmup", "1"] + flags)
    assert proc.returncode == 0, proc.stderr[-2000:]
    port, twin, ratio = (json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{"))
    assert port["framework"] == "mindspore" and twin["framework"] == "torch"
    for key in ("task", "loss", "parameters", "batch_size", "steps"):
        assert port[key] == twin[key], key
    assert port["task"] == parse_config(["--config_path", config]).task and port["data_images_per_s"] > 0
    np.testing.assert_allclose(ratio["step_ms_median_ratio"], port["step_ms_median"] / twin["step_ms_median"],
                               atol=1e-3)
