"""InfoNCE over patches for the image task (CPC v2).

For each image b, grid position (i, j) and row offset k the prediction p = W_k c_{b,i,j} scores
every patch code of the batch, z_{b',i',j'} for all b', i', j' (B * G * G candidates): the true
patch z_{b,i+k,j} is the positive, the B * G * G - 1 patches of other positions and other images
are the negatives; each candidate appears exactly once, so the positive is never also counted as
a negative. Loss = -log softmax of the positive, averaged over every prediction whose target row
lies inside the grid; accuracy = top-1 (the positive scores highest among all candidates).
"""
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

# pure numpy, kept beside the grid geometry so tools/torch_reference.py scores the same queries
# without importing MindSpore; imported here for the cells below and for callers of this module
from src.utils.geometry import query_tables


def patch_logits(predicted, codes, rows):
    """logits [Q, B*G*G] of the predictions at `rows` against every patch code of the batch.
    predicted [B, G*G, K*D], codes [B, G*G, D]."""
    dim = codes.shape[-1]
    queries = ops.gather(predicted.reshape(-1, dim), rows, 0)
    return ops.matmul(queries, codes.reshape(-1, dim).T)


def patch_infonce(predicted, codes, rows, targets):
    """(mean InfoNCE loss, top-1 accuracy) over the predictions of query_tables, float32 scalars."""
    logits = patch_logits(ops.cast(predicted, mstype.float32), ops.cast(codes, mstype.float32), rows)
    positive = ops.gather_elements(logits, 1, targets.reshape(-1, 1)).reshape(-1)
    loss = (ops.logsumexp(logits, -1) - positive).mean()
    return loss, ops.cast(ops.argmax(logits, -1) == targets, mstype.float32).mean()


class PatchInfoNCE(nn.Cell):
    """patches [batch, G*G, ...] -> (loss, accuracy) of an ImageCPC net or its mixed-precision form
    (the evaluation scorer); grid, offsets: the net's grid side and row offsets."""

    def __init__(self, net, grid, offsets, batch):
        super().__init__(auto_prefix=False)  # keep the net's parameter names unchanged
        self.net = net
        rows, targets = query_tables(batch, grid, offsets)
        self.rows, self.targets = Tensor(rows), Tensor(targets)

    def construct(self, patches):
        predicted, codes = self.net(patches)
        return patch_infonce(predicted, codes, self.rows, self.targets)


class PatchInfoNCEWithLoss(nn.Cell):
    """patches -> mean InfoNCE loss (the train step's loss cell)."""

    def __init__(self, net, grid, offsets, batch):
        super().__init__(auto_prefix=False)
        self.scores = PatchInfoNCE(net, grid, offsets, batch)

    def construct(self, patches):
        return self.scores(patches)[0]
