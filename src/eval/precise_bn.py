"""Precise BatchNorm: re-estimate the moving statistics with the current weights before validation.

Why: BatchNorm's moving statistics are an exponential average over the last ~100 training steps
(momentum 0.99, as Keras), taken while the weights were still changing. At lr 1e-3 they lag the
weights far enough that inference-mode validation dips although the network itself is fine: on the
64x64 colour config, seed 0, the end-of-epoch-2 checkpoint scores 0.843 with its moving statistics
and 0.997 with batch statistics on the same validation batches. The fix (PreciseBN, Wu & Johnson
2021, "Rethinking 'Batch' in BatchNorm") recomputes each layer's population mean and variance over
a fixed set of training batches with the weights as they are now, and stores those in the moving
statistics. Training itself never reads the moving statistics, so the weights are unaffected; what
changes is every inference-mode result (validation, the checkpoints, eval.py, the exported models).

How, without touching the layers: per batch, zero each layer's moving mean and variance, run one
training-mode forward (each layer then holds (1 - momentum) * its batch statistic), read them back
and divide by (1 - momentum). Works for every BatchNorm form here (nn.BatchNorm1d/2d on Ascend/GPU,
the CPU Cells in src/model/cpu/layers.py) and needs no new graph.

Used before each validation in training (calibrate_bn in src/train/epoch_end.py) and after the
training of each downstream classifier (src/eval/protocol.py), whose BatchNorm moving averages lag
in the same way.
"""
import numpy as np
from mindspore import Tensor

from src.data.dataset import create_dataset
from src.model.cpc import BN_MOMENTUM


def batch_norm_layers(net):
    """The Cells of `net` that hold BatchNorm moving statistics, in a fixed order."""
    return [cell for _, cell in net.cells_and_names()
            if hasattr(cell, "moving_mean") and hasattr(cell, "moving_variance")]


def sequence_batches(source):
    """The (x, y) inputs of a CPC net for every batch of a SequenceSource, as PreciseBatchNorm's
    `batches` (the same batches at every call)."""
    return lambda: ((row[0], row[1]) for row in create_dataset(source).create_tuple_iterator(num_epochs=1))


def array_batches(inputs, batch_size):
    """One-input batches of a numpy array (images or codes), as PreciseBatchNorm's `batches`."""
    return lambda: ((Tensor(inputs[i:i + batch_size]),) for i in range(0, len(inputs), batch_size))


class PreciseBatchNorm:
    """Build once per run; each call sets every BatchNorm layer of `net` to the mean and variance of
    its input over the batches that `batches()` yields (input tuples of net; sequence_batches,
    array_batches), computed with the current weights: mean = average of the batch means,
    variance = average of the (unbiased) batch variances + the variance of the batch means."""

    def __init__(self, net, batches, momentum=BN_MOMENTUM):
        self.net, self.batches = net, batches
        self.layers = batch_norm_layers(net)
        self.fraction = np.float32(1.0 - momentum)  # the share of the batch statistic in one update

    def _set(self, values):
        for layer, (mean, var) in zip(self.layers, values):
            layer.moving_mean.set_data(Tensor(mean, layer.moving_mean.dtype))
            layer.moving_variance.set_data(Tensor(var, layer.moving_variance.dtype))

    def __call__(self):
        if not self.layers:
            return
        zeros = [(np.zeros(bn.moving_mean.shape, np.float32), np.zeros(bn.moving_variance.shape, np.float32))
                 for bn in self.layers]
        means, variances = [[] for _ in self.layers], [[] for _ in self.layers]
        was_training = self.net.training
        self.net.set_train(True)
        for inputs in self.batches():
            self._set(zeros)
            self.net(*inputs)
            for i, layer in enumerate(self.layers):
                means[i].append(layer.moving_mean.asnumpy() / self.fraction)
                variances[i].append(layer.moving_variance.asnumpy() / self.fraction)
        self.net.set_train(was_training)
        if not means[0]:  # no batches: nothing was zeroed, the statistics stay as they were
            return
        self._set([(np.mean(m, 0), np.mean(v, 0) + np.var(m, 0)) for m, v in zip(means, variances)])
