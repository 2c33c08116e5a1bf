"""The end of an epoch as a list of named steps, run in order by the engine (src/train/engine.py).

Each step is `step(engine, epoch)` with one job: `engine` holds the run's parts (cfg, state, net,
train_cell, optimizer, schedule, precise_bn, buffer_sync, validate, represent), `epoch` (EpochEnd)
what the steps before it found. The order matters: BatchNorm statistics are set before validation,
the record before the checkpoints that carry it, the schedule before the rolling checkpoint that
stores its state.
"""
import logging
import os

import mindspore as ms
import numpy as np
from mindspore import Tensor

from src import checkpoint as ckpt
from src.eval.evaluate import format_per_step
from src.eval.represent import DIGIT_CHANCE

log = logging.getLogger("cpc")


class EpochEnd:
    """What one epoch's end has found so far: its training time, then the validation result, the
    representation figures, the history record, whether it is the best epoch, the rate it trained at."""

    def __init__(self, first_step, seconds, lr_used):
        self.first_step, self.seconds, self.lr_used = first_step, seconds, lr_used
        self.val, self.figures, self.record, self.best = None, {}, None, False


def calibrate_bn(engine, epoch):
    """BatchNorm statistics of the current weights (PreciseBN, src/eval/precise_bn.py); off with
    precise_bn_batches 0 (validate with the moving averages, as the original)."""
    if engine.precise_bn is not None:
        engine.precise_bn()


def sync_buffers(engine, epoch):
    """BatchNorm statistics averaged across ranks (each saw only its own data)."""
    engine.buffer_sync()


def validate(engine, epoch):
    epoch.val = engine.validate()


def represent(engine, epoch):
    """The codes as digit features: kNN and linear probe (src/eval/represent.py); off with repr_eval false."""
    if engine.represent is not None:
        epoch.figures = engine.represent()


def history_record(cfg, epoch, run_epoch, losses):
    """The epoch's entry of metrics.json's history."""
    val, trained = epoch.val, cfg.steps_per_epoch - epoch.first_step
    record = {"epoch": run_epoch, "loss": float(np.mean(losses)), "val_loss": val["loss"],
              "val_accuracy": val["accuracy"], "learning_rate": epoch.lr_used,
              "epoch_seconds": round(epoch.seconds, 3),
              "samples_per_second": round(trained * cfg.batch_size / max(epoch.seconds, 1e-9), 2)}
    if "collision_rate" in val:
        record["val_collision_rate"] = val["collision_rate"]
    if "accuracy_per_step" in val:  # the sequence task's future steps (the image task has row offsets)
        record.update(val_accuracy_per_step=val["accuracy_per_step"], val_loss_per_step=val["loss_per_step"])
    record.update(epoch.figures)
    return record


def record(engine, epoch):
    """The history record into the run state, and the epoch's log lines."""
    cfg, run = engine.cfg, engine.state
    number = run.epoch
    epoch.record = rec = history_record(cfg, epoch, number, run.epoch_losses)
    epoch.best = run.record_epoch(rec)
    val, seconds = epoch.val, epoch.seconds
    log.info("epoch %d/%d loss %.4f val_loss %.4f val_acc %.4f (chance %.3f%s) lr %.2e time %.1f s %.1f seq/s",
             number, cfg.epoch_size, rec["loss"], val["loss"], val["accuracy"], val["chance_accuracy"],
             f", negatives showing the positive's digit {val['collision_rate']:.1%} masked"
             if "collision_rate" in val else "", epoch.lr_used, seconds, rec["samples_per_second"])
    if "accuracy_per_step" in val:
        log.info("epoch %d/%d validation per future step: %s", number, cfg.epoch_size, format_per_step(val))
    if "knn_accuracy" in rec:
        log.info("epoch %d/%d codes as digit features: kNN accuracy %.4f, linear probe %.4f (chance %.2f) in "
                 "%.2f s (%.1f%% of the epoch's training)", number, cfg.epoch_size, rec["knn_accuracy"],
                 rec["probe_accuracy"], DIGIT_CHANCE, rec["repr_seconds"],
                 100 * rec["repr_seconds"] / max(seconds, 1e-9))


def checkpoint(engine, epoch):
    """cpc_last.ckpt always; cpc_best.ckpt and encoder_best.ckpt when the validation accuracy is the best."""
    cfg, run, out = engine.cfg, engine.state, engine.cfg.output_path
    state = {"kind": "cpc", "hparams": run.hparams, "epoch": run.epoch, "step": run.epoch * cfg.steps_per_epoch,
             "val_accuracy": epoch.val["accuracy"], "learning_rate": epoch.lr_used}
    ckpt.save(engine.train_cell, os.path.join(out, "cpc_last.ckpt"), state)
    if epoch.best:
        ckpt.save(engine.train_cell, os.path.join(out, "cpc_best.ckpt"), state)
        ckpt.save(engine.net.encoder, os.path.join(out, "encoder_best.ckpt"), dict(state, kind="encoder"))


def schedule(engine, epoch):
    """The learning rate of the next epoch (src/train/schedule.py), into the optimizer."""
    new_lr = engine.schedule.update(epoch.val["loss"])
    if new_lr != epoch.lr_used:
        engine.optimizer.learning_rate.set_data(Tensor(new_lr, ms.float32))
        log.info("%s: learning rate %.2e -> %.2e", engine.schedule.reason(), epoch.lr_used, new_lr)


def close(engine, epoch):
    """The next epoch begins; a rolling checkpoint of that state (resume starts there)."""
    engine.state.end_epoch()
    engine.state.save(engine.train_cell)


STEPS = (calibrate_bn, sync_buffers, validate, represent, record, checkpoint, schedule, close)
