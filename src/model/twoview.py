"""Nets and loss cells of the two-view methods (task twoview: SimCLR, SupCon, margin, triplet; task cmc).

- TwoViewNet: the sequence task's Encoder (src/model/cpc.py) as backbone, `encoder`, and SimCLR's
  projection head (Dense -> ReLU -> Dense); the loss is taken on the head's output, the backbone's
  codes are what eval.py, export.py and the per-epoch kNN / probe use.
- CMCNet: CMC's two encoders, one for L and one for ab of Lab (LabSplit, computed in the graph so
  that `encoder` maps whole RGB images to codes like every method's: CMCEncoder, the two codes
  concatenated); the loss is CrossViewInfoNCE between the two views' codes.
- PatchViewsLoss: the image task's patch InfoNCE plus an NT-Xent term between the pooled codes of
  two views of each image (config key view_ntxent_weight).
- TwoViewLoss / CMCLoss: a training row -> scalar loss; TwoViewScore / CMCScore: a row -> (loss,
  contrastive top-1: is the other view of each image the most similar among the batch's).
"""
import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from src.data.views import AB_SCALE, D65_WHITE, LAB_EPSILON, SRGB_TO_XYZ
from src.model.contrastive import (
    ContrastiveMarginLoss,
    CrossViewInfoNCE,
    NTXentLoss,
    SupConLoss,
    TripletMarginLoss,
)
from src.model.patch_loss import directions_infonce, query_tables

LOSSES = ("ntxent", "supcon", "margin", "triplet")


class TwoViewNet(nn.Cell):
    """images [N, C, S, S] -> projections [N, projection_dim]; `encoder` gives the codes."""

    def __init__(self, encoder, code_size, hidden, out):
        super().__init__()
        self.encoder = encoder
        self.head = nn.SequentialCell([nn.Dense(code_size, hidden, weight_init="XavierUniform"), nn.ReLU(),
                                       nn.Dense(hidden, out, weight_init="XavierUniform")])

    def construct(self, images):
        return self.head(self.encoder(images))


class LabSplit(nn.Cell):
    """RGB images [N, 3, S, S] in [-1, 1] -> (L [N, 1, S, S], ab [N, 2, S, S]), each about [-1, 1]:
    src/data/views.py lab_views as graph ops (the same constants)."""

    def __init__(self):
        super().__init__()
        self.to_xyz = Tensor((SRGB_TO_XYZ / D65_WHITE[:, None]).T.astype(np.float32))

    def construct(self, images):
        rgb = ops.clip_by_value(images * 0.5 + 0.5, 0.0, 1.0)
        linear = ops.where(rgb <= 0.04045, rgb / 12.92, ops.pow((rgb + 0.055) / 1.055, 2.4))
        xyz = ops.matmul(linear.transpose(0, 2, 3, 1), self.to_xyz)            # [N, S, S, 3]
        cube = ops.pow(ops.maximum(xyz, LAB_EPSILON), 1.0 / 3.0)
        f = ops.where(xyz > LAB_EPSILON, cube, xyz / (3 * (6 / 29) ** 2) + 4 / 29).transpose(0, 3, 1, 2)
        fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
        ab = ops.concat((500.0 * (fx - fy), 200.0 * (fy - fz)), 1)
        return (116.0 * fy - 16.0) / 50.0 - 1.0, ab / AB_SCALE


class CMCEncoder(nn.Cell):
    """RGB images -> the L encoder's and the ab encoder's codes concatenated, [N, 2 * code_size]."""

    def __init__(self, encoder_l, encoder_ab):
        super().__init__()
        self.lab = LabSplit()
        self.l, self.ab = encoder_l, encoder_ab

    def views(self, images):
        """(codes of L, codes of ab), each [N, code_size]."""
        lightness, colour = self.lab(images)
        return self.l(lightness), self.ab(colour)

    def construct(self, images):
        return ops.concat(self.views(images), 1)


class CMCNet(nn.Cell):
    """RGB images -> (codes of L, codes of ab); `encoder` (CMCEncoder) gives them concatenated."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def construct(self, images):
        return self.encoder.views(images)


def pair_loss(choice, temperature, margin):
    """The loss Cell of a contrastive_loss choice; ValueError naming the known ones otherwise."""
    if choice not in LOSSES:
        raise ValueError(f"contrastive_loss must be one of {', '.join(LOSSES)}, got {choice!r}")
    if choice in ("ntxent", "supcon"):
        return NTXentLoss(temperature) if choice == "ntxent" else SupConLoss(temperature)
    return ContrastiveMarginLoss(margin) if choice == "margin" else TripletMarginLoss(margin)


def next_image(codes):
    """codes of image i + 1 (mod N) at row i: every row's in-batch negative for the pairwise losses."""
    return ops.concat((codes[1:], codes[:1]), 0)


def top1(first, second):
    """Share of rows i whose most cosine-similar row of `second` is row i (float32 scalar)."""
    first = ops.L2Normalize(axis=-1, epsilon=1e-12)(ops.cast(first, mstype.float32))
    second = ops.L2Normalize(axis=-1, epsilon=1e-12)(ops.cast(second, mstype.float32))
    best = ops.argmax(ops.matmul(first, second.T), 1)
    rows = ops.arange(0, first.shape[0], 1, dtype=best.dtype)
    return ops.cast(best == rows, mstype.float32).mean()


class TwoViewLoss(nn.Cell):
    """(view1, view2, labels) -> the configured loss of the two views' projections. Both views go
    through the net as one batch (one conv per layer; BatchNorm sees both, as SimCLR's global BN)."""

    def __init__(self, net, choice, temperature, margin):
        super().__init__(auto_prefix=False)
        self.net, self.choice = net, choice
        self.loss = pair_loss(choice, temperature, margin)

    def projections(self, view1, view2):
        batch = view1.shape[0]
        out = self.net(ops.concat((view1, view2), 0))
        return out[:batch], out[batch:]

    def loss_of(self, first, second, labels):
        if self.choice == "ntxent":
            return self.loss(ops.stack((first, second), 1))
        if self.choice == "supcon":
            return self.loss(ops.stack((first, second), 1), labels)
        if self.choice == "margin":  # one positive pair (the two views) and one negative pair per image
            same = ops.concat((ops.ones(first.shape[0], mstype.float32), ops.zeros(first.shape[0], mstype.float32)))
            return self.loss(ops.concat((first, first), 0), ops.concat((second, next_image(second)), 0), same)
        return self.loss(first, second, next_image(second))

    def construct(self, view1, view2, labels):
        first, second = self.projections(view1, view2)
        return self.loss_of(first, second, labels)


class TwoViewScore(TwoViewLoss):
    """(view1, view2, labels) -> (loss, contrastive top-1 of view 1 against the batch's view 2s)."""

    def construct(self, view1, view2, labels):
        first, second = self.projections(view1, view2)
        return self.loss_of(first, second, labels), top1(first, second)


class CMCLoss(nn.Cell):
    """(images, labels) -> CrossViewInfoNCE between the L and ab codes (labels unused)."""

    def __init__(self, net, temperature):
        super().__init__(auto_prefix=False)
        self.net = net
        self.loss = CrossViewInfoNCE(temperature)

    def construct(self, images, labels):
        codes_l, codes_ab = self.net(images)
        return self.loss(codes_l, codes_ab)


class CMCScore(CMCLoss):
    """(images, labels) -> (loss, contrastive top-1 of L codes against the batch's ab codes)."""

    def construct(self, images, labels):
        codes_l, codes_ab = self.net(images)
        return self.loss(codes_l, codes_ab), top1(codes_l, codes_ab)


class PatchViewsLoss(nn.Cell):
    """Image task with its view term: (patches of view 1, patches of view 2) -> patch InfoNCE of
    view 1 + weight * NT-Xent between the two views' pooled codes: the mean of each image's patch
    codes (global average pooling, SimCLR's backbone output). Not the ImageEncoder's region pooling:
    with it (a [R, G*G] matrix product, broadcast or batched) the step took 3.1-3.5 s against 0.48 s
    at batch 16 on the 2-core CPU (measured; the cause was not found). View 1's codes come from the
    net's own pass."""

    def __init__(self, net, grid, offsets, batch, weight, temperature):
        super().__init__(auto_prefix=False)  # keep the net's parameter names unchanged
        self.net, self.weight = net, weight
        rows, targets = query_tables(batch, grid, offsets)
        self.rows, self.targets = Tensor(rows), Tensor(targets)
        self.ntxent = NTXentLoss(temperature)

    def construct(self, patches, patches2):
        predicted, codes = self.net(patches)
        patch_loss = directions_infonce(predicted, codes, self.rows, self.targets)[0]
        second = self.net.encoder.encode_patches(patches2)
        return patch_loss + self.weight * self.ntxent(ops.stack((codes[0].mean(1), second.mean(1)), 1))
