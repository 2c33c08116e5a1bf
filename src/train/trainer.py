"""The train step and what sizes it: the train cell, the sink size, the data read before a run.

The step is MindSpore's nn.TrainOneStepCell (or its loss-scale form under mixed precision),
compiled once in graph mode and driven by Model.train(dataset_sink_mode=True) in the engine
(src/train/engine.py): on Ascend/GPU the batches go to the device through its data channel (graph
mode: each pass runs `sink_size` steps in one call; PyNative: one step per call); on CPU MindSpore
feeds the same batches step by step (sinks_data).
"""
import math

from mindspore import nn

from src.data.mnist import load_split
from src.device import check_for_target
from src.methods import create_method
from src.model.optim import adam


def build_train_cell(net, cfg, target, method=None):
    """(train cell, optimizer): Adam + TrainOneStepCell around the method's loss of the
    (mixed-precision) net; under amp_level O2/O3 the loss-scale form with dynamic loss scaling.
    method: the src/methods entry of cfg.task unless given."""
    check_for_target(cfg, target, training=True)
    method = method or create_method(cfg.task)
    optimizer = adam(net.trainable_params(), cfg.learning_rate)
    if cfg.amp_level == "O0":
        return nn.TrainOneStepCell(method.loss_cell(net, cfg), optimizer), optimizer
    scale = nn.DynamicLossScaleUpdateCell(loss_scale_value=2 ** 16, scale_factor=2, scale_window=1000)
    loss_cell = method.loss_cell(net, cfg, cfg.amp_level)
    return nn.TrainOneStepWithLossScaleCell(loss_cell, optimizer, scale_sense=scale), optimizer


def network_subject(hparams):
    """The model keys that size the network, for a memory error: 'the network (hidden_size 100000, ...)'."""
    keys = ("image_size", "encoder_channels", "encoder_hidden", "code_size", "hidden_size")
    return "the network (" + ", ".join(f"{k} {hparams[k]}" for k in keys) + ")"


def sink_size(cfg):
    """Steps per pass of Model.train (one sink on a device): the largest number dividing the epoch,
    log_interval and save_checkpoint_steps, so log lines and checkpoints land on sink ends."""
    size = math.gcd(cfg.steps_per_epoch, cfg.log_interval)
    return math.gcd(size, cfg.save_checkpoint_steps) if cfg.save_checkpoint_steps else size


def sinks_data(target):
    """Whether Model.train(dataset_sink_mode=True) really sinks the data on `target`: MindSpore 2.10
    (mindspore/train/model.py, Model._train) falls back to per-step feeding on the CPU only, in
    graph and PyNative mode alike (PyNative then runs the sunk batches one step per call)."""
    return target != "CPU"


def load_training_data(cfg):
    """(train, val) splits as (images, labels), after checking that cfg.task names a known method:
    called before anything is written, so a bad name or bad data stops the run with nothing left behind."""
    create_method(cfg.task)
    return load_split(cfg.data_path, "train"), load_split(cfg.data_path, "val")
