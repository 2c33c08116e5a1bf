"""InfoNCE over patches for the image task (CPC v2).

For each image b, grid position (i, j) and row offset k the prediction p = W_k c_{b,i,j} scores
every patch code of the batch, z_{b',i',j'} for all b', i', j' (B * G * G candidates): the true
patch z_{b,i+k,j} is the positive, the B * G * G - 1 patches of other positions and other images
are the negatives; each candidate appears exactly once, so the positive is never also counted as
a negative. Loss = -log softmax of the positive, averaged over every prediction whose target row
lies inside the grid; accuracy = top-1 (the positive scores highest among all candidates).

With several directions (ImageCPC `directions`) each direction's predictions and codes come in
that direction's order of the grid positions and are scored with the same query tables; the loss
and accuracy are the means over directions.
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
    # log_softmax is one kernel each way over the [Q, B*G*G] logits, where logsumexp - positive took
    # nine passes (ReduceMax's gradient alone three); the same loss but for float rounding. Not
    # SparseSoftmaxCrossEntropyWithLogits, faster still: on CPU it takes the log of an underflowed
    # softmax, inf for a positive scored ~100 below the best candidate (met at step 2 of a real run)
    positive = ops.gather_elements(ops.log_softmax(logits, -1), 1, targets.reshape(-1, 1))
    loss = -positive.mean()
    return loss, ops.cast(ops.argmax(logits, -1) == targets, mstype.float32).mean()


def directions_infonce(predicted, codes, rows, targets):
    """(loss, accuracy) averaged over directions: predicted, codes: tuples of R tensors [B, G*G, K*D]
    and [B, G*G, D], those of direction r in its own order of the grid. The query tables hold for every direction: a
    direction reorders the positions within each image, so its candidates are still all B*G*G
    codes of the batch, each once, and target b*G*G + (i+k)*G + j is its true patch in that order."""
    loss, accuracy = patch_infonce(predicted[0], codes[0], rows, targets)
    for r in range(1, len(predicted)):
        more = patch_infonce(predicted[r], codes[r], rows, targets)
        loss, accuracy = loss + more[0], accuracy + more[1]
    return loss / len(predicted), accuracy / len(predicted)  # / 1 is exact: one direction unchanged


class PatchInfoNCE(nn.Cell):
    """patches [batch, G*G, ...] -> (loss, accuracy), means over the net's directions, of an ImageCPC
    net or its mixed-precision form (the evaluation scorer); grid, offsets: the net's grid side and
    row offsets."""

    def __init__(self, net, grid, offsets, batch):
        super().__init__(auto_prefix=False)  # keep the net's parameter names unchanged
        self.net = net
        rows, targets = query_tables(batch, grid, offsets)
        self.rows, self.targets = Tensor(rows), Tensor(targets)

    def construct(self, patches):
        predicted, codes = self.net(patches)
        return directions_infonce(predicted, codes, self.rows, self.targets)


class PatchInfoNCEWithLoss(nn.Cell):
    """patches -> mean InfoNCE loss (the train step's loss cell)."""

    def __init__(self, net, grid, offsets, batch):
        super().__init__(auto_prefix=False)
        self.scores = PatchInfoNCE(net, grid, offsets, batch)

    def construct(self, patches):
        return self.scores(patches)[0]
