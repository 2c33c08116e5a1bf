"""Contrastive Multiview Coding (task cmc): L and ab of Lab as two views of each colour digit, one
encoder per view, CrossViewInfoNCE between their codes; downstream the two codes concatenated.

One augmented view of each digit per row (src/data/twoview.py, views=1); the net splits it into L
and ab itself (src/model/twoview.py), so its `encoder` maps whole RGB images to codes as every
method's does. Grey configs are refused by src/config.py (naming the key `color`).
"""
from src.data.dataset import create_dataset
from src.data.twoview import build_twoview_source
from src.methods.base import Method
from src.methods.twoview import evaluate_views
from src.model.build import build_encoder
from src.model.precision import mixed_precision
from src.model.twoview import CMCLoss, CMCNet, CMCScore


def cmc_source(cfg, split, num_batches, start=0, data=None):
    """One augmented view of each digit a row (the net makes L and ab of it)."""
    return build_twoview_source(cfg, split, num_batches, start, data, views=1)


def image_batches(source):
    """The net's (images,) inputs for every batch (PreciseBN)."""
    return lambda: ((row[0],) for row in create_dataset(source).create_tuple_iterator(num_epochs=1))


class CMCMethod(Method):
    unit = "images"
    export_nets = ("classifier", "encoder")  # encoder: both encoders, codes concatenated
    build_source = staticmethod(cmc_source)
    calibration_batches = staticmethod(image_batches)
    evaluate = staticmethod(evaluate_views)

    @staticmethod
    def build_net(hparams, backend):
        return CMCNet(build_encoder(hparams, backend))

    @staticmethod
    def loss_name(cfg):
        return "cmc_lab_infonce"

    @staticmethod
    def describe_batch(cfg):
        side = cfg.image_size
        return f"{cfg.batch_size} images 3x{side}x{side} split into L and ab a step"

    @staticmethod
    def loss_cell(net, cfg, amp_level="O0"):
        return CMCLoss(mixed_precision(net, amp_level), cfg.temperature)

    @staticmethod
    def scorer(net, cfg):
        return CMCScore(net, cfg.temperature)
