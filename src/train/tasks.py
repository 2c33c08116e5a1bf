"""What differs between the sequence task and the image task in training: the data source, the loss
cell, the validation scorer and the batches PreciseBN calibrates on. The trainer asks `for_config`
and never branches on the task itself."""
from src.data.dataset import build_source, create_dataset
from src.data.patches import build_patch_source
from src.eval.evaluate import evaluate, evaluate_patches, make_scorer
from src.eval.precise_bn import sequence_batches
from src.model.loss import build_loss_cell
from src.model.patch_loss import PatchInfoNCE, PatchInfoNCEWithLoss


class SequenceTask:
    """CPC over sequences of digits (the original): the binary or InfoNCE loss of src/model/loss.py."""

    build_source = staticmethod(build_source)
    calibration_batches = staticmethod(sequence_batches)

    @staticmethod
    def loss_cell(net, cfg, amp_level="O0"):
        return build_loss_cell(net, cfg.loss, amp_level)

    @staticmethod
    def scorer(net, cfg):
        return make_scorer(net, cfg.loss)

    @staticmethod
    def evaluate(net, source, scorer):
        return evaluate(net, source, scorer)

    @staticmethod
    def loss_name(cfg):
        return cfg.loss


def patch_batches(source):
    """The (patches,) inputs of an ImageCPC net for every batch of a PatchSource (PreciseBatchNorm)."""
    return lambda: ((row[0],) for row in create_dataset(source).create_tuple_iterator(num_epochs=1))


class ImageTask:
    """CPC over the patch grid of each image (CPC v2): the patch InfoNCE of src/model/patch_loss.py."""

    build_source = staticmethod(build_patch_source)
    calibration_batches = staticmethod(patch_batches)

    @staticmethod
    def loss_cell(net, cfg, amp_level="O0"):
        scored = net
        if amp_level != "O0":
            import mindspore as ms
            scored = ms.amp.auto_mixed_precision(net, amp_level)
        return PatchInfoNCEWithLoss(scored, net.grid, net.offsets, cfg.batch_size)

    @staticmethod
    def scorer(net, cfg):
        return PatchInfoNCE(net, net.grid, net.offsets, cfg.batch_size)

    @staticmethod
    def evaluate(net, source, scorer):
        return evaluate_patches(net, source, scorer)

    @staticmethod
    def loss_name(cfg):
        return "patch_infonce"


def for_config(cfg):
    """The task object of cfg.task."""
    return ImageTask if cfg.task == "image" else SequenceTask
