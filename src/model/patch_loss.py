"""InfoNCE over patches for the image task (CPC v2).

For each image b, grid position (i, j) and row offset k the prediction p = W_k c_{b,i,j} scores
every patch code of the batch, z_{b',i',j'} for all b', i', j' (B * G * G candidates): the true
patch z_{b,i+k,j} is the positive, the B * G * G - 1 patches of other positions and other images
are the negatives; each candidate appears exactly once, so the positive is never also counted as
a negative. Loss = -log softmax of the positive, averaged over every prediction whose target row
lies inside the grid; accuracy = top-1 (the positive scores highest among all candidates).
"""
from mindspore import dtype as mstype
from mindspore import nn, ops


def positive_index(batch, grid, offset):
    """int32 [batch * (G - k) * G]: the flat candidate index b*G*G + (i+k)*G + j of each prediction's
    true patch, predictions ordered (b, i, j) over rows i < G - k."""
    b = ops.arange(batch, dtype=mstype.int32).reshape(-1, 1, 1) * (grid * grid)
    i = (ops.arange(grid - offset, dtype=mstype.int32).reshape(1, -1, 1) + offset) * grid
    j = ops.arange(grid, dtype=mstype.int32).reshape(1, 1, -1)
    return (b + i + j).reshape(-1)


def patch_logits(predicted, codes, index, offset):
    """(logits [Q, B*G*G] of the predictions at row offset number `index` (offset k) against every
    patch code, the positive's column [Q]). predicted [B, G, G, K, D], codes [B, G, G, D]."""
    batch, grid, _, dim = codes.shape
    queries = predicted[:, :grid - offset, :, index, :].reshape(-1, dim)
    logits = ops.matmul(queries, codes.reshape(-1, dim).T)
    return logits, positive_index(batch, grid, offset)


def patch_infonce(predicted, codes, offsets):
    """(mean InfoNCE loss, top-1 accuracy) over all row offsets, float32 scalars."""
    losses, hits = [], []
    for index, offset in enumerate(offsets):
        logits, target = patch_logits(ops.cast(predicted, mstype.float32), ops.cast(codes, mstype.float32),
                                      index, offset)
        positive = ops.gather_elements(logits, 1, target.reshape(-1, 1)).reshape(-1)
        losses.append(ops.logsumexp(logits, -1) - positive)
        hits.append(ops.cast(ops.argmax(logits, -1) == target, mstype.float32))
    return ops.concat(losses).mean(), ops.concat(hits).mean()


class PatchInfoNCE(nn.Cell):
    """patches -> (loss, accuracy) of an ImageCPC net or its mixed-precision form (the evaluation
    scorer); offsets: the net's row offsets."""

    def __init__(self, net, offsets):
        super().__init__(auto_prefix=False)  # keep the net's parameter names unchanged
        self.net, self.offsets = net, tuple(offsets)

    def construct(self, patches):
        predicted, codes = self.net(patches)
        return patch_infonce(predicted, codes, self.offsets)


class PatchInfoNCEWithLoss(nn.Cell):
    """patches -> mean InfoNCE loss (the train step's loss cell)."""

    def __init__(self, net, offsets):
        super().__init__(auto_prefix=False)
        self.scores = PatchInfoNCE(net, offsets)

    def construct(self, patches):
        return self.scores(patches)[0]
