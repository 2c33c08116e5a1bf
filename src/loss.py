"""The published CPC loss: sigmoid binary cross-entropy on the averaged score, and its accuracy."""
import numpy as np
from mindspore import nn


class CPCWithLoss(nn.Cell):
    """(x, y, label) -> mean binary cross-entropy of the CPC net's logit against sorted/random."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)  # keep the net's parameter names unchanged
        self.net = net
        self.loss = nn.BCEWithLogitsLoss()

    def construct(self, x, y, label):
        return self.loss(self.net(x, y), label)


def binary_accuracy(logits, labels):
    """Fraction of sequences whose logit sign matches the label (numpy arrays)."""
    return float(np.mean((np.asarray(logits) > 0) == (np.asarray(labels) > 0.5)))


def binary_cross_entropy(logits, labels):
    """Mean sigmoid binary cross-entropy in numpy (stable form), for evaluation logs."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    return float(np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))))


CHANCE_ACCURACY = 0.5  # half of every batch is positive
