"""The CPC network as MindSpore Cells: Encoder, the GRU context model and the bilinear scorer.

As in D. Tellez's Keras implementation: each image is encoded to a code z; a GRU summarises the
`terms` context codes into c_t; for each future step k a linear map W_k predicts W_k c_t and the
score of a future code is z_{t+k}^T W_k c_t. The published (binary) model averages the scores of
all future steps into one logit per sequence: sorted (1) or not (0).
"""
from mindspore import Tensor, nn, ops

from src.config import ENCODER_SHAPE_KEYS
from src.model.backend import fuses_input_contrast
from src.model.cpu.conv import Conv3x3S2
from src.model.cpu.layers import BatchNormLeakyReLU2d, FastBatchNorm1d, FastLeakyReLU
from src.utils.geometry import border_mean_weights, conv_geometry, encoder_output_size

BN_EPS, BN_MOMENTUM = 1e-3, 0.99   # Keras BatchNormalization defaults (MindSpore momentum convention)
LEAKY_ALPHA = 0.3                  # Keras LeakyReLU default


def batch_norm_1d(num_features, backend):
    """The encoder's dense BatchNorm: FastBatchNorm1d on the cpu backend, nn.BatchNorm1d elsewhere."""
    if backend == "cpu":
        return FastBatchNorm1d(num_features, BN_EPS, BN_MOMENTUM)
    return nn.BatchNorm1d(num_features, eps=BN_EPS, momentum=BN_MOMENTUM)


def leaky_relu(backend):
    """The encoder's activation: FastLeakyReLU on the cpu backend, nn.LeakyReLU (a fused kernel) elsewhere."""
    return FastLeakyReLU(LEAKY_ALPHA) if backend == "cpu" else nn.LeakyReLU(LEAKY_ALPHA)


class ConvBlock(nn.Cell):
    """conv 3x3 stride 2 -> BatchNorm -> LeakyReLU. With the compiled CPU kernels (conv form
    'kernel') input and output are channels-last and BatchNorm + LeakyReLU is one fused Cell, `bn`
    (the same parameter names as nn.BatchNorm2d); otherwise NCHW."""

    def __init__(self, in_channels, in_size, padding, backend, input_grad, out_channels, contrast=False):
        super().__init__()
        self.conv = Conv3x3S2(in_channels, out_channels, in_size, padding, backend, input_grad, contrast)
        self.channels_last = self.conv.form == "kernel"
        if self.channels_last:
            self.bn = BatchNormLeakyReLU2d(out_channels, BN_EPS, BN_MOMENTUM, LEAKY_ALPHA)
            self.act = None
        else:
            self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
            self.act = leaky_relu(backend)
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


class FlattenCHW(nn.Cell):
    """The last conv block's output -> [N, C*H*W] in (C, H, W) order in every form (channels-last
    from the compiled CPU kernels included): the dense weights are the same in every backend."""

    def __init__(self, channels_last):
        super().__init__()
        self.channels_last = channels_last
        self.flatten = nn.Flatten()

    def construct(self, x):
        if self.channels_last:
            x = x.transpose(0, 3, 1, 2)
        return self.flatten(x)


class StagedEncoder(nn.Cell):
    """An encoder that is an ordered list of named stages, each a Cell attribute: `stage_names`.
    construct runs them in that order, and the code that maps weights onto the encoder or reads
    its inner layers (the Keras importer, tools/feature_layers.py, tools/torch_reference.py) walks
    the same list, so the encoder's structure is written here only."""

    stage_names = ()

    def stages(self):
        """((name, Cell), ...) in the order construct runs them."""
        return tuple((name, getattr(self, name)) for name in self.stage_names)

    def stages_through(self, last):
        """The stage names up to and including `last`."""
        return self.stage_names[:self.stage_names.index(last) + 1]

    def construct(self, x):
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x


def conv_blocks(channels, size, padding, layers, width, block):
    """(SequentialCell of `layers` blocks made by block(in_channels, in_size, input_grad, index),
    output side); the first layer's input is the image itself: its gradient is never needed."""
    blocks = []
    for i in range(layers):
        blocks.append(block(channels if i == 0 else width, size, i > 0, i))
        size = conv_geometry(size, padding)[0]
    return nn.SequentialCell(blocks), size


class Encoder(StagedEncoder):
    """Images [N, C, S, S] in [-1, 1] -> codes [N, code_size].

    stages: [input contrast] -> blocks: layers x (conv 3x3/2 with `width` filters -> BatchNorm ->
    LeakyReLU) -> flatten (C, H, W order) -> dense (`hidden`) -> bn -> act (LeakyReLU) -> embedding
    (Dense code_size). The original's 64x64 encoder is 4 blocks of 64, Dense 256 (SCHEMA's
    defaults); its 28x28 variant is layers=3, width=32, hidden=128."""

    def __init__(self, image_size, channels, code_size, padding, backend, input_contrast, layers, width, hidden):
        super().__init__()
        if encoder_output_size(image_size, padding, layers) < 1:
            raise ValueError(f"image_size {image_size} is too small for the encoder with {padding} padding")
        # the compiled CPU form applies the input contrast inside the first im2col (src/model/cpu/kernels.py)
        fused = input_contrast and fuses_input_contrast(backend)
        self.blocks, size = conv_blocks(
            channels, image_size, padding, layers, width,
            lambda cin, side, grad, i: ConvBlock(cin, side, padding, backend, grad, width, fused and i == 0))
        self.contrast = InputContrast(image_size) if input_contrast and not fused else None
        self.flatten = FlattenCHW(self.blocks[-1].channels_last)
        self.dense = nn.Dense(width * size * size, hidden, weight_init="XavierUniform")
        self.bn = batch_norm_1d(hidden, backend)
        self.act = leaky_relu(backend)
        self.embedding = nn.Dense(hidden, code_size, weight_init="XavierUniform")
        self.stage_names = (("contrast",) if self.contrast is not None else ()) + (
            "blocks", "flatten", "dense", "bn", "act", "embedding")


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
    """The encoder's (layers, width, hidden) from checkpoint hyper-parameters (config.stored_hparams
    fills them in for a checkpoint written before these keys existed)."""
    return tuple(hparams[k] for k in ENCODER_SHAPE_KEYS)
