"""CPU replacement layers of the encoder: the same functions and parameter names as MindSpore's
nn.LeakyReLU / nn.BatchNorm1d / nn.BatchNorm2d + LeakyReLU, written for the CPU backend, where
MindSpore's own kernels (and their gradients) dominate the step. Chosen by src/model/cpc.py for the cpu
backend (src/model/backend.py)."""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops


class FastLeakyReLU(nn.Cell):
    """LeakyReLU with a hand-written backward: dx = dout where x > 0, alpha * dout elsewhere.

    The same function as nn.LeakyReLU (max(x, alpha x)), but MindSpore differentiates that Maximum
    on CPU with a chain of Equal/Less/Select kernels over the whole tensor; one Select is about
    twice as fast on the encoder's largest activations. Used by the cpu backend."""

    def __init__(self, alpha):
        super().__init__()
        self.alpha = alpha

    def construct(self, x):
        return ops.maximum(x, x * self.alpha)

    def bprop(self, x, out, dout):
        return (ops.select(x > 0, dout, dout * self.alpha),)


def batch_norm_parameters(num_features):
    """nn.BatchNorm's Parameters in its order and names: moving_mean, moving_variance, gamma, beta."""
    def param(value, name, grad):
        return Parameter(Tensor(np.full(num_features, value, np.float32)), name=name, requires_grad=grad)
    return {"moving_mean": param(0.0, "moving_mean", False), "moving_variance": param(1.0, "moving_variance", False),
            "gamma": param(1.0, "gamma", True), "beta": param(0.0, "beta", True)}


def update_moving_statistics(layer, mean, var, count):
    """moving = momentum * moving + (1 - momentum) * batch, with the unbiased batch variance (as
    nn.BatchNorm); mean and var: the biased batch statistics over `count` values per channel."""
    keep = layer.momentum
    ops.assign(layer.moving_mean, layer.moving_mean * keep + ops.stop_gradient(mean) * (1 - keep))
    ops.assign(layer.moving_variance, layer.moving_variance * keep
               + ops.stop_gradient(var) * (count / (count - 1) * (1 - keep)))


class FastBatchNorm1d(nn.Cell):
    """nn.BatchNorm1d written out in elementwise ops, with the same parameters and names (gamma,
    beta, moving_mean, moving_variance) and the same semantics: batch statistics in training
    (moving variance updated with the unbiased batch variance), moving statistics in inference.
    On CPU, MindSpore's BatchNormGrad for 2-D input costs more than the rest of the encoder's dense
    layers together; these ops on a [batch, 256] tensor cost next to nothing. Used on CPU."""

    def __init__(self, num_features, eps, momentum):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        params = batch_norm_parameters(num_features)
        self.moving_mean, self.moving_variance = params["moving_mean"], params["moving_variance"]
        self.gamma, self.beta = params["gamma"], params["beta"]

    def construct(self, x):
        if self.training:
            mean = x.mean(0)
            centred = x - mean
            var = (centred * centred).mean(0)
            update_moving_statistics(self, mean, var, x.shape[0])
            return centred * (ops.rsqrt(var + self.eps) * self.gamma) + self.beta
        return (x - self.moving_mean) * (ops.rsqrt(self.moving_variance + self.eps) * self.gamma) + self.beta


class BatchNormLeakyReLU2d(nn.Cell):
    """BatchNorm2d + LeakyReLU over channels-last x [N, H, W, C] on the compiled CPU kernels
    (src/model/cpu/kernels.py), one pass each way. nn.BatchNorm2d's parameters by name and its semantics:
    batch statistics in training, the moving statistics updated as moving = momentum * moving +
    (1 - momentum) * batch (unbiased batch variance), moving statistics in inference."""

    def __init__(self, num_features, eps, momentum, alpha):
        super().__init__()
        from src.model.cpu.kernels import BatchNormLeakyInfer, BatchNormLeakyTrain
        self.momentum = momentum
        params = batch_norm_parameters(num_features)
        self.moving_mean, self.moving_variance = params["moving_mean"], params["moving_variance"]
        self.gamma, self.beta = params["gamma"], params["beta"]
        self.train_kernel = BatchNormLeakyTrain(eps, alpha)
        self.infer_kernel = BatchNormLeakyInfer(eps, alpha)

    def construct(self, x):
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if self.training:
            y, mean, var = self.train_kernel(flat, self.gamma, self.beta)
            update_moving_statistics(self, mean, var, flat.shape[0])
        else:
            y = self.infer_kernel(flat, self.gamma, self.beta, self.moving_mean, self.moving_variance)
        return y.reshape(shape)


class LayerNormLeakyReLU2d(nn.Cell):
    """Layer normalisation of each sample over all its (H, W, C) values, no affine, + LeakyReLU, on
    channels-last x [N, H, W, C], as one compiled kernel each way (src/model/cpu/kernels.py): the
    function of image_cpc.GroupNorm2d(groups=1) + FastLeakyReLU, whose MindSpore ops make about ten
    elementwise passes and four matmuls over the activation per step. No parameters."""

    def __init__(self, eps, alpha):
        super().__init__()
        from src.model.cpu.kernels import LayerNormLeaky
        self.kernel = LayerNormLeaky(eps, alpha)

    def construct(self, x):
        y, _, _ = self.kernel(x.reshape(x.shape[0], -1))
        return y.reshape(x.shape)
