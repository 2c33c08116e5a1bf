"""The CPC network as MindSpore Cells: Encoder, the GRU context model and the bilinear scorer.

As in D. Tellez's Keras implementation: each image is encoded to a code z; a GRU summarises the
`terms` context codes into c_t; for each future step k a linear map W_k predicts W_k c_t and the
score of a future code is z_{t+k}^T W_k c_t. The published (binary) model averages the scores of
all future steps into one logit per sequence: sorted (1) or not (0).
"""
from mindspore import Tensor, nn, ops

from src.config import ENCODER_DEFAULTS, ENCODER_SHAPE_KEYS
from src.model.cpu.conv import Conv3x3S2
from src.model.cpu.layers import BatchNormLeakyReLU2d, FastBatchNorm1d, FastLeakyReLU
from src.utils.geometry import border_mean_weights, conv_geometry, encoder_output_size

ENCODER_CHANNELS = ENCODER_DEFAULTS["encoder_channels"]  # the defaults; model keys encoder_channels/_hidden/_layers
ENCODER_HIDDEN = ENCODER_DEFAULTS["encoder_hidden"]
ENCODER_LAYERS = ENCODER_DEFAULTS["encoder_layers"]
BN_EPS, BN_MOMENTUM = 1e-3, 0.99   # Keras BatchNormalization defaults (MindSpore momentum convention)
LEAKY_ALPHA = 0.3                  # Keras LeakyReLU default


def batch_norm_1d(num_features, fast):
    """The encoder's dense BatchNorm: FastBatchNorm1d on CPU, nn.BatchNorm1d elsewhere."""
    if fast:
        return FastBatchNorm1d(num_features, BN_EPS, BN_MOMENTUM)
    return nn.BatchNorm1d(num_features, eps=BN_EPS, momentum=BN_MOMENTUM)


def leaky_relu(fast):
    """The encoder's activation: FastLeakyReLU on CPU, nn.LeakyReLU (a fused kernel) elsewhere."""
    return FastLeakyReLU(LEAKY_ALPHA) if fast else nn.LeakyReLU(LEAKY_ALPHA)


class ConvBlock(nn.Cell):
    """conv 3x3 stride 2 -> BatchNorm -> LeakyReLU. With the compiled CPU kernels (conv form
    'kernel') input and output are channels-last and BatchNorm + LeakyReLU is one fused Cell, `bn`
    (the same parameter names as nn.BatchNorm2d); otherwise NCHW."""

    def __init__(self, in_channels, in_size, padding, fast_conv, input_grad=True, out_channels=ENCODER_CHANNELS,
                 contrast=False):
        super().__init__()
        self.conv = Conv3x3S2(in_channels, out_channels, in_size, padding, fast_conv, input_grad, contrast)
        self.channels_last = self.conv.form == "kernel"
        if self.channels_last:
            self.bn = BatchNormLeakyReLU2d(out_channels, BN_EPS, BN_MOMENTUM, LEAKY_ALPHA)
            self.act = None
        else:
            self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
            self.act = leaky_relu(fast_conv)
        self.out_size = self.conv.out_size

    def construct(self, x):
        if self.act is None:
            return self.bn(self.conv(x))
        return self.act(self.bn(self.conv(x)))


class InputContrast(nn.Cell):
    """x -> |x - background| - 1 per image and channel, background = the mean of the border frame.

    Parameter-free. In the colour task each digit is the inverted background, so whether ink is
    brighter or darker than its surroundings, and by how much, changes from image to image and
    channel to channel; a freshly initialised encoder then sees mostly background colour, and the
    published CPC model sits at chance (the original's well-known 0.693 plateau). The magnitude of
    the deviation from the background is the digit in every image. On grey MNIST (background -1)
    this is the identity."""

    def __init__(self, image_size):
        super().__init__()
        self.weights = Tensor(border_mean_weights(image_size))

    def construct(self, x):
        n, c, h, w = x.shape
        flat = x.reshape(n * c, h * w)
        background = ops.matmul(flat, self.weights)                       # [N*C, 1]
        return (ops.abs(flat - background) - 1.0).reshape(n, c, h, w)


class Encoder(nn.Cell):
    """Images [N, C, S, S] in [-1, 1] -> codes [N, code_size].

    layers x (conv 3x3/2 with `width` filters -> BatchNorm -> LeakyReLU) -> flatten (C, H, W order)
    -> Dense `hidden` -> BatchNorm -> LeakyReLU -> Dense code_size. Defaults: the original's 64x64
    encoder (4 blocks of 64, Dense 256); its 28x28 variant is layers=3, width=32, hidden=128."""

    def __init__(self, image_size, channels, code_size, padding="valid", fast_conv=True, input_contrast=False,
                 layers=ENCODER_LAYERS, width=ENCODER_CHANNELS, hidden=ENCODER_HIDDEN):
        super().__init__()
        if encoder_output_size(image_size, padding, layers) < 1:
            raise ValueError(f"image_size {image_size} is too small for the encoder with {padding} padding")
        blocks, size = [], image_size
        for i in range(layers):
            # the first layer's input is the image itself: its gradient is never needed
            blocks.append(ConvBlock(channels if i == 0 else width, size, padding, fast_conv,
                                    input_grad=i > 0, out_channels=width, contrast=input_contrast and i == 0))
            size = conv_geometry(size, padding)[0]
        self.blocks = nn.SequentialCell(blocks)
        self.channels_last = blocks[-1].channels_last  # the compiled CPU form: NHWC between blocks
        # the compiled CPU form applies the input contrast inside the first im2col (src/model/cpu/kernels.py)
        fused = blocks[0].conv.contrast
        self.contrast = InputContrast(image_size) if input_contrast and not fused else None
        self.flatten = nn.Flatten()
        self.dense = nn.Dense(width * size * size, hidden, weight_init="XavierUniform")
        self.bn = batch_norm_1d(hidden, fast_conv)
        self.act = leaky_relu(fast_conv)
        self.embedding = nn.Dense(hidden, code_size, weight_init="XavierUniform")

    def construct(self, x):
        if self.contrast is not None:
            x = self.contrast(x)
        x = self.blocks(x)
        if self.channels_last:  # flatten in (C, H, W) order in every form: the dense weights are shared
            x = x.transpose(0, 3, 1, 2)
        x = self.flatten(x)
        return self.embedding(self.act(self.bn(self.dense(x))))


class CPC(nn.Cell):
    """Context images x [B, terms, C, S, S] and future images y [B, predict_terms, C, S, S]
    -> one logit per sequence [B, 1] (mean over steps and code of z_{t+k} * W_k c_t).
    encoder: images -> codes [N, code_size] (build_encoder); build_cpc builds the whole net."""

    def __init__(self, encoder, terms, predict_terms, code_size, hidden_size):
        super().__init__()
        self.terms, self.predict_terms, self.code_size = terms, predict_terms, code_size
        self.encoder = encoder
        self.gru = nn.GRU(code_size, hidden_size, batch_first=True)
        # rows [k*code_size, (k+1)*code_size) of the weight are W_k (one linear map per future step)
        self.predictor = nn.Dense(hidden_size, predict_terms * code_size, weight_init="XavierUniform")

    def predictions(self, x, y):
        """(W_k c_t for every step [B, predict_terms, code_size], future codes z_{t+k}, same shape)."""
        batch = x.shape[0]
        # context and future images go through the encoder as one batch: one conv per layer, not two
        images = ops.concat((x.reshape((-1,) + x.shape[2:]), y.reshape((-1,) + y.shape[2:])), 0)
        codes = self.encoder(images)
        z_context = codes[:batch * self.terms].reshape(batch, self.terms, self.code_size)
        z_future = codes[batch * self.terms:].reshape(batch, self.predict_terms, self.code_size)
        hidden = self.gru(z_context)[1]  # h_n alone: an unused outputs element was an isolated node MindSpore warned of
        predicted = self.predictor(hidden[-1]).reshape(batch, self.predict_terms, self.code_size)
        return predicted, z_future

    def scores(self, x, y):
        """Per-step scores z_{t+k}^T W_k c_t / code_size, [B, predict_terms]."""
        predicted, z_future = self.predictions(x, y)
        return (predicted * z_future).mean(-1)

    def construct(self, x, y):
        return self.scores(x, y).mean(-1, keep_dims=True)


def encoder_shape(hparams):
    """The encoder's (layers, width, hidden) from checkpoint hyper-parameters; a checkpoint written
    before these keys existed holds the default encoder."""
    return tuple(hparams.get(k, ENCODER_DEFAULTS[k]) for k in ENCODER_SHAPE_KEYS)
