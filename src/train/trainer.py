"""Training through mindspore.train.Model: the train cell, the data, the call, the metrics.

The step is MindSpore's nn.TrainOneStepCell (or its loss-scale form under mixed precision),
compiled once in graph mode and driven by Model.train(dataset_sink_mode=True): on Ascend/GPU each
call sinks `sink_size` steps to the device; on CPU MindSpore feeds the same batches step by step.
What happens around the step (loss, logs, validation, checkpoints, schedule) is in src/train/callbacks.py.
"""
import logging
import math
import os
import time

import mindspore as ms
from mindspore import nn
from mindspore.train import Model

from src.config import model_hparams, save_config
from src.data.dataset import create_train_dataset
from src.data.mnist import load_split
from src.device import check_for_target
from src.eval.precise_bn import PreciseBatchNorm
from src.eval.represent import DIGIT_CHANCE, RepresentationMonitor
from src.model.backend import backend_for
from src.model.build import build_cpc
from src.train import resume
from src.train.callbacks import EpochClock, EpochEnd, LossSum, StepMonitor, StopOnSignal
from src.train.distributed import AnyRank, BufferSync, NewestCommonStep, collective_guard, rank_and_size
from src.train.tasks import for_config
from src.utils.errors import CPCError, batch_guard, memory_guard
from src.utils.plots import plot_training_curves
from src.utils.runlog import write_json

log = logging.getLogger("cpc")


class PlateauLR:
    """Keras ReduceLROnPlateau on the validation loss: multiply by `factor` after `patience`
    epochs without improvement, never below `minimum` (the original: 1/3, 2 epochs, 1e-4)."""

    def __init__(self, lr, factor, patience, minimum):
        self.lr, self.factor, self.patience, self.minimum = lr, factor, patience, minimum
        self.best, self.wait = math.inf, 0

    def update(self, val_loss):
        """Feed one epoch's validation loss; returns the learning rate for the next epoch."""
        if val_loss < self.best:
            self.best, self.wait = val_loss, 0
        else:
            self.wait += 1
            if self.wait >= self.patience and self.lr > self.minimum:
                self.lr, self.wait = max(self.lr * self.factor, self.minimum), 0
        return self.lr


def build_train_cell(net, cfg, target):
    """(train cell, optimizer): Adam + TrainOneStepCell around the loss of the (mixed-precision) net;
    under amp_level O2/O3 the loss-scale form with dynamic loss scaling."""
    check_for_target(cfg, target, training=True)
    task = for_config(cfg)
    optimizer = nn.Adam(net.trainable_params(), learning_rate=cfg.learning_rate)
    if cfg.amp_level == "O0":
        return nn.TrainOneStepCell(task.loss_cell(net, cfg), optimizer), optimizer
    scale = nn.DynamicLossScaleUpdateCell(loss_scale_value=2 ** 16, scale_factor=2, scale_window=1000)
    loss_cell = task.loss_cell(net, cfg, cfg.amp_level)
    return nn.TrainOneStepWithLossScaleCell(loss_cell, optimizer, scale_sense=scale), optimizer


def network_subject(hparams):
    """The model keys that size the network, for a memory error: 'the network (hidden_size 100000, ...)'."""
    keys = ("image_size", "encoder_channels", "encoder_hidden", "code_size", "hidden_size")
    return "the network (" + ", ".join(f"{k} {hparams[k]}" for k in keys) + ")"


def sink_size(cfg):
    """Steps per Model.train pass (one sink on a device): the largest number dividing the epoch,
    log_interval and save_checkpoint_steps, so log lines and checkpoints land on sink ends."""
    size = math.gcd(cfg.steps_per_epoch, cfg.log_interval)
    return math.gcd(size, cfg.save_checkpoint_steps) if cfg.save_checkpoint_steps else size


def load_training_data(cfg):
    """(train, val) splits as (images, labels); read before anything is written, so bad data
    stops the run with nothing left behind."""
    return load_split(cfg.data_path, "train"), load_split(cfg.data_path, "val")


def train(cfg, target, data=None):
    """Train CPC as configured; writes checkpoints, config.yaml, metrics.json and
    training_curves.png; returns the metrics.

    data: optional (train, val) from load_training_data."""
    train_data, val_data = data if data is not None else load_training_data(cfg)
    hparams = model_hparams(cfg)
    with memory_guard(network_subject(hparams), "use smaller model keys"):
        net = build_cpc(hparams, backend_for(target))
        train_cell, optimizer = build_train_cell(net, cfg, target)
    schedule = PlateauLR(cfg.learning_rate, cfg.lr_factor, cfg.lr_patience, cfg.lr_min)
    # refuses before anything is written; data parallel: every rank from the same step
    rank, size = rank_and_size()
    with collective_guard(rank, size):
        run = resume.start(cfg, hparams, schedule, train_cell, optimizer,
                           NewestCommonStep(size, cfg.epoch_size * cfg.steps_per_epoch))
    chunk = sink_size(cfg)
    if run.step % chunk:
        raise CPCError(f"{run.resumed_from} was saved at step {run.step} of an epoch, which is not a multiple of "
                       f"the sink size {chunk} (the common divisor of steps_per_epoch, log_interval and "
                       f"save_checkpoint_steps): resume with the settings it was written with")
    save_config(cfg, os.path.join(cfg.output_path, "config.yaml"))
    side, channels = cfg.image_size, 3 if cfg.color else 1
    asked = (f"{cfg.batch_size} images {channels}x{side}x{side} cut into patches a step" if cfg.task == "image" else
             f"{cfg.batch_size} sequences of {cfg.terms} + {cfg.predict_terms} images {channels}x{side}x{side} a step")
    with batch_guard("batch_size", cfg.batch_size, asked):
        return _train(cfg, target, net, train_cell, optimizer, schedule, run, train_data, val_data)


def _train(cfg, target, net, train_cell, optimizer, schedule, run, train_data, val_data):
    """The checked run: epochs, validation, metrics.json, the curves."""
    steps, epochs, chunk = cfg.steps_per_epoch, cfg.epoch_size, sink_size(cfg)
    rank, size = rank_and_size()  # data parallel: rank k trains on batches k, k + size, ... of the source
    task = for_config(cfg)
    val_source = task.build_source(cfg, "val", cfg.val_steps, data=val_data)
    scorer, clock = task.scorer(net, cfg), EpochClock()
    # the same training batches on every rank: all ranks compute the same statistics
    precise_bn = None  # precise_bn_batches 0: validate with the moving averages, as the original
    if cfg.precise_bn_batches:
        calibration = task.build_source(cfg, "train", cfg.precise_bn_batches, data=train_data)
        precise_bn = PreciseBatchNorm(net, task.calibration_batches(calibration))
    # digit kNN / probe of the codes; both tasks' net.encoder maps whole images to codes (the image
    # task's ImageEncoder cuts the patches and pools their codes, as eval.py and export.py use it)
    represent = RepresentationMonitor(net.encoder, train_data, val_data, cfg) if cfg.repr_eval else None
    epoch_end = EpochEnd(cfg, run, net, optimizer, schedule, lambda: task.evaluate(net, val_source, scorer),
                         BufferSync(net, size), clock, precise_bn, represent)
    start = time.perf_counter()
    with StopOnSignal(run, AnyRank(size)) as stop:  # from here SIGTERM/SIGINT save, then stop
        if run.step == steps:  # resumed from a checkpoint written after an epoch's last step, before validation
            log.info("epoch %d's steps are done: validating it", run.epoch)
            epoch_end.finish()
        remaining = steps * epochs - run.global_step
        sinks = target in ("Ascend", "GPU") and cfg.mode == "graph"
        kind = task.loss_name(cfg) if cfg.task == "sequence" else f"image-task {task.loss_name(cfg)}"
        log.info("training %s CPC on %s (%s mode, %s): %d epochs x %d steps, batch %d, %d train / %d val digits",
                 kind, target, cfg.mode,
                 f"data sinking, {chunk} steps per sink" if sinks else "per-step feeding",
                 epochs, steps, cfg.batch_size, len(train_data[0]), len(val_source.images))
        if size > 1:
            # the pid lets scripts/run_distribute_train.sh name a rank msrun reports lost by its pid
            log.info("data parallel: rank %d of %d, global batch %d, pid %d", rank, size, cfg.batch_size * size,
                     os.getpid())
        if remaining > 0:
            source = task.build_source(cfg, "train", remaining * size, start=run.global_step * size, data=train_data)
            dataset = create_train_dataset(source, chunk, rank, size, cfg.num_parallel_workers)
            loss_sum = LossSum(train_cell)
            callbacks = [StepMonitor(cfg, run, loss_sum, clock), epoch_end, stop]
            with collective_guard(rank, size):
                Model(loss_sum).train(remaining // chunk, dataset, callbacks=callbacks, dataset_sink_mode=True,
                                      sink_size=chunk)
    val = epoch_end.last_val or task.evaluate(net, val_source, scorer)  # resuming a finished run: validate only
    trained, seconds = epoch_end.trained_steps, epoch_end.step_seconds
    history = run.history
    metrics = {"val_accuracy": history[-1]["val_accuracy"], "best_val_accuracy": run.best_acc,
               "chance_accuracy": val["chance_accuracy"], "task": cfg.task, "loss": task.loss_name(cfg),
               "epochs": len(history),
               "digit_chance_accuracy": DIGIT_CHANCE if represent is not None else None,
               "repr_digits": represent.sizes() if represent is not None else None,
               "steps": epochs * steps, "resumed_from": run.resumed_from,
               "train_seconds": round(time.perf_counter() - start, 3),
               "samples_per_second": round(trained * cfg.batch_size / seconds, 2) if trained and seconds else None,
               "device_target": target, "mode": cfg.mode, "dataset_sink_mode": sinks,
               "sink_size": chunk if sinks else 1, "amp_level": cfg.amp_level, "rank": rank, "group_size": size,
               "mindspore_version": ms.__version__, "history": history, "step_losses": run.step_losses}
    write_json(os.path.join(cfg.output_path, "metrics.json"), metrics)
    plot_training_curves(history, metrics["chance_accuracy"], os.path.join(cfg.output_path, "training_curves.png"),
                         DIGIT_CHANCE)
    log.info("done: val_acc %.4f (best %.4f, chance %.3f) in %.1f s; checkpoints in %s",
             metrics["val_accuracy"], run.best_acc, metrics["chance_accuracy"], metrics["train_seconds"],
             cfg.output_path)
    return metrics
