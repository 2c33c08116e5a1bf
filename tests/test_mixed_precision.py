"""Mixed precision stays inside the training step: with the O2 train cell built (for a GPU target,
on this CPU), the net that validation, PreciseBN, the representation monitor and the checkpoints
use computes and stores float32, while the loss the step differentiates runs the float16 copy
that shares its Parameters."""
import mindspore as ms
import numpy as np
import pytest
from mindspore.train.amp import _OutputTo16

from src import checkpoint
from src.config import model_hparams, namespace, parse_config
from src.data.mnist import load_split
from src.eval.precise_bn import PreciseBatchNorm, batch_norm_layers
from src.eval.represent import encode
from src.methods import create_method
from src.train.trainer import build_train_cell
from tests.conftest import TINY

SMALL = dict(encoder_layers=3, encoder_channels=8, encoder_hidden=16, code_size=8, batch_size=4, amp_level="O2")
GREY = dict(image_size=28, color=False, padding="same", input_contrast=False)
CONFIGS = {
    "sequence": lambda: parse_config(["--config_path", TINY, "--batch_size", "4", "--num_negatives", "3",
                                      "--amp_level", "O2"]),
    "image": lambda: namespace(task="image", hidden_size=8, context_layers=2, patch_size=8, patch_stride=4,
                               **GREY, **SMALL),
    "twoview": lambda: namespace(task="twoview", projection_hidden=16, projection_dim=8, **GREY, **SMALL),
    "cmc": lambda: namespace(task="cmc", padding="same", **SMALL),
}


def float16_cells(cell):
    """Names of the sub-Cells that amp marked or wrapped for float16."""
    return [name for name, sub in cell.cells_and_names()
            if isinstance(sub, _OutputTo16) or str(sub.mixed_precision_type).endswith("FP16")]


def output_dtypes(outputs):
    """The dtypes of a Cell's output tensors (nested tuples flattened)."""
    if isinstance(outputs, (tuple, list)):
        return set().union(*(output_dtypes(o) for o in outputs))
    return {outputs.dtype}


@pytest.fixture(scope="module")
def val_data():
    return load_split("", "val")


def o2_train_cell(task):
    """(cfg, method, net, train cell): the O2 train cell built for a GPU target around the device
    layers amp is used with (MindSpore builds it on CPU; the loss-scaled step itself cannot run here:
    its overflow check, NPUGetFloatStatusV2, has no CPU kernel)."""
    cfg, method = CONFIGS[task](), create_method(task)
    net = method.build_net(model_hparams(cfg), "device")
    return cfg, method, net, build_train_cell(net, cfg, "GPU", method)[0]


@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_o2_computes_a_copy_and_every_checkpoint_stays_float32(tmp_path, task):
    _, _, net, cell = o2_train_cell(task)
    assert isinstance(cell, ms.nn.TrainOneStepWithLossScaleCell)
    assert float16_cells(cell.network)  # the step's loss does run the float16 copy...
    assert float16_cells(net) == []  # ...and the run's own net is untouched
    assert {id(p) for p in cell.network.get_parameters()} == {id(p) for p in net.get_parameters()}
    for obj, name in ((cell, "cpc_last.ckpt"), (net.encoder, "encoder_best.ckpt")):
        checkpoint.save(obj, str(tmp_path / name), {"kind": name})
        saved = ms.load_checkpoint(str(tmp_path / name))
        floats = {v.dtype for v in saved.values() if isinstance(v, ms.Tensor) and v.dtype.is_floating_point}
        assert floats == {ms.float32}, name


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_o2_leaves_validation_precise_bn_and_the_monitor_in_float32(ms_cpu, val_data, task):
    cfg, method, net, _ = o2_train_cell(task)
    source = method.build_source(cfg, "val", 1, data=val_data)
    scorer, seen = method.scorer(net, cfg), set()

    def spy(*row):  # validation: what method.evaluate reads from its scorer
        outputs = scorer(*row)
        seen.update(output_dtypes(outputs))
        return outputs

    method.evaluate(net, source, spy)
    assert seen == {ms.float32}
    batches = method.calibration_batches(source)
    net.set_train(True)
    assert output_dtypes(net(*next(iter(batches())))) == {ms.float32}  # what PreciseBN runs
    PreciseBatchNorm(net, batches)()
    assert {layer.moving_mean.dtype for layer in batch_norm_layers(net)} <= {ms.float32}  # image: no BatchNorm
    channels = 3 if cfg.color else 1
    images = np.zeros((2, channels, cfg.image_size, cfg.image_size), np.float32)
    assert encode(net.encoder, images, batch=2).dtype == np.float32  # the representation monitor


@pytest.mark.slow
def test_the_float16_step_updates_the_parameters_the_float32_net_reads(ms_cpu, val_data):
    """The copy shares Parameter objects: BatchNorm statistics moved by the mixed-precision loss in
    training mode are the ones the float32 net then holds."""
    cfg, method, net, cell = o2_train_cell("sequence")
    first = batch_norm_layers(net)[0].moving_mean
    before = first.asnumpy().copy()
    row = [ms.Tensor(a) for a in method.build_source(cfg, "train", 1)[0]]
    cell.network.set_train(True)
    assert cell.network(*row).dtype == ms.float32
    assert not np.array_equal(first.asnumpy(), before)
