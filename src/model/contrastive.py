"""Contrastive losses of the methods CPC is compared with, as MindSpore Cells (one loss each).

Features are codes of a batch of N images (a projection head's output); each loss L2-normalises
them first unless built with normalize=False (the papers score cosine similarity, and a
temperature or a margin only has a fixed meaning on the unit sphere). All losses are float32
means over the batch.

- SupConLoss(temperature, base_temperature): features [N, V, D] (V >= 2 views of each image),
  labels [N]. Every one of the N*V views is an anchor; its positives are the other views with the
  same label, its candidates all N*V - 1 other views (Khosla et al., 2020, L_out):
      l_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a != i} exp(z_i.z_a / t) )
  times t / base_temperature (HobbitLong/SupContrast's SupConLoss, contrast_mode='all').
- NTXentLoss(temperature): SimCLR's loss (Chen et al., 2020), the same formula without labels:
  the only positives of a view are the other views of its own image.
- CrossViewInfoNCE(temperature): CMC (Tian et al., 2019) with in-batch negatives: codes of view a
  and view b [N, D]; logits z_a z_b^T / t, row i's positive is column i; the mean of the a->b and
  b->a cross-entropies (the paper sums the two directions: this is half its loss).
- ContrastiveMarginLoss(margin): Hadsell, Chopra and LeCun, 2006: pairs (x1, x2) [N, D] at
  distance d with same [N] (1 = a positive pair, 0 = a negative one; the paper's Y is 1 - same):
  same * d^2 / 2 + (1 - same) * max(0, margin - d)^2 / 2.
- TripletMarginLoss(margin): FaceNet (Schroff et al., 2015): max(0, |a - p|^2 - |a - n|^2 + margin)
  with squared Euclidean distances, for anchors, positives and negatives [N, D].

Which pairs or triplets a batch forms is the caller's choice, not the loss's.
"""
import math

from mindspore import dtype as mstype
from mindspore import nn, ops

MASKED_LOGIT = -1e9  # a view's logit against itself: exp() underflows to exactly 0


def check_positive(name, value):
    """float(value), or ValueError when it is not a finite number > 0 (NaN fails `> 0` too)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_pair(name, first, second):
    """Two [N, D] code tensors of one shape (runs at compile time in graph mode: shapes are static)."""
    if first.ndim != 2 or first.shape != second.shape:
        raise ValueError(f"{name} needs two code tensors [N, D] of one shape, got {first.shape} and {second.shape}")


def l2_normalize(codes, normalize):
    """codes as float32, on the unit sphere along the last axis when normalize is set."""
    codes = ops.cast(codes, mstype.float32)
    return ops.L2Normalize(axis=-1, epsilon=1e-12)(codes) if normalize else codes


def supcon_loss(features, positives, temperature, scale):
    """SupCon's L_out of features [N, V, D] (already normalised) and positives [N, N] (1 where image
    j is a positive of image i, the diagonal included), times scale."""
    batch, views, dim = features.shape
    count = batch * views
    # view-major order (all first views, then all second views ...), as SupContrast concatenates them
    codes = features.transpose(1, 0, 2).reshape(count, dim)
    itself = ops.eye(count, count, mstype.float32)
    logits = ops.matmul(codes, codes.T) / temperature + itself * MASKED_LOGIT
    log_prob = logits - ops.logsumexp(logits, 1, True)
    mask = ops.tile(positives, (views, views)) * (1.0 - itself)   # never an anchor's own view
    mean_positive = (mask * log_prob).sum(1) / mask.sum(1)
    return -scale * mean_positive.mean()


def check_views(features):
    """features [N, V, D] with V >= 2 (with one view an image without a same-label partner has no positive)."""
    if features.ndim != 3 or features.shape[1] < 2:
        raise ValueError(f"features must be [N, V, D] with V >= 2 views, got shape {features.shape}")


class SupConLoss(nn.Cell):
    """(features [N, V, D], labels [N]) -> SupCon loss; see the module doc. base_temperature: the
    reference code's loss scale t / base_temperature (None: t, a scale of 1, the paper's loss)."""

    def __init__(self, temperature, base_temperature=None, normalize=True):
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        base = self.temperature if base_temperature is None else check_positive("base_temperature",
                                                                                 base_temperature)
        self.scale = self.temperature / base
        self.normalize = normalize

    def construct(self, features, labels):
        check_views(features)
        if labels.shape != (features.shape[0],):
            raise ValueError(f"labels must be [N] for features {features.shape}, got shape {labels.shape}")
        same = ops.cast(labels.reshape(-1, 1) == labels.reshape(1, -1), mstype.float32)
        features = l2_normalize(features, self.normalize)
        return supcon_loss(features, same, self.temperature, self.scale)


class NTXentLoss(nn.Cell):
    """features [N, V, D] -> NT-Xent (SimCLR): SupCon where only the views of one image are positives."""

    def __init__(self, temperature, normalize=True):
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.normalize = normalize

    def construct(self, features):
        check_views(features)
        batch = features.shape[0]
        own = ops.eye(batch, batch, mstype.float32)
        return supcon_loss(l2_normalize(features, self.normalize), own, self.temperature, 1.0)


class CrossViewInfoNCE(nn.Cell):
    """(codes of view a [N, D], codes of view b [N, D]) -> symmetric in-batch InfoNCE (CMC)."""

    def __init__(self, temperature, normalize=True):
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.normalize = normalize

    def construct(self, codes_a, codes_b):
        check_pair("CrossViewInfoNCE", codes_a, codes_b)
        codes_a, codes_b = l2_normalize(codes_a, self.normalize), l2_normalize(codes_b, self.normalize)
        logits = ops.matmul(codes_a, codes_b.T) / self.temperature
        positive = ops.diagonal(logits)
        a_to_b = (ops.logsumexp(logits, 1) - positive).mean()   # each a picks its b among N
        b_to_a = (ops.logsumexp(logits, 0) - positive).mean()   # each b picks its a among N
        return (a_to_b + b_to_a) / 2


def safe_distance(squared):
    """sqrt of squared distances with a zero (not NaN) gradient where the distance is 0."""
    positive = squared > 0
    return ops.where(positive, ops.sqrt(ops.where(positive, squared, ops.ones_like(squared))),
                     ops.zeros_like(squared))


class ContrastiveMarginLoss(nn.Cell):
    """(x1 [N, D], x2 [N, D], same [N]) -> Hadsell et al.'s pairwise contrastive loss; see the module doc."""

    def __init__(self, margin, normalize=True):
        super().__init__()
        self.margin = check_positive("margin", margin)
        self.normalize = normalize

    def construct(self, first, second, same):
        check_pair("ContrastiveMarginLoss", first, second)
        if same.shape != (first.shape[0],):
            raise ValueError(f"same must be [N] for codes {first.shape}, got shape {same.shape}")
        diff = l2_normalize(first, self.normalize) - l2_normalize(second, self.normalize)
        squared = (diff * diff).sum(-1)
        same = ops.cast(same, mstype.float32)
        apart = ops.relu(self.margin - safe_distance(squared))
        return (same * squared + (1.0 - same) * apart * apart).mean() / 2


class TripletMarginLoss(nn.Cell):
    """(anchor, positive, negative [N, D]) -> FaceNet's triplet loss; see the module doc."""

    def __init__(self, margin, normalize=True):
        super().__init__()
        self.margin = check_positive("margin", margin)
        self.normalize = normalize

    def construct(self, anchor, positive, negative):
        check_pair("TripletMarginLoss", anchor, positive)
        check_pair("TripletMarginLoss", anchor, negative)
        anchor = l2_normalize(anchor, self.normalize)
        near = anchor - l2_normalize(positive, self.normalize)
        far = anchor - l2_normalize(negative, self.normalize)
        return ops.relu((near * near).sum(-1) - (far * far).sum(-1) + self.margin).mean()
