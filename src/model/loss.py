"""The CPC losses and their accuracies.

binary (the published variant of D. Tellez's Keras CPC): the per-step scores are averaged into one
logit per sequence, sigmoid binary cross-entropy against sorted (1) / random (0).

infonce (the CPC paper): for each sequence b and future step k the score of a candidate code z is
z^T W_k c_t; the true future code z_{b,k} is the positive and `num_negatives` future codes of other
sequences in the batch are the negatives (indices come with the batch, see src.data.dataset). Negatives
showing the positive's digit are masked out. Loss = -log softmax of the positive among the
candidates, averaged over sequences and steps; accuracy = top-1 (the positive scores highest).
"""
import numpy as np
from mindspore import dtype as mstype
from mindspore import nn, ops

from src.model.precision import mixed_precision

MASKED_LOGIT = -1e9  # a masked negative: exp() underflows to exactly 0


class CPCWithLoss(nn.Cell):
    """(x, y, label) -> mean binary cross-entropy of the CPC net's logit against sorted/random.
    net: the CPC net, or its mixed-precision form (the logit is cast to float32 before the loss)."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)  # keep the net's parameter names unchanged
        self.net = net
        self.loss = nn.BCEWithLogitsLoss()

    def construct(self, x, y, label):
        return self.loss(ops.cast(self.net(x, y), mstype.float32), label)


class CPCPredictions(nn.Cell):
    """(x, y) -> the CPC net's (W_k c_t, z_{t+k}) as a Cell call, so that mixed precision can wrap it."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, x, y):
        return self.net.predictions(x, y)


class CPCStepScores(nn.Cell):
    """(x, y) -> (the CPC net's logit [B, 1], its per-step scores [B, predict_terms]): the logit is
    the mean of the scores, computed as the net's own construct computes it."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, x, y):
        scores = self.net.scores(x, y)
        return scores.mean(-1, keep_dims=True), scores


def infonce_logits(predicted, z_future, negatives, valid):
    """Candidate logits [B, K, 1 + M]: column 0 the positive z_{b,k}^T p_{b,k}, then the M negatives
    (MASKED_LOGIT where valid is 0). predicted, z_future: [B, K, D]; negatives: int32 [B, K, M]
    indices into z_future flattened to [B * K, D]; valid: float32 [B, K, M]."""
    batch, steps, dim = z_future.shape
    positive = (predicted * z_future).sum(-1, keepdims=True)                         # [B, K, 1]
    flat = z_future.reshape(batch * steps, dim)
    candidates = ops.gather(flat, negatives.reshape(-1), 0).reshape(negatives.shape + (dim,))
    negative = (ops.expand_dims(predicted, 2) * candidates).sum(-1)                  # [B, K, M]
    negative = negative * valid + (1.0 - valid) * MASKED_LOGIT
    return ops.concat((positive, negative), -1)


class InfoNCELogits(nn.Cell):
    """(x, y, negatives, valid) -> InfoNCE candidate logits [B, K, 1 + M], float32.
    predictions: a Cell (x, y) -> (W_k c_t, z_{t+k}): CPCPredictions(net) or its mixed-precision form."""

    def __init__(self, predictions):
        super().__init__(auto_prefix=False)
        self.predictions = predictions

    def construct(self, x, y, negatives, valid):
        predicted, z_future = self.predictions(x, y)
        return infonce_logits(ops.cast(predicted, mstype.float32), ops.cast(z_future, mstype.float32),
                              negatives, valid)


class InfoNCEWithLoss(nn.Cell):
    """(x, y, negatives, valid) -> mean InfoNCE loss (cross-entropy of the positive, column 0)."""

    def __init__(self, predictions):
        super().__init__(auto_prefix=False)
        self.logits = InfoNCELogits(predictions)

    def construct(self, x, y, negatives, valid):
        logits = self.logits(x, y, negatives, valid)
        return (ops.logsumexp(logits, -1) - logits[:, :, 0]).mean()


def build_loss_cell(net, loss, amp_level="O0"):
    """The loss Cell the train step wraps: CPCWithLoss (binary) or InfoNCEWithLoss, around the Cell
    the loss calls (the net, or CPCPredictions(net)) under mixed precision at amp_level
    (src/model/precision.py: O2/O3 compute in float16 on a Parameter-sharing copy, so `net` stays
    float32 for evaluation); the losses cast to float32 once more themselves."""
    if loss not in ("binary", "infonce"):
        raise ValueError(f"unknown loss {loss!r} (binary | infonce)")
    scored = net if loss == "binary" else CPCPredictions(net)
    scored = mixed_precision(scored, amp_level)
    return CPCWithLoss(scored) if loss == "binary" else InfoNCEWithLoss(scored)


def binary_accuracy(logits, labels):
    """Fraction of sequences whose logit sign matches the label (numpy arrays)."""
    return float(np.mean((np.asarray(logits) > 0) == (np.asarray(labels) > 0.5)))


def binary_cross_entropy(logits, labels):
    """Mean sigmoid binary cross-entropy in numpy (stable form), for evaluation logs."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    return float(np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))))


def infonce_metrics(logits, valid):
    """numpy InfoNCE evaluation of candidate logits [..., 1 + M] (positive first) and the negatives'
    mask [..., M]: loss, top-1 accuracy (ties count as misses), chance accuracy (the mean of
    1 / number of candidates left after masking) and the collision rate (masked share)."""
    logits, valid = np.asarray(logits, np.float64), np.asarray(valid) > 0.5
    negative = np.where(valid, logits[..., 1:], -np.inf)
    top = np.maximum(negative.max(-1), logits[..., 0])
    lse = top + np.log(np.exp(logits[..., 0] - top) + np.exp(negative - top[..., None]).sum(-1))
    return {"loss": float(np.mean(lse - logits[..., 0])),
            "accuracy": float(np.mean(logits[..., 0] > negative.max(-1))),
            "chance_accuracy": float(np.mean(1.0 / (1 + valid.sum(-1)))),
            "collision_rate": float(1 - valid.mean())}


def binary_per_step(scores, labels):
    """Per future step k, the binary metrics of step k's score alone as the logit (numpy):
    {"accuracy": [K floats], "loss": [K floats]}. scores [B, K], labels [B, 1] or [B]."""
    scores, labels = np.asarray(scores), np.asarray(labels).reshape(-1)
    steps = range(scores.shape[1])
    return {"accuracy": [binary_accuracy(scores[:, k], labels) for k in steps],
            "loss": [binary_cross_entropy(scores[:, k], labels) for k in steps]}


def infonce_per_step(logits, valid):
    """Per future step k, InfoNCE loss and top-1 accuracy of step k's candidates alone (numpy):
    {"accuracy": [K floats], "loss": [K floats]}; their means are infonce_metrics' loss and accuracy
    (every step has the same number of positives). logits [B, K, 1 + M], valid [B, K, M]."""
    per_step = [infonce_metrics(logits[:, k], valid[:, k]) for k in range(np.asarray(logits).shape[1])]
    return {"accuracy": [m["accuracy"] for m in per_step], "loss": [m["loss"] for m in per_step]}


CHANCE_ACCURACY = 0.5  # binary loss: half of every batch is positive
