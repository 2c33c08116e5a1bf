"""Two augmented views of each digit (task twoview): SimCLR's NT-Xent, SupCon, or the pairwise losses.

The backbone is the sequence task's encoder, a 2-layer projection MLP on top (src/model/twoview.py);
the config key `contrastive_loss` picks the loss, `temperature` / `margin` its strength. Validation
scores the contrastive top-1: whether the second view of each image is the most similar to its
first view among the batch's (chance 1 / batch_size).
"""
import numpy as np
from mindspore import ops

from src.data.dataset import create_dataset
from src.data.twoview import build_twoview_source
from src.methods.base import Method
from src.model.build import build_encoder
from src.model.precision import mixed_precision
from src.model.twoview import TwoViewLoss, TwoViewNet, TwoViewScore


def evaluate_views(net, source, scorer):
    """Mean loss and contrastive top-1 of `scorer` (a row -> (loss, top-1)) over every batch of a
    TwoViewSource, net in inference mode."""
    net.set_train(False)
    losses, accuracies = [], []
    for row in create_dataset(source).create_tuple_iterator(num_epochs=1):
        loss, accuracy = scorer(*row)
        losses.append(float(loss.asnumpy()))
        accuracies.append(float(accuracy.asnumpy()))
    net.set_train(True)
    return {"loss": float(np.mean(losses)), "accuracy": float(np.mean(accuracies)),
            "chance_accuracy": 1.0 / source.batch_size, "num_images": len(losses) * source.batch_size}


def view_batches(source):
    """The net's (images,) inputs for every batch of a TwoViewSource, both views as one batch (PreciseBN)."""
    return lambda: ((ops.concat((row[0], row[1]), 0),)
                    for row in create_dataset(source).create_tuple_iterator(num_epochs=1))


class TwoViewMethod(Method):
    unit = "images"
    export_nets = ("classifier", "encoder")  # no sequence net; the projection head is training-only
    build_source = staticmethod(build_twoview_source)
    calibration_batches = staticmethod(view_batches)
    evaluate = staticmethod(evaluate_views)

    @staticmethod
    def build_net(hparams, backend):
        return TwoViewNet(build_encoder(hparams, backend), hparams["code_size"], hparams["projection_hidden"],
                          hparams["projection_dim"])

    @staticmethod
    def loss_name(cfg):
        if cfg.contrastive_loss == "supcon":  # not self-supervised: every table must say so
            return "supcon (supervised: uses every training label)"
        return cfg.contrastive_loss

    @staticmethod
    def describe_batch(cfg):
        side, channels = cfg.image_size, 3 if cfg.color else 1
        return (f"{cfg.batch_size} images {channels}x{side}x{side}, two augmented views each "
                f"({2 * cfg.batch_size} encoder inputs) a step")

    @staticmethod
    def loss_cell(net, cfg, amp_level="O0"):
        return TwoViewLoss(mixed_precision(net, amp_level), cfg.contrastive_loss, cfg.temperature, cfg.margin)

    @staticmethod
    def scorer(net, cfg):
        return TwoViewScore(net, cfg.contrastive_loss, cfg.temperature, cfg.margin)
