"""PyTorch twins of the two-view methods' nets and losses (src/model/twoview.py), for
tools/torch_reference.py (which times them beside the port's step through scripts/run_benchmark.sh).

- task twoview: TwoViewNet, the sequence task's encoder (tools/torch_reference.py encoder) and the
  projection head Linear -> ReLU -> Linear; both views go through it as one batch (BatchNorm sees
  both, as the port's TwoViewLoss); the loss (contrastive_loss: ntxent, supcon, margin, triplet) is
  tools/torch_contrastive.py's twin on the projections, with the port's pairs (loss_of).
- task cmc: CMCNet, LabSplit (RGB in [-1, 1] -> L and ab of Lab, the port's graph ops and
  constants) and one encoder per view, named `l` and `ab` as the port's; CrossViewInfoNCE between
  the two views' codes.
- task image with view_ntxent_weight > 0: the patch InfoNCE of view 1 plus weight x NT-Xent between
  the mean patch codes of the two views (the port's PatchViewsLoss).

Modules carry the port's Cell names, so tools/torch_reference.py copy_port_weights loads the port's
weights by name. An optional tool (pip install torch, the CPU build) that imports no MindSpore.
"""
import torch
from torch import nn

from src.data.views import AB_SCALE, D65_WHITE, LAB_EPSILON, SRGB_TO_XYZ
from tools.torch_contrastive import (
    ContrastiveMarginLoss,
    CrossViewInfoNCE,
    NTXentLoss,
    SupConLoss,
    TripletMarginLoss,
)
from tools.torch_reference import ImageCPC, encoder, parameter_count, patch_tables, random_images, random_patches


class TwoViewNet(nn.Module):
    """images [N, C, S, S] -> projections [N, projection_dim]; `encoder` gives the codes."""

    def __init__(self, cfg):
        super().__init__()
        self.encoder = encoder(cfg)
        self.head = nn.Sequential(nn.Linear(cfg.code_size, cfg.projection_hidden), nn.ReLU(),
                                  nn.Linear(cfg.projection_hidden, cfg.projection_dim))

    def forward(self, images):
        return self.head(self.encoder(images))


def next_image(codes):
    """codes of image i + 1 (mod N) at row i (the port's in-batch negative of the pairwise losses)."""
    return torch.cat((codes[1:], codes[:1]))


def pair_loss(cfg):
    """(first, second, labels) -> the contrastive_loss of the two views' projections, as the port's
    TwoViewLoss.loss_of pairs them."""
    choice = cfg.contrastive_loss
    if choice == "ntxent":
        ntxent = NTXentLoss(cfg.temperature)
        return lambda first, second, labels: ntxent(torch.stack((first, second), 1))
    if choice == "supcon":
        supcon = SupConLoss(cfg.temperature)
        return lambda first, second, labels: supcon(torch.stack((first, second), 1), labels)
    if choice == "margin":  # one positive pair (the two views) and one negative pair per image
        margin = ContrastiveMarginLoss(cfg.margin)
        return lambda first, second, labels: margin(
            torch.cat((first, first)), torch.cat((second, next_image(second))),
            torch.cat((torch.ones(len(first)), torch.zeros(len(first)))))
    triplet = TripletMarginLoss(cfg.margin)
    return lambda first, second, labels: triplet(first, second, next_image(second))


def twoview_loss(model, cfg):
    """(view1, view2, labels) -> the configured loss, both views through the net as one batch."""
    loss = pair_loss(cfg)

    def step_loss(view1, view2, labels):
        out = model(torch.cat((view1, view2)))
        return loss(out[:len(view1)], out[len(view1):], labels)
    return step_loss


class LabSplit(nn.Module):
    """RGB images [N, 3, S, S] in [-1, 1] -> (L [N, 1, S, S], ab [N, 2, S, S]): the port's LabSplit."""

    def __init__(self):
        super().__init__()
        self.register_buffer("to_xyz", torch.tensor((SRGB_TO_XYZ / D65_WHITE[:, None]).T, dtype=torch.float32))

    def forward(self, images):
        rgb = (images * 0.5 + 0.5).clamp(0.0, 1.0)
        linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055).pow(2.4))
        xyz = linear.permute(0, 2, 3, 1) @ self.to_xyz                        # [N, S, S, 3]
        cube = xyz.clamp_min(LAB_EPSILON).pow(1.0 / 3.0)
        f = torch.where(xyz > LAB_EPSILON, cube, xyz / (3 * (6 / 29) ** 2) + 4 / 29).permute(0, 3, 1, 2)
        fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
        ab = torch.cat((500.0 * (fx - fy), 200.0 * (fy - fz)), 1)
        return (116.0 * fy - 16.0) / 50.0 - 1.0, ab / AB_SCALE


class CMCEncoder(nn.Module):
    """RGB images -> the L encoder's and the ab encoder's codes concatenated, [N, 2 * code_size]."""

    def __init__(self, cfg):
        super().__init__()
        self.lab = LabSplit()
        self.l, self.ab = encoder(cfg, channels=1), encoder(cfg, channels=2)

    def views(self, images):
        lightness, colour = self.lab(images)
        return self.l(lightness), self.ab(colour)

    def forward(self, images):
        return torch.cat(self.views(images), 1)


class CMCNet(nn.Module):
    """RGB images -> (codes of L, codes of ab)."""

    def __init__(self, cfg):
        super().__init__()
        self.encoder = CMCEncoder(cfg)

    def forward(self, images):
        return self.encoder.views(images)


def cmc_loss(model, cfg):
    """(images, labels) -> CrossViewInfoNCE between the L and ab codes (labels unused, as the port's)."""
    loss = CrossViewInfoNCE(cfg.temperature)
    return lambda images, labels: loss(*model(images))


def patch_views_loss(model, cfg):
    """(patches, patches2) -> patch InfoNCE of view 1 + view_ntxent_weight x NT-Xent between the two
    views' mean patch codes (the port's PatchViewsLoss; view 1's codes from the same pass)."""
    ntxent = NTXentLoss(cfg.temperature)
    infonce = patch_tables(model, cfg.batch_size)

    def step_loss(patches, patches2):
        predicted, codes = model(patches)
        second = model.encoder.encode_patches(patches2)
        return infonce(predicted, codes) + cfg.view_ntxent_weight * ntxent(torch.stack((codes.mean(1),
                                                                                        second.mean(1)), 1))
    return step_loss


def fixed_labels(cfg):
    """Labels of a fixed batch: every digit class in turn (SupCon's positives)."""
    return torch.arange(cfg.batch_size) % 10


def twoview_bench(cfg):
    """(model, loss of the fixed batch, encoder images, JSON fields) of task twoview: two views of
    batch_size images for the step, both views (2 x batch_size images) for the encoder."""
    model = TwoViewNet(cfg)
    view1, view2 = random_images(cfg, cfg.batch_size), random_images(cfg, cfg.batch_size)
    labels, loss = fixed_labels(cfg), twoview_loss(model, cfg)
    return (model, lambda: loss(view1, view2, labels), torch.cat((view1, view2)),
            {"task": "twoview", "loss": cfg.contrastive_loss, "parameters": parameter_count(model)})


def cmc_bench(cfg):
    """The same for task cmc: batch_size RGB images for the step and for the encoder (both views)."""
    model = CMCNet(cfg)
    images, labels, loss = random_images(cfg, cfg.batch_size, 3), fixed_labels(cfg), cmc_loss(model, cfg)
    return (model, lambda: loss(images, labels), images,
            {"task": "cmc", "loss": "cmc_lab_infonce", "parameters": parameter_count(model)})


def image_views_bench(cfg):
    """The same for task image with its view term: two views' patch grids for the step, batch_size
    whole images for the encoder (the ImageEncoder, as tools/torch_reference.py image_bench)."""
    model = ImageCPC(cfg)
    patches, patches2 = random_patches(cfg, model.grid), random_patches(cfg, model.grid)
    images, loss = random_images(cfg, cfg.batch_size), patch_views_loss(model, cfg)
    return (model, lambda: loss(patches, patches2), images,
            {"task": "image", "patch_size": cfg.patch_size, "patch_stride": cfg.patch_stride, "grid": model.grid,
             "offsets": len(model.offsets), "norm": cfg.norm, "context_layers": cfg.context_layers,
             "loss": f"patch_infonce + {cfg.view_ntxent_weight:g} ntxent", "parameters": parameter_count(model)})


BENCHES = {"twoview": twoview_bench, "cmc": cmc_bench, "image": image_views_bench}
