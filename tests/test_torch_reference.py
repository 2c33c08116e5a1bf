"""tools/torch_reference.py, the benchmark's PyTorch side: the same network as the port, and the
comparison line of scripts/run_benchmark.sh. Needs torch (optional, not in requirements): skipped
without it."""
import json
import math

import numpy as np
import pytest

from src.config import model_hparams, parse_config
from tests.conftest import REPO, TINY, run_entry

torch = pytest.importorskip("torch")

IMAGE28, IMAGE64 = f"{REPO}/config/cpc_image28_gray.yaml", f"{REPO}/config/cpc_image64_color.yaml"
# small image nets (the shapes and the loss are what is checked, not the speed)
SMALL_IMAGE = ["--batch_size", "4", "--code_size", "16", "--hidden_size", "16", "--encoder_channels", "8",
               "--encoder_hidden", "32"]
NORMS = ("layer", "group", "batch", "none")


def image_nets(config, norm="layer"):
    """(config, the port's ImageCPC, the reference's), each initialised its own way from the config's seed."""
    import mindspore as ms

    from src.model.build import build_cpc
    from tools.torch_reference import ImageCPC
    cfg = parse_config(["--config_path", config, "--norm", norm] + SMALL_IMAGE)
    ms.set_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    return cfg, build_cpc(model_hparams(cfg), "cpu"), ImageCPC(cfg)


def patch_source(cfg):
    """The port's own source of training patch grids (batch 0: [B, G*G, C, P, P])."""
    from src.methods import create_method
    return create_method("image").build_source(cfg, "train", 1)


@pytest.mark.parametrize("config", [TINY, f"{REPO}/config/cpc_mnist64_color.yaml",
                                    f"{REPO}/config/cpc_mnist28_gray.yaml"])
def test_reference_has_the_ports_trainable_parameters(ms_cpu, config):
    from src.model.build import build_cpc
    from tools.torch_reference import CPC
    cfg = parse_config(["--config_path", config])
    port = sorted(tuple(p.shape) for p in build_cpc(model_hparams(cfg), "cpu").trainable_params())
    reference = sorted(tuple(p.shape) for p in CPC(cfg).parameters())
    assert port == reference


def test_weight_copy_refuses_a_name_the_reference_lacks(ms_cpu):
    from tools.torch_reference import copy_port_weights
    _, port, reference = image_nets(IMAGE28)
    named = {p.name: p.asnumpy() for p in port.get_parameters()}
    with pytest.raises(ValueError, match="the port gave no value"):
        copy_port_weights({k: v for k, v in named.items() if not k.startswith("predictor.")}, reference)
    with pytest.raises(ValueError, match="no tensor"):
        copy_port_weights(dict(named, **{"encoder.patch_encoder.extra.weight": named["predictor.weight"]}), reference)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("config", [IMAGE28, IMAGE64])
def test_image_reference_has_the_ports_trainable_parameters(ms_cpu, config, norm):
    from tools.benchmark import trainable_scalars
    from tools.torch_reference import parameter_count
    _, port, reference = image_nets(config, norm)
    # in the same order and shapes (the masked convs' weights are the port's Dense [Cout, 9 * Cin] in both)
    assert [tuple(p.shape) for p in port.trainable_params()] == [tuple(p.shape) for p in reference.parameters()]
    assert trainable_scalars(port) == parameter_count(reference)


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
@pytest.mark.parametrize("norm", NORMS)
def test_image_reference_computes_the_ports_function(ms_cpu, norm):
    """With the port's weights copied in, the reference gives the port's pooled codes (inference mode)
    and patch InfoNCE loss (training mode: batch statistics) on the same colour images and patches."""
    from mindspore import Tensor

    from src.data.dataset import render_digits
    from src.model.patch_loss import PatchInfoNCEWithLoss
    from tools.torch_reference import copy_port_weights, image_loss
    cfg, port, reference = image_nets(IMAGE64, norm)
    with torch.no_grad():  # by name: the reference's modules are named as the port's Cells and encoder stages
        copy_port_weights({p.name: p.asnumpy() for p in port.get_parameters()}, reference)
    source = patch_source(cfg)
    patches = source[0][0]
    images = render_digits(source.images[:cfg.batch_size], cfg.image_size, cfg.color, cfg.seed, "train")
    port.set_train(False)
    reference.eval()
    with torch.no_grad():
        np.testing.assert_allclose(port.encoder(Tensor(images)).asnumpy(),
                                   reference.encoder(torch.from_numpy(images)).numpy(), atol=2e-5)
    port.set_train(True)
    reference.train()
    port_loss = float(PatchInfoNCEWithLoss(port, port.grid, port.offsets, cfg.batch_size)(Tensor(patches)).asnumpy())
    with torch.no_grad():
        reference_loss = image_loss(reference, cfg.batch_size)(torch.from_numpy(patches)).item()
    np.testing.assert_allclose(port_loss, reference_loss, rtol=1e-5)


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_image_step_starts_near_chance_in_both_frameworks(ms_cpu):
    """One training step's loss at initialisation is about ln(B*G*G): nothing learnt, every one of the
    batch's patch codes as likely as the true one."""
    from mindspore import Tensor

    from src.train.trainer import build_train_cell
    from tools.torch_reference import image_loss, train_step
    cfg, port, reference = image_nets(IMAGE28)
    patches = patch_source(cfg)[0][0]
    chance = math.log(cfg.batch_size * port.grid ** 2)
    cell, _ = build_train_cell(port, cfg, "CPU")
    cell.set_train()
    port_loss = float(cell(Tensor(patches)).asnumpy())
    loss = image_loss(reference, cfg.batch_size)
    reference_loss = train_step(reference, lambda: loss(torch.from_numpy(patches)), cfg.learning_rate)()
    for value in (port_loss, reference_loss):
        # above chance by the spread of random logits: the port's Xavier init gives a wider one than
        # PyTorch's default (measured: up to ~1.3x chance over seeds for the port, ~1.01x for PyTorch)
        assert math.isfinite(value) and 0.9 * chance < value < 1.5 * chance, (value, chance)


@pytest.mark.parametrize("config, flags", [(TINY, []), (IMAGE28, SMALL_IMAGE)], ids=["sequence", "image"])
@pytest.mark.slow  # starts a process
def test_benchmark_prints_both_frameworks_and_their_ratio(tmp_path, config, flags):
    proc = run_entry(["bash", "scripts/run_benchmark.sh", "CPU", config, "--steps", "2", "--warmup", "1",
                      "--profile_path", str(tmp_path / "prof")] + flags)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mindspore, reference, ratio = (json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{"))
    assert mindspore["framework"] == "mindspore" and reference["framework"] == "torch"
    assert reference["steps"] == 2 and reference["batch_size"] == mindspore["batch_size"]
    assert reference.get("task") == mindspore.get("task") and reference.get("parameters") == mindspore.get("parameters")
    np.testing.assert_allclose(ratio["step_ms_median_ratio"],
                               mindspore["step_ms_median"] / reference["step_ms_median"], atol=1e-3)
    for key in ("images_per_s", "images_per_s_best", "images_per_s_fresh", "images_per_s_fresh_best"):
        ratio_key = key.replace("images_per_s", "encoder_images_per_s") + "_ratio"
        np.testing.assert_allclose(ratio[ratio_key], mindspore[key] / reference[key], atol=1e-3)
    # --profile_path reached the reference as --profile: its torch.profiler tables, steps then inference
    headers = [line for line in proc.stderr.splitlines() if line.startswith("torch.profiler: ")]
    assert [h.split(",")[0] for h in headers] == ["torch.profiler: steps", "torch.profiler: encoder inference calls"]


@pytest.mark.slow  # starts a process
def test_reference_rejects_bad_input_in_one_line():
    for args, message in ((["--config_path", "missing.yaml"], "config file not found"),
                          (["--config_path", TINY, "--steps", "0"], "--steps must be >= 1")):
        proc = run_entry(["tools/torch_reference.py"] + args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
