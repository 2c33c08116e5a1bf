"""CPC over sequences of digits (the original): the binary or InfoNCE loss of src/model/loss.py."""
from src.data.dataset import build_source
from src.eval.evaluate import evaluate, make_scorer
from src.eval.precise_bn import sequence_batches
from src.methods.base import Method
from src.model.build import build_cpc
from src.model.loss import build_loss_cell


class SequenceMethod(Method):
    unit = "sequences"
    export_nets = ("classifier", "encoder", "cpc")
    build_net = staticmethod(build_cpc)
    build_source = staticmethod(build_source)
    calibration_batches = staticmethod(sequence_batches)
    evaluate = staticmethod(evaluate)

    @staticmethod
    def loss_name(cfg):
        return cfg.loss

    @staticmethod
    def describe_batch(cfg):
        side, channels = cfg.image_size, 3 if cfg.color else 1
        return (f"{cfg.batch_size} sequences of {cfg.terms} + {cfg.predict_terms} images "
                f"{channels}x{side}x{side} a step")

    @staticmethod
    def loss_cell(net, cfg, amp_level="O0"):
        return build_loss_cell(net, cfg.loss, amp_level)

    @staticmethod
    def scorer(net, cfg):
        return make_scorer(net, cfg.loss)
