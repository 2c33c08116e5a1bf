"""CPC on images (task: image), as CPC v2 (Henaff et al. 2020) made it work, as MindSpore Cells.

Each image is cut into a grid of overlapping square patches (PatchGrid; 64x64 with 16x16 patches
at stride 8: 7x7, 28x28 with 8x8 at stride 4: 6x6). Every patch is encoded to a code z by the
port's conv encoder (3x3 stride-2 conv blocks, Dense, Dense) whose normalisation is the `norm` key:
layer (default, CPC v2), group, batch or none. A context network of masked 3x3 convolutions over
the grid of codes gives each position c_{i,j} that sees its own row and the rows above only
(PixelCNN style). For each row offset k >= min_row_offset a linear map W_k predicts the code
k rows below: W_k c_{i,j} ~ z_{i+k,j} (src/model/patch_loss.py scores it with InfoNCE). With
`directions` 2 or 4 (CPC v2) the same is done on the grid flipped and/or transposed
(direction_order), each direction with its own context network and predictors.

ImageEncoder (images -> one vector each: its patch codes averaged over each region of a pool_grid x
pool_grid split of the grid, concatenated) is the frozen encoder of the downstream classifier and
what export.py --net encoder writes.
"""
import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.ops.operations import _grad_ops

from src.model.cpc import (
    LEAKY_ALPHA,
    ConvBlock,
    FlattenCHW,
    InputContrast,
    StagedEncoder,
    batch_norm_1d,
    conv_blocks,
    encoder_shape,
    leaky_relu,
)
from src.model.cpu.conv import Conv3x3S2
from src.model.cpu.layers import FastLeakyReLU, LayerNormLeakyReLU2d
from src.utils.geometry import GROUP_SIZE, patch_grid_size, patch_origins

NORM_EPS = 1e-5  # nn.LayerNorm / nn.GroupNorm default
CONTEXT_ALPHA = 0.2  # the context network's LeakyReLU slope (CPC v2's PixelCNN context)


def patch_index(image_size, patch_size, stride):
    """int32 [G*G*P*P]: the flat pixel of every patch pixel, patches row-major over the grid."""
    origins = patch_origins(image_size, patch_size, stride)
    inner = np.arange(patch_size)
    rows = origins[:, None, None, None] + inner[None, None, :, None]        # [G, 1, P, 1]
    cols = origins[None, :, None, None] + inner[None, None, None, :]        # [1, G, 1, P]
    return (rows * image_size + cols).reshape(-1).astype(np.int32)


class PatchGrid(nn.Cell):
    """Images [B, C, S, S] -> patches [B, G*G, C, P, P], grid row-major (one Gather)."""

    def __init__(self, image_size, patch_size, stride):
        super().__init__()
        self.grid, self.patch = patch_grid_size(image_size, patch_size, stride), patch_size
        self.index = Tensor(patch_index(image_size, patch_size, stride))

    def construct(self, x):
        b, c, h, w = x.shape
        patches = ops.gather(x.reshape(b, c, h * w), self.index, 2)
        patches = patches.reshape(b, c, self.grid * self.grid, self.patch, self.patch)
        return patches.transpose(0, 2, 1, 3, 4)


class Rsqrt(nn.Cell):
    """ops.rsqrt for exported graphs: MindSpore's ONNX exporter maps no Rsqrt, so the forward is
    1 / sqrt(x) (the same float32 values as the Rsqrt CPU kernel) and the backward is Rsqrt's own
    gradient (RsqrtGrad of the output), so training steps stay bit for bit those of ops.rsqrt."""

    def __init__(self):
        super().__init__()
        self.rsqrt_grad = _grad_ops.RsqrtGrad()
        self.one = Tensor(1.0, mstype.float32)  # a tensor, not 1.0: a Python number makes it Reciprocal, unmapped too

    def construct(self, x):
        return ops.div(self.one.astype(x.dtype), ops.sqrt(x))

    def bprop(self, x, out, dout):
        return (self.rsqrt_grad(out, dout),)


class GroupNorm2d(nn.Cell):
    """nn.GroupNorm(groups, channels, affine=False)'s function on NCHW or, for the compiled CPU
    convolutions, channels-last input; groups=1 is layer normalisation over (C, H, W). Statistics
    are per sample: one image's patches never see another's. No affine: the LeakyReLU and the next
    convolution follow, and on CPU the per-channel scale's gradient over the largest activation
    costs six times the normalisation itself. Each (sample, group) row's mean and variance are
    matmuls with a constant 1/n column, faster on CPU than ReduceMean or the LayerNorm kernel."""

    def __init__(self, groups, channels_last):
        super().__init__()
        self.groups, self.channels_last = groups, channels_last
        self.rsqrt = Rsqrt()

    def _normalise(self, rows):
        average = ops.ones((rows.shape[1], 1), rows.dtype) / rows.shape[1]
        centred = rows - ops.matmul(rows, average)
        return centred * self.rsqrt(ops.matmul(centred * centred, average) + NORM_EPS)

    def construct(self, x):
        if self.channels_last and self.groups > 1:  # groups are channel blocks: normalise in NCHW
            return self.construct_nchw(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
        if self.channels_last:
            return self._normalise(x.reshape(x.shape[0], -1)).reshape(x.shape)
        return self.construct_nchw(x)

    def construct_nchw(self, x):
        return self._normalise(x.reshape(x.shape[0] * self.groups, -1)).reshape(x.shape)


class NormConvBlock(nn.Cell):
    """conv 3x3 stride 2 -> group/layer norm or none -> LeakyReLU (norm: batch uses cpc.ConvBlock);
    layer norm + LeakyReLU on the compiled CPU form: one fused kernel (cpu.layers.LayerNormLeakyReLU2d)."""

    def __init__(self, in_channels, in_size, padding, backend, input_grad, out_channels, norm):
        super().__init__()
        self.conv = Conv3x3S2(in_channels, out_channels, in_size, padding, backend, input_grad)
        self.channels_last = self.conv.form == "kernel"
        groups = {"layer": 1, "group": max(1, out_channels // GROUP_SIZE)}.get(norm)
        # on the compiled form, layer norm + LeakyReLU is one kernel each way (no parameters either way)
        self.fused = self.channels_last and groups == 1
        if self.fused:
            self.norm = LayerNormLeakyReLU2d(NORM_EPS, LEAKY_ALPHA)
        else:
            self.norm = None if groups is None else GroupNorm2d(groups, self.channels_last)
        self.act = leaky_relu(backend)
        self.out_size = self.conv.out_size

    def construct(self, x):
        x = self.conv(x)
        if self.fused:
            return self.norm(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.act(x)


def dense_norm(hidden, norm, backend):
    """The norm after the encoder's dense layer: BatchNorm for batch, LayerNorm for layer and group
    (a [N, hidden] vector has no groups of positions), none for none."""
    if norm == "batch":
        return batch_norm_1d(hidden, backend)
    if norm in ("layer", "group"):
        return nn.LayerNorm((hidden,), begin_norm_axis=-1, begin_params_axis=-1, epsilon=NORM_EPS)
    return nn.Identity()


class PatchEncoder(StagedEncoder):
    """Patches [M, C, P, P] -> codes [M, code_size]: the port's encoder with the normalisation chosen
    by `norm`; stages: blocks (layers x conv 3x3/2 with `width` filters -> norm -> LeakyReLU) ->
    flatten (C, H, W order) -> dense (`hidden`) -> norm -> act (LeakyReLU) -> embedding (Dense code)."""

    def __init__(self, patch_size, channels, code_size, padding, backend, norm, layers, width, hidden):
        super().__init__()

        def block(cin, size, input_grad, _):
            if norm == "batch":
                return ConvBlock(cin, size, padding, backend, input_grad, width)
            return NormConvBlock(cin, size, padding, backend, input_grad, width, norm)
        self.blocks, size = conv_blocks(channels, patch_size, padding, layers, width, block)
        self.flatten = FlattenCHW(self.blocks[-1].channels_last)
        self.dense = nn.Dense(width * size * size, hidden, weight_init="XavierUniform")
        self.norm = dense_norm(hidden, norm, backend)
        self.act = leaky_relu(backend)
        self.embedding = nn.Dense(hidden, code_size, weight_init="XavierUniform")
        self.stage_names = ("blocks", "flatten", "dense", "norm", "act", "embedding")


def region_pooling(grid, pool):
    """float32 [pool*pool, G*G]: row r averages the patch codes of region r of a pool x pool split of
    the G x G grid (adaptive average pooling: region i spans rows floor(i*G/pool) .. ceil((i+1)*G/pool) - 1)."""
    starts = [i * grid // pool for i in range(pool)]
    ends = [-(-(i + 1) * grid // pool) for i in range(pool)]
    table = np.zeros((pool, pool, grid, grid), np.float32)
    for r in range(pool):
        for c in range(pool):
            table[r, c, starts[r]:ends[r], starts[c]:ends[c]] = 1.0 / ((ends[r] - starts[r]) * (ends[c] - starts[c]))
    return table.reshape(pool * pool, grid * grid)


class ImageEncoder(nn.Cell):
    """Images [B, C, S, S] in [-1, 1] -> [B, pool*pool*code_size]: the image's patch codes averaged
    over each region of a pool x pool split of the patch grid (region_pooling), concatenated.
    Built from the model keys (config.model_hparams, or a checkpoint's hyper-parameters).

    patches(): input contrast (src/model/cpc.py InputContrast, on the whole image) then the grid;
    encode_patches(): patches [B, G*G, C, P, P] -> codes [B, G*G, code_size] (training feeds
    patches cut and augmented by the data pipeline, src/data/patches.py)."""

    def __init__(self, hparams, backend):
        super().__init__()
        image_size, patch_size = hparams["image_size"], hparams["patch_size"]
        self.contrast = InputContrast(image_size) if hparams["input_contrast"] else None
        self.grid = PatchGrid(image_size, patch_size, hparams["patch_stride"])
        self.pooling = Tensor(region_pooling(self.grid.grid, hparams["pool_grid"]))
        self.patch_encoder = PatchEncoder(patch_size, 3 if hparams["color"] else 1, hparams["code_size"],
                                          hparams["padding"], backend, hparams["norm"], *encoder_shape(hparams))

    def patches(self, x):
        if self.contrast is not None:
            x = self.contrast(x)
        return self.grid(x)

    def encode_patches(self, patches):
        b, n = patches.shape[:2]
        return self.patch_encoder(patches.reshape((b * n,) + patches.shape[2:])).reshape(b, n, -1)

    def construct(self, x):
        pooled = ops.matmul(self.pooling, self.encode_patches(self.patches(x)))      # [B, pool*pool, D]
        return pooled.reshape(x.shape[0], -1)


def masked_taps(grid, taps=3):
    """float32 [G*G*taps*taps, G*G]: row (p, t) picks the input position that tap t of the masked
    taps x taps kernel at output position p reads (kernel rows i - taps + 1 .. i, columns j - 1 ..
    j + 1); all zero where the tap falls outside the grid (zero padding)."""
    table = np.zeros((grid * grid, taps * taps, grid * grid), np.float32)
    for i in range(grid):
        for j in range(grid):
            for t in range(taps * taps):
                row, col = i - (taps - 1) + t // taps, j - taps // 2 + t % taps
                if 0 <= row < grid and 0 <= col < grid:
                    table[i * grid + j, t, row * grid + col] = 1.0
    return table.reshape(-1, grid * grid)


class MaskedConv(nn.Cell):
    """3x3 convolution over a grid [B, G*G, Cin] -> [B, G*G, Cout] in which position (i, j) reads
    rows i - 2 .. i only (zero padding above and at the sides, none below): a PixelCNN-style mask
    that lets a position see its own row and the rows above. Written as im2col by one matmul with a
    constant 0/1 tap table (masked_taps) and one Dense: on CPU far faster than slicing or nn.Conv2d."""

    TAPS = 3

    def __init__(self, grid, in_channels, out_channels):
        super().__init__()
        self.taps = Tensor(masked_taps(grid, self.TAPS))
        self.dense = nn.Dense(self.TAPS * self.TAPS * in_channels, out_channels, weight_init="XavierUniform")

    def construct(self, x):
        b, n, c = x.shape
        cols = ops.matmul(self.taps, x)                      # [B, G*G*9, Cin]
        return self.dense(cols.reshape(b, n, -1))


class MaskedContext(nn.Cell):
    """Codes [B, G*G, D] (grid row-major) -> contexts [B, G*G, H]: a masked conv to H channels, then
    (layers - 1) residual masked convs, LeakyReLU after each; every position sees its own row and
    those above."""

    def __init__(self, grid, code_size, hidden_size, layers, backend):
        super().__init__()
        self.first = MaskedConv(grid, code_size, hidden_size)
        self.rest = nn.CellList([MaskedConv(grid, hidden_size, hidden_size) for _ in range(layers - 1)])
        # the hand-differentiated form on CPU, as in the encoder: nn.LeakyReLU's Maximum gradient
        # is a chain of Equal / Less / Select / Mul kernels there
        self.act = FastLeakyReLU(CONTEXT_ALPHA) if backend == "cpu" else nn.LeakyReLU(CONTEXT_ALPHA)

    def construct(self, z):
        c = self.act(self.first(z))
        for conv in self.rest:
            c = c + self.act(conv(c))
        return c


def direction_order(grid, direction):
    """int32 [G*G]: the row-major grid position whose code sits at each position of direction
    `direction`'s grid, so that its "rows above" are: 0 the rows above (top-down, the identity),
    1 the rows below (bottom-up: vertical flip), 2 the columns to the left (left-to-right:
    transpose), 3 the columns to the right (right-to-left: transpose, then vertical flip)."""
    index = np.arange(grid * grid).reshape(grid, grid)
    return (index, index[::-1], index.T, index.T[::-1])[direction].reshape(-1).astype(np.int32)


class ImageCPC(nn.Cell):
    """Patches [B, G*G, C, P, P] -> (predictions, codes): tuples of R tensors [B, G*G, K*D] and
    [B, G*G, D], one per `directions` (direction_order; tuples, not a stacked tensor: stacking
    copied every step's largest activations and cost ~11% of the one-direction step), positions in
    that direction's order: for each row offset k
    in `offsets` (K of them) the linear prediction W_k c_{i,j} of z_{i+k,j} in columns [k*D, (k+1)*D)
    (rows i + k >= G predict nothing; the loss ignores them). Direction 0 (top-down) keeps the
    attribute names `context` and `predictor` of the one-direction model, so its checkpoints load;
    the other directions' own context and predictor are registered after them, so the
    one-direction model's parameters, their order and their initial values are unchanged."""

    def __init__(self, encoder, hparams, backend):
        super().__init__()
        grid = patch_grid_size(hparams["image_size"], hparams["patch_size"], hparams["patch_stride"])
        code_size, hidden_size, context_layers = hparams["code_size"], hparams["hidden_size"], hparams["context_layers"]
        self.grid, self.offsets, self.code_size = grid, row_offsets(hparams), code_size
        self.directions = directions = hparams["directions"]
        self.encoder = encoder
        self.context = MaskedContext(grid, code_size, hidden_size, context_layers, backend)
        # rows [k*code_size, (k+1)*code_size) of the weight are W_k (one linear map per row offset)
        self.predictor = nn.Dense(hidden_size, len(self.offsets) * code_size, weight_init="XavierUniform")
        # direction d >= 1 at index d - 1; direction 0 needs no reordering (the identity)
        self.orders = tuple(Tensor(direction_order(grid, d)) for d in range(1, directions))
        self.extra_contexts = nn.CellList([MaskedContext(grid, code_size, hidden_size, context_layers, backend)
                                           for _ in range(1, directions)])
        self.extra_predictors = nn.CellList([nn.Dense(hidden_size, len(self.offsets) * code_size,
                                                      weight_init="XavierUniform") for _ in range(1, directions)])

    def direction_codes(self, z, d):
        """Codes [B, G*G, D] (row-major) in direction d's order (one constant Gather)."""
        return z if d == 0 else ops.gather(z, self.orders[d - 1], 1)

    def direction_context(self, codes, d):
        """Direction d's masked context of codes already in its order."""
        return self.context(codes) if d == 0 else self.extra_contexts[d - 1](codes)

    def direction_predictions(self, context, d):
        return self.predictor(context) if d == 0 else self.extra_predictors[d - 1](context)

    def construct(self, patches):
        z = self.encoder.encode_patches(patches)
        predictions, codes = (), ()
        for d in range(self.directions):
            ordered = self.direction_codes(z, d)
            predictions += (self.direction_predictions(self.direction_context(ordered, d), d),)
            codes += (ordered,)
        return predictions, codes


def row_offsets(hparams):
    """The predicted row offsets: min_row_offset .. G - 1 (G the grid side)."""
    grid = patch_grid_size(hparams["image_size"], hparams["patch_size"], hparams["patch_stride"])
    return tuple(range(hparams["min_row_offset"], grid))


def build_image_encoder(hparams, backend):
    """An ImageEncoder from the model keys (src/model/build.py fills in those a checkpoint predates)."""
    return ImageEncoder(hparams, backend)


def build_image_cpc(hparams, backend):
    """An ImageCPC from the model keys (src/model/build.py fills in those a checkpoint predates)."""
    return ImageCPC(build_image_encoder(hparams, backend), hparams, backend)
