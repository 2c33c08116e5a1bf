"""CPC over the patch grid of each image (CPC v2): the patch InfoNCE of src/model/patch_loss.py."""
from src.data.dataset import create_dataset
from src.data.patch_views import build_image_source
from src.eval.evaluate import evaluate_patches
from src.methods.base import Method
from src.model.build import build_cpc
from src.model.patch_loss import PatchInfoNCE, PatchInfoNCEWithLoss
from src.model.precision import mixed_precision
from src.model.twoview import PatchViewsLoss


def patch_batches(source):
    """The (patches,) inputs of an ImageCPC net for every batch of a PatchSource (PreciseBatchNorm)."""
    return lambda: ((row[0],) for row in create_dataset(source).create_tuple_iterator(num_epochs=1))


class ImageMethod(Method):
    unit = "images"
    export_nets = ("classifier", "encoder")  # no sequence net: the image net scores patch grids
    build_net = staticmethod(build_cpc)
    build_source = staticmethod(build_image_source)  # two views a row with view_ntxent_weight > 0
    calibration_batches = staticmethod(patch_batches)
    evaluate = staticmethod(evaluate_patches)

    @staticmethod
    def loss_name(cfg):
        return f"patch_infonce + {cfg.view_ntxent_weight:g} ntxent" if cfg.view_ntxent_weight else "patch_infonce"

    @staticmethod
    def describe_batch(cfg):
        side, channels = cfg.image_size, 3 if cfg.color else 1
        return f"{cfg.batch_size} images {channels}x{side}x{side} cut into patches a step"

    @staticmethod
    def loss_cell(net, cfg, amp_level="O0"):
        scored = mixed_precision(net, amp_level)  # net itself stays float32 for evaluation
        if cfg.view_ntxent_weight:
            return PatchViewsLoss(scored, net.grid, net.offsets, cfg.batch_size, cfg.view_ntxent_weight,
                                  cfg.temperature)
        return PatchInfoNCEWithLoss(scored, net.grid, net.offsets, cfg.batch_size)

    @staticmethod
    def scorer(net, cfg):
        return PatchInfoNCE(net, net.grid, net.offsets, cfg.batch_size)
