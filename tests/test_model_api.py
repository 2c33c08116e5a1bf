"""The Ascend/GPU half of training, executed on CPU where MindSpore allows it: the mixed-precision
train cell built for a GPU target, the loss summed on the device, sink-sized callbacks, the chunked
data passes that Model.train(dataset_sink_mode=True) reads, and the resume checks."""
import math
import types

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from src.config import model_hparams, parse_config
from src.data.dataset import build_source, create_train_dataset
from src.model.backend import backend_for
from src.model.build import build_cpc
from src.train.callbacks import EpochClock, LossSum, StepMonitor, take_loss
from src.train.engine import Engine
from src.train.resume import RunState
from src.train.schedule import PlateauLR
from src.train.trainer import build_train_cell, sink_size, sinks_data
from src.utils.errors import CPCError
from tests.conftest import TINY


def _cfg(*flags):
    return parse_config(["--config_path", TINY, "--batch_size", "4", "--num_negatives", "3", *flags])


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["binary", "infonce"])
def test_amp_o2_train_cell_for_gpu_computes_a_float16_copy_and_a_float32_loss(ms_cpu, loss):
    """Built for a GPU target (cells only): the loss wraps what ms.amp.auto_mixed_precision returned
    for a Parameter-sharing copy of the net, and the loss, run here on the CPU, is float32. (The loss-scaled step
    itself cannot run on CPU: its overflow check is an Ascend/GPU kernel.)"""
    cfg = _cfg("--amp_level", "O2", "--loss", loss)
    net = build_cpc(model_hparams(cfg), "device")  # the Ascend/GPU form: nn.Conv2d
    cell, _ = build_train_cell(net, cfg, "GPU")
    assert isinstance(cell, nn.TrainOneStepWithLossScaleCell)
    row = [ms.Tensor(a) for a in build_source(cfg, "train", 1)[0]]
    assert net(row[0], row[1]).dtype == ms.float32  # O2 computes a copy: the run's net stays float32
    assert all(p.dtype == ms.float32 for p in net.get_parameters())  # float16 compute, float32 parameters
    loss_value = cell.network(*row)
    assert loss_value.dtype == ms.float32 and math.isfinite(float(loss_value.asnumpy()))
    plain = build_cpc(model_hparams(cfg), "device")
    ms.load_param_into_net(plain, {p.name: p for p in net.get_parameters()})
    reference = build_train_cell(plain, _cfg("--loss", loss), "CPU")[0].network(*row)  # float32 everywhere
    assert float(loss_value.asnumpy()) == pytest.approx(float(reference.asnumpy()), abs=0.02)


@pytest.mark.parametrize("level, target, message", [
    ("O1", "GPU", "amp_level O1 is not supported"),
    ("O2", "CPU", "amp_level O2 needs Ascend or GPU"),
])
def test_amp_levels_refused_with_one_line(ms_cpu, level, target, message):
    cfg = _cfg("--amp_level", level)
    with pytest.raises(CPCError) as err:
        build_train_cell(build_cpc(model_hparams(cfg), backend_for(target)), cfg, target)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.slow
def test_loss_sum_adds_every_step_on_the_device(ms_cpu):
    cfg = _cfg()
    net = build_cpc(model_hparams(cfg), "cpu")
    cell, _ = build_train_cell(net, cfg, "CPU")
    summed = LossSum(cell)
    summed.set_train()
    source = build_source(cfg, "train", 3)
    losses = [float(summed(*(ms.Tensor(a) for a in source[i])).asnumpy()) for i in range(3)]
    assert take_loss(summed) == pytest.approx(sum(losses), rel=1e-6)
    assert take_loss(summed) == 0.0  # read and cleared
    assert "loss_sum" not in {p.name for p in cell.get_parameters()}  # checkpoints of the train cell lack it


@pytest.mark.parametrize("target, mode, sinks, feeding", [
    ("CPU", "graph", False, "per-step feeding"),
    ("CPU", "pynative", False, "per-step feeding"),
    ("GPU", "graph", True, "data sinking, 5 steps per sink"),
    ("Ascend", "pynative", True, "data sinking, one step per call (PyNative)"),
])
def test_metrics_say_sunk_whenever_mindspore_sinks(target, mode, sinks, feeding):
    """Model.train(dataset_sink_mode=True) sinks on every target but the CPU, in PyNative mode too
    (mindspore/train/model.py, Model._train): what metrics.json's dataset_sink_mode and the log say."""
    engine = types.SimpleNamespace(target=target, chunk=5, cfg=types.SimpleNamespace(mode=mode))
    engine.sinks = lambda: Engine.sinks(engine)
    assert sinks_data(target) is sinks and Engine.sinks(engine) is sinks
    assert Engine.feeding(engine) == feeding


def test_sink_size_divides_the_epoch_the_log_and_the_checkpoints():
    cfg = parse_config(["--config_path", TINY, "--steps_per_epoch", "390", "--log_interval", "50"])
    assert sink_size(cfg) == 10
    cfg = parse_config(["--config_path", TINY, "--steps_per_epoch", "400", "--log_interval", "100",
                        "--save_checkpoint_steps", "40"])
    assert sink_size(cfg) == 20


def test_chunked_passes_read_the_batches_once_in_order(ms_cpu):
    """Each pass of the training dataset (one Model epoch = one sink) yields the next `chunk`
    batches; data parallel ranks interleave; nothing is read twice or skipped."""
    class Rows:
        columns = ("x",)

        def __len__(self):
            return 24

        def __getitem__(self, index):
            return (np.array([index], np.int32),)

    for rank in (0, 1):
        dataset = create_train_dataset(Rows(), 4, rank=rank, size=2, num_parallel_workers=2)
        assert dataset.get_dataset_size() == 4
        iterator = dataset.create_tuple_iterator(num_epochs=3)
        passes = [[int(row[0].asnumpy()[0]) for row in iterator] for _ in range(3)]
        assert passes == [list(range(8 * p + rank, 8 * p + 8, 2)) for p in range(3)]
    with pytest.raises(ValueError, match="not whole passes"):
        create_train_dataset(Rows(), 5)


class _Sum:
    """Stands in for LossSum: the sum of the losses of the steps since the last read."""

    def __init__(self):
        self.loss_sum = ms.Parameter(ms.Tensor(0.0, ms.float32), name="loss_sum")


def _monitor_run(losses, per_call, tmp_path):
    cfg = parse_config(["--config_path", TINY, "--steps_per_epoch", str(len(losses)), "--log_interval", "4",
                        "--output_path", str(tmp_path)])
    run = RunState(cfg, model_hparams(cfg), PlateauLR(1e-3, 0.5, 2, 1e-4), train_cell=None)
    summed, params = _Sum(), types.SimpleNamespace(cur_step_num=0)
    monitor = StepMonitor(cfg, run, summed, EpochClock())
    context = types.SimpleNamespace(original_args=lambda: params)
    monitor.on_train_epoch_begin(context)
    for start in range(0, len(losses), per_call):  # what the device did during one call
        summed.loss_sum.set_data(ms.Tensor(np.float32(sum(losses[start:start + per_call])), ms.float32))
        params.cur_step_num += per_call
        monitor.on_train_step_end(context)
    return run


def test_sunk_steps_give_the_same_epoch_loss_as_steps_fed_one_by_one(tmp_path):
    losses = [0.7, 0.65, 0.6, 0.62, 0.5, 0.45, 0.4, 0.41]
    fed, sunk = _monitor_run(losses, 1, tmp_path / "fed"), _monitor_run(losses, 4, tmp_path / "sunk")
    assert fed.step == sunk.step == len(losses)
    assert fed.epoch_losses == pytest.approx(losses) and len(sunk.epoch_losses) == 2
    assert np.mean(sunk.epoch_losses) == pytest.approx(np.mean(losses), rel=1e-6)


def test_nan_in_a_sink_stops_naming_the_sink_end(tmp_path):
    with pytest.raises(CPCError, match="loss became nan at epoch 1 step 8; no checkpoint"):
        _monitor_run([0.7, 0.6, 0.5, 0.4, 0.3, float("nan"), 0.2, 0.1], 4, tmp_path)


def test_amp_level_is_part_of_the_resume_check():
    cfg = parse_config(["--config_path", TINY, "--amp_level", "O2"])
    hparams = model_hparams(cfg)
    run = RunState(cfg, hparams, PlateauLR(1e-3, 0.5, 2, 1e-4), train_cell=None)
    written = {k: getattr(cfg, k) for k in ("seed", "batch_size", "steps_per_epoch", "num_negatives",
                                             "negatives_across_steps")}
    for meta_run in (dict(written, amp_level="O0"), written):  # an older checkpoint has no amp_level: O0
        with pytest.raises(CPCError, match="amp_level 'O0' != 'O2'"):
            run.restore({"hparams": hparams, "run": meta_run}, "cpc_e1_s5.ckpt")


def test_any_rank_asks_every_rank_once_built():
    from src.train.distributed import AnyRank
    built = []

    class Sum:  # stands in for the AllReduce Cell: two ranks, the other one signalled
        def __init__(self):
            built.append(self)

        def __call__(self, value):
            return value + ms.Tensor(np.array([1.0], np.float32))

    assert AnyRank(1)(True) and not AnyRank(1)(False)
    agree = AnyRank(2, reducer=Sum())
    assert agree(False) and agree(True) and len(built) == 1


def test_a_stop_request_of_another_rank_saves_here_too(tmp_path):
    """Data parallel: a rank that got no signal stops at the same pass end, with its own checkpoint."""
    import signal

    from src.train.callbacks import StopOnSignal, StopRequested
    cfg = parse_config(["--config_path", TINY, "--output_path", str(tmp_path)])
    run = RunState(cfg, model_hparams(cfg), PlateauLR(1e-3, 0.5, 2, 1e-4), train_cell=None)
    run.step = 40
    saved = []
    run.save = lambda cell: saved.append(run.current_path()) or saved[-1]
    with StopOnSignal(run, any_rank=lambda flag: True) as stop:
        with pytest.raises(StopRequested) as err:
            stop.on_train_epoch_end(None)
    assert saved == [str(tmp_path / "cpc_e1_s40.ckpt")] and err.value.exit_code == 128 + signal.SIGTERM
    assert "stopped by another rank's stop request at epoch 1 step 40" in str(err.value)
    with StopOnSignal(run, any_rank=lambda flag: flag) as stop:
        stop.on_train_epoch_end(None)  # no signal anywhere: training goes on
    assert len(saved) == 1


def test_resume_takes_checkpoints_written_before_the_encoder_shape_keys(tmp_path):
    """A rolling checkpoint of an earlier version has no encoder_layers/channels/hidden (the default
    encoder) and no amp_level (O0): it resumes; a different encoder width still does not."""
    cfg = parse_config(["--config_path", TINY, "--output_path", str(tmp_path)])
    hparams = model_hparams(cfg)
    run = RunState(cfg, hparams, PlateauLR(1e-3, 0.5, 2, 1e-4), train_cell=None)
    old = {k: v for k, v in hparams.items() if not k.startswith("encoder_")}
    written = {k: getattr(cfg, k) for k in ("seed", "batch_size", "steps_per_epoch", "num_negatives",
                                             "negatives_across_steps")}
    meta = {"hparams": old, "run": written, "epoch": 2, "step": 5, "schedule": {"lr": 1e-3, "best": 0.5, "wait": 0},
            "best_val_accuracy": 0.6, "history": [], "epoch_losses": [0.5] * 5, "step_losses": [0.5] * 105}
    run.restore(meta, "cpc_e2_s105.ckpt")
    assert (run.epoch, run.step) == (2, 5)
    with pytest.raises(CPCError, match="encoder_channels 32 != 64"):
        run.restore(dict(meta, hparams=dict(old, encoder_channels=32)), "cpc_e2_s105.ckpt")
