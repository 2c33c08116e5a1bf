"""Training and evaluation loops: TrainOneStepCell, per-epoch validation, LR plateau, checkpoints.

The step is MindSpore's nn.TrainOneStepCell (or its loss-scale form for mixed precision), compiled
once in graph mode. On Ascend/GPU an epoch's steps are sunk to the device with ms.data_sink; on
CPU, where sinking has no benefit, batches are fed step by step from the GeneratorDataset.
"""
import logging
import math
import os
import time

import mindspore as ms
import numpy as np
from mindspore import nn

from src import checkpoint, resume
from src.config import model_hparams, save_config
from src.conv import use_fast_conv
from src.dataset import build_source, create_dataset
from src.distributed import BufferSync, rank_and_size, shard_args
from src.errors import CPCError
from src.loss import CHANCE_ACCURACY, InfoNCELogits, binary_accuracy, binary_cross_entropy, build_loss_cell, \
    infonce_metrics
from src.mnist import load_split
from src.model import build_cpc
from src.runlog import write_json

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
    """(train cell, optimizer): Adam + TrainOneStepCell, with dynamic loss scaling under amp."""
    optimizer = nn.Adam(net.trainable_params(), learning_rate=cfg.learning_rate)
    if cfg.amp_level == "O0":
        return nn.TrainOneStepCell(build_loss_cell(net, cfg.loss), optimizer), optimizer
    if target == "CPU":
        raise CPCError(f"amp_level {cfg.amp_level} needs Ascend or GPU; use amp_level O0 on CPU")
    ms.amp.auto_mixed_precision(net, cfg.amp_level)
    scale = nn.DynamicLossScaleUpdateCell(loss_scale_value=2 ** 16, scale_factor=2, scale_window=1000)
    return nn.TrainOneStepWithLossScaleCell(build_loss_cell(net, cfg.loss), optimizer, scale_sense=scale), optimizer


def make_scorer(net, loss):
    """The Cell evaluate() runs on each batch's input columns: the CPC net itself (x, y -> logit) or
    InfoNCELogits (x, y, negatives, valid -> candidate logits). Build it once per run: every new
    Cell is compiled anew."""
    return InfoNCELogits(net) if loss == "infonce" else net


def evaluate(net, source, scorer=None):
    """Contrastive accuracy, loss and chance accuracy of `net` over every batch of `source`
    (inference mode): sorted/random for the binary loss, top-1 among the candidates for InfoNCE
    (which also reports the digit-collision rate of its negatives). scorer: make_scorer's Cell."""
    net.set_train(False)
    infonce = source.objective == "infonce"
    scorer = make_scorer(net, source.objective) if scorer is None else scorer
    outputs, targets = [], []
    for row in create_dataset(source).create_tuple_iterator(num_epochs=1):
        outputs.append((scorer(*row) if infonce else scorer(row[0], row[1])).asnumpy())
        targets.append(row[-1].asnumpy())
    net.set_train(True)
    outputs, targets = np.concatenate(outputs), np.concatenate(targets)
    if infonce:
        result = infonce_metrics(outputs, targets)
    else:
        result = {"accuracy": binary_accuracy(outputs, targets), "loss": binary_cross_entropy(outputs, targets),
                  "chance_accuracy": CHANCE_ACCURACY}
    result["num_sequences"] = int(len(targets))
    return result


def loss_value(output):
    """The loss of a train cell's output (a Tensor, or (loss, overflow, scale) under loss scaling)."""
    return float((output[0] if isinstance(output, tuple) else output).asnumpy())


def load_training_data(cfg):
    """(train, val) splits as (images, labels); read before anything is written, so bad data
    stops the run with nothing left behind."""
    return load_split(cfg.data_path, "train"), load_split(cfg.data_path, "val")


def _check_finite(loss, epoch, step, last_path):
    """Stop on a NaN/Inf loss, naming the step and the newest checkpoint written before it."""
    if not math.isfinite(loss):
        kept = f"the last good checkpoint is {last_path}" if last_path else "no checkpoint was written before it"
        raise CPCError(f"loss became {loss} at epoch {epoch} step {step}; {kept}")


def train(cfg, target, data=None):
    """Train CPC as configured; writes checkpoints, config.yaml and metrics.json; returns metrics.

    data: optional (train, val) from load_training_data."""
    train_data, val_data = data if data is not None else load_training_data(cfg)
    out = cfg.output_path
    save_config(cfg, os.path.join(out, "config.yaml"))
    hparams = model_hparams(cfg)
    net = build_cpc(hparams, use_fast_conv(target))
    train_cell, optimizer = build_train_cell(net, cfg, target)
    train_cell.set_train()

    steps, epochs = cfg.steps_per_epoch, cfg.epoch_size
    schedule = PlateauLR(cfg.learning_rate, cfg.lr_factor, cfg.lr_patience, cfg.lr_min)
    run = resume.start(cfg, hparams, schedule, train_cell, optimizer)
    sink = target in ("Ascend", "GPU")
    if sink and 0 < run.step < steps:
        raise CPCError(f"{run.resumed_from} was saved mid-epoch; with data sinking ({target}) resume from "
                       f"an end-of-epoch checkpoint (delete the newer cpc_e*_s*.ckpt files)")
    rank, size = rank_and_size()  # data parallel: rank k trains on batches k, k + size, ... of the source
    train_source = build_source(cfg, "train", max(1, steps * epochs - run.global_step) * size,
                                start=run.global_step * size, data=train_data)
    val_source = build_source(cfg, "val", cfg.val_steps, data=val_data)
    dataset = create_dataset(train_source, cfg.num_parallel_workers, **shard_args(rank, size))
    if sink:
        sunk_step = ms.data_sink(train_cell, dataset, sink_size=steps)
    else:
        batches = dataset.create_tuple_iterator(num_epochs=1)
    log.info("training %s CPC on %s (%s mode, %s): %d epochs x %d steps, batch %d, %d train / %d val digits",
             cfg.loss, target, cfg.mode, "data sinking" if sink else "per-step feeding", epochs, steps,
             cfg.batch_size, len(train_source.images), len(val_source.images))
    if size > 1:
        log.info("data parallel: rank %d of %d, global batch %d", rank, size, cfg.batch_size * size)

    scorer = make_scorer(net, cfg.loss)
    sync_buffers = BufferSync(net, size)  # built once: one reducer Cell, compiled once
    trained, step_seconds, start = 0, 0.0, time.perf_counter()
    meta = {"kind": "cpc", "hparams": hparams}
    val = evaluate(net, val_source, scorer) if run.epoch > epochs else None  # resuming a finished run
    for epoch in range(run.epoch, epochs + 1):
        epoch_start, first = time.perf_counter(), run.step
        losses = run.epoch_losses
        if sink:
            run.add_loss(loss_value(sunk_step()))  # the last step's loss: the device runs the whole epoch
            run.step = steps
            _check_finite(losses[-1], epoch, steps, run.last_path)
        else:
            window = time.perf_counter()
            for step in range(first + 1, steps + 1):
                run.add_loss(loss_value(train_cell(*next(batches))))
                _check_finite(losses[-1], epoch, step, run.last_path)
                if cfg.save_checkpoint_steps and step % cfg.save_checkpoint_steps == 0:
                    run.save(train_cell)
                if step % cfg.log_interval == 0 or step == steps:
                    elapsed = time.perf_counter() - window
                    count = min((step - 1) % cfg.log_interval + 1, step - first)
                    log.info("epoch %d/%d step %d/%d loss %.4f step %.1f ms %.1f seq/s", epoch, epochs,
                             step, steps, float(np.mean(losses[-count:])), 1000 * elapsed / count,
                             count * cfg.batch_size / elapsed)
                    window = time.perf_counter()
        epoch_seconds = time.perf_counter() - epoch_start
        step_seconds += epoch_seconds
        trained += steps - first
        sync_buffers()  # BatchNorm statistics saw only this rank's data
        val = evaluate(net, val_source, scorer)
        lr_used = schedule.lr
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "val_loss": val["loss"],
                  "val_accuracy": val["accuracy"], "learning_rate": lr_used,
                  "epoch_seconds": round(epoch_seconds, 3),
                  "samples_per_second": round((steps - first) * cfg.batch_size / max(epoch_seconds, 1e-9), 2)}
        run.history.append(record)
        if "collision_rate" in val:
            record["val_collision_rate"] = val["collision_rate"]
        log.info("epoch %d/%d loss %.4f val_loss %.4f val_acc %.4f (chance %.3f%s) lr %.2e time %.1f s %.1f seq/s",
                 epoch, epochs, record["loss"], val["loss"], val["accuracy"], val["chance_accuracy"],
                 f", negatives showing the positive's digit {val['collision_rate']:.1%} masked"
                 if "collision_rate" in val else "", lr_used, epoch_seconds, record["samples_per_second"])
        state = dict(meta, epoch=epoch, step=epoch * steps, val_accuracy=val["accuracy"], learning_rate=lr_used)
        checkpoint.save(train_cell, os.path.join(out, "cpc_last.ckpt"), state)
        if val["accuracy"] > run.best_acc:
            run.best_acc = val["accuracy"]
            checkpoint.save(train_cell, os.path.join(out, "cpc_best.ckpt"), state)
            checkpoint.save(net.encoder, os.path.join(out, "encoder_best.ckpt"), dict(state, kind="encoder"))
        new_lr = schedule.update(val["loss"])
        if new_lr != lr_used:
            optimizer.learning_rate.set_data(ms.Tensor(new_lr, ms.float32))
            log.info("validation loss has not improved for %d epochs: learning rate %.2e -> %.2e",
                     cfg.lr_patience, lr_used, new_lr)
        run.end_epoch()
        run.save(train_cell)

    history, best_acc = run.history, run.best_acc
    metrics = {"val_accuracy": history[-1]["val_accuracy"], "best_val_accuracy": best_acc,
               "chance_accuracy": val["chance_accuracy"], "loss": cfg.loss, "epochs": len(history),
               "steps": epochs * steps, "resumed_from": run.resumed_from,
               "train_seconds": round(time.perf_counter() - start, 3),
               "samples_per_second": round(trained * cfg.batch_size / step_seconds, 2) if trained else None,
               "device_target": target, "mode": cfg.mode, "rank": rank, "group_size": size,
               "mindspore_version": ms.__version__, "history": history, "step_losses": run.step_losses}
    write_json(os.path.join(out, "metrics.json"), metrics)
    log.info("done: val_acc %.4f (best %.4f, chance %.3f) in %.1f s; checkpoints in %s",
             metrics["val_accuracy"], best_acc, metrics["chance_accuracy"], metrics["train_seconds"], out)
    return metrics
