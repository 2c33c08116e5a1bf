"""PyTorch twins of src/model/contrastive.py, the torch side of the contrastive methods' benchmark.

Same constructor arguments, inputs and formulas as the MindSpore Cells (see that module's doc).
SupConLoss follows HobbitLong/SupContrast's SupConLoss (contrast_mode='all') step by step, its
numerics included: each row's largest logit (the anchor's own included) is subtracted, the
anchor's own term is zeroed after exp(), 1e-9 is added inside the log, and the mean over an
anchor's positives is scaled by temperature / base_temperature; SupContrast normalises the codes
in its model (F.normalize in the projection head), here normalize=True does it. NTXentLoss is
that loss with the identity as the positive mask, as SupContrast's SimCLR mode.

Arguments are not checked here (the port's Cells refuse bad ones). An optional tool (pip install
torch, the CPU build) that imports no MindSpore; the port never imports it.
"""
import torch
import torch.nn.functional as F
from torch import nn


def maybe_normalize(codes, normalize):
    return F.normalize(codes.float(), dim=-1, eps=1e-12) if normalize else codes.float()


def supcontrast_formula(features, positives, temperature, base_temperature):
    """SupContrast's loss of features [N, V, D] and positives [N, N] (diagonal included)."""
    batch, views = features.shape[:2]
    count = batch * views
    codes = torch.cat(torch.unbind(features, dim=1), dim=0)            # view-major, [N*V, D]
    scores = codes @ codes.T / temperature
    scores = scores - scores.max(dim=1, keepdim=True).values.detach()  # for exp(): no effect on the loss
    others = 1.0 - torch.eye(count, dtype=scores.dtype)                # an anchor is never its own candidate
    mask = positives.repeat(views, views) * others
    log_prob = scores - torch.log((torch.exp(scores) * others).sum(1, keepdim=True) + 1e-9)
    mean_positive = (mask * log_prob).sum(1) / mask.sum(1)
    return -(temperature / base_temperature) * mean_positive.mean()


class SupConLoss(nn.Module):
    def __init__(self, temperature, base_temperature=None, normalize=True):
        super().__init__()
        self.temperature = float(temperature)
        self.base = self.temperature if base_temperature is None else float(base_temperature)
        self.normalize = normalize

    def forward(self, features, labels):
        same = (labels.reshape(-1, 1) == labels.reshape(1, -1)).float()
        return supcontrast_formula(maybe_normalize(features, self.normalize), same, self.temperature, self.base)


class NTXentLoss(nn.Module):
    def __init__(self, temperature, normalize=True):
        super().__init__()
        self.temperature = float(temperature)
        self.normalize = normalize

    def forward(self, features):
        own = torch.eye(features.shape[0])
        return supcontrast_formula(maybe_normalize(features, self.normalize), own, self.temperature,
                                   self.temperature)


class CrossViewInfoNCE(nn.Module):
    def __init__(self, temperature, normalize=True):
        super().__init__()
        self.temperature = float(temperature)
        self.normalize = normalize

    def forward(self, codes_a, codes_b):
        logits = maybe_normalize(codes_a, self.normalize) @ maybe_normalize(codes_b, self.normalize).T
        logits = logits / self.temperature
        target = torch.arange(len(logits))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class ContrastiveMarginLoss(nn.Module):
    def __init__(self, margin, normalize=True):
        super().__init__()
        self.margin = float(margin)
        self.normalize = normalize

    def forward(self, first, second, same):
        diff = maybe_normalize(first, self.normalize) - maybe_normalize(second, self.normalize)
        squared = (diff * diff).sum(-1)
        # the distance's gradient is 0 (not NaN) where it is 0, as the port's safe_distance
        distance = torch.where(squared > 0, squared.clamp_min(1e-30).sqrt(), torch.zeros_like(squared))
        apart = F.relu(self.margin - distance)
        return (same.float() * squared + (1.0 - same.float()) * apart * apart).mean() / 2


class TripletMarginLoss(nn.Module):
    def __init__(self, margin, normalize=True):
        super().__init__()
        self.margin = float(margin)
        self.normalize = normalize

    def forward(self, anchor, positive, negative):
        anchor = maybe_normalize(anchor, self.normalize)
        near = (anchor - maybe_normalize(positive, self.normalize)).pow(2).sum(-1)
        far = (anchor - maybe_normalize(negative, self.normalize)).pow(2).sum(-1)
        return F.relu(near - far + self.margin).mean()
