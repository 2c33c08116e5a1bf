"""The encoder's 3x3 stride-2 convolution: im2col + matmul on CPU, the native conv2d elsewhere.

On CPU with the compiled kernels (src/model/cpu/kernels.py) the convolution is channels-last: im2col and
col2im are one C++ pass each and the output stays NHWC for the fused BatchNorm + LeakyReLU that
follows, so no layout transposes remain. Without a compiler it falls back to the Gather form below.

MindSpore's CPU nn.Conv2d runs oneDNN's plain-layout reference kernel (~50x slower than PyTorch
for this network), and its CPU slice/pad kernels are slow too, while Gather is a fast block copy.
So on CPU the convolution is: patches = Gather(x, index table) -> one matmul, with a hand-written
backward (dW = patches^T dY; dX = four Gathers of dY W^T, one per kernel tap that can read a
pixel). The first layer, which needs no input gradient, gathers per channel and writes NCHW
directly (no transposes). On Ascend/GPU it is the device's own conv2d. Both forms hold one Parameter `weight` of
shape (out, in, 3, 3), nn.Conv2d's name and layout, without bias (a BatchNorm follows), so a
checkpoint trained on CPU loads on Ascend and back. 'same' padding is TF/Keras's (as
nn.Conv2d pad_mode='same'): padded taps read one zero pixel appended to the image.
"""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import XavierUniform, initializer

from src.model.backend import conv_form
from src.utils.geometry import KERNEL, STRIDE, border_mean_weights, conv_geometry


def gather_tables(size, padding):
    """Index tables of the gather convolution on a size x size input (numpy int32).

    taps [Ho*Wo, 9]: flat input pixel read by output o at tap k (size*size = the zero pixel).
    readers [size*size, 4]: flat patch entries o*9 + k that read each input pixel (at most 4 for
    a 3x3 stride-2 kernel); unused slots point at the zero row Ho*Wo*9."""
    out, before = conv_geometry(size, padding)
    oh, ow, ki, kj = np.meshgrid(np.arange(out), np.arange(out), np.arange(KERNEL), np.arange(KERNEL),
                                 indexing="ij")
    row, col = STRIDE * oh + ki - before, STRIDE * ow + kj - before
    inside = (row >= 0) & (row < size) & (col >= 0) & (col < size)
    taps = np.where(inside, row * size + col, size * size).reshape(out * out, KERNEL * KERNEL)
    entry = np.arange(taps.size)[inside.reshape(-1)]
    pixel = taps.reshape(-1)[inside.reshape(-1)]
    order = np.argsort(pixel, kind="stable")
    entry, pixel = entry[order], pixel[order]
    first = np.searchsorted(pixel, pixel)              # start of each pixel's group
    readers = np.full((size * size, 4), taps.size, np.int64)
    readers[pixel, np.arange(len(pixel)) - first] = entry
    return out, taps.astype(np.int32), readers.astype(np.int32), bool((~inside).any())


class _GatherConv(nn.Cell):
    """NHWC x [N, S, S, Cin], w9 [9*Cin, Cout] -> [N, So, So, Cout], with a hand-written bprop.

    The weight comes in as an input because a Cell with bprop may not use Parameters."""

    def __init__(self, size, padding, input_grad):
        super().__init__()
        self.out, taps, readers, self.pads = gather_tables(size, padding)
        self.taps = Tensor(taps)
        self.readers = tuple(Tensor(np.ascontiguousarray(readers[:, k])) for k in range(4))
        self.input_grad = input_grad
        self.matmul_ta = ops.MatMul(transpose_a=True)
        self.matmul_tb = ops.MatMul(transpose_b=True)

    def patches(self, x):
        n, h, w, c = x.shape
        flat = x.reshape(n, h * w, c)
        if self.pads:
            flat = ops.concat((flat, ops.zeros((n, 1, c), x.dtype)), 1)
        return ops.gather(flat, self.taps, 1).reshape(n * self.out * self.out, 9 * c)

    def construct(self, x, w9):
        return ops.matmul(self.patches(x), w9).reshape(x.shape[0], self.out, self.out, w9.shape[1])

    def bprop(self, x, w9, out, dout):
        n, h, w, c = x.shape
        cout = w9.shape[1]
        dw9 = self.matmul_ta(self.patches(x), dout.reshape(-1, cout))
        if not self.input_grad:  # the first layer's input is the image: no gradient needed
            return ops.zeros_like(x), dw9
        padded = ops.concat((dout.reshape(n, self.out * self.out, cout), ops.zeros((n, 1, cout), dout.dtype)), 1)
        dpatches = self.matmul_tb(padded.reshape(-1, cout), w9).reshape(n, (self.out * self.out + 1) * 9, c)
        dx = ops.gather(dpatches, self.readers[0], 1)
        for k in range(1, 4):  # four gathers + adds: ~6x faster than one gather + ReduceSum
            dx = dx + ops.gather(dpatches, self.readers[k], 1)
        return dx.reshape(n, h, w, c), dw9


class _GatherConvFirst(nn.Cell):
    """NCHW x [N, Cin, S, S], w2 [Cout, Cin*9] -> NCHW [N, Cout, So, So]; no input gradient.

    The first layer's form: with 1 or 3 input channels the per-channel gather is cheap, and a
    batched matmul writes the output directly in NCHW, so the two transposes of the largest
    activation (forward and backward) disappear. With 64 channels the NHWC form above is faster."""

    def __init__(self, size, padding):
        super().__init__()
        self.out, taps, _, self.pads = gather_tables(size, padding)
        self.hw = self.out * self.out
        self.taps = Tensor(np.ascontiguousarray(taps.T.reshape(-1)))  # tap-major: [9 * Ho*Wo]
        self.bmm_tb = ops.BatchMatMul(transpose_b=True)

    def patches(self, x):
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        if self.pads:
            flat = ops.concat((flat, ops.zeros((n, c, 1), x.dtype)), 2)
        return ops.gather(flat, self.taps, 2).reshape(n, c * 9, self.hw)

    def construct(self, x, w2):
        return ops.matmul(w2, self.patches(x)).reshape(x.shape[0], w2.shape[0], self.out, self.out)

    def bprop(self, x, w2, out, dout):
        d = dout.reshape(x.shape[0], w2.shape[0], self.hw)
        return ops.zeros_like(x), self.bmm_tb(d, self.patches(x)).sum(0)


class _KernelConv(nn.Cell):
    """x [N, S, S, Cin] (first layer: [N, Cin, S, S]), w9 [9*Cin, Cout] -> NHWC [N, So, So, Cout]:
    compiled im2col -> one matmul; backward dW = patches^T dY, dX = col2im(dY W^T). contrast (first
    layer only): the input-contrast layer applied inside the im2col (src/model/cpu/kernels.py)."""

    def __init__(self, size, padding, input_grad, contrast=False):
        super().__init__()
        from src.model.cpu.kernels import Col2im, Im2col
        self.out, taps, readers, _ = gather_tables(size, padding)
        self.im2col = Im2col(taps, channels_last=input_grad,
                             background_weights=border_mean_weights(size) if contrast else None)
        self.col2im = Col2im(taps, readers, size) if input_grad else None
        self.matmul_ta = ops.MatMul(transpose_a=True)
        self.matmul_tb = ops.MatMul(transpose_b=True)

    def construct(self, x, w9):
        return ops.matmul(self.im2col(x), w9).reshape(x.shape[0], self.out, self.out, w9.shape[1])

    def bprop(self, x, w9, out, dout):
        dy = dout.reshape(-1, w9.shape[1])
        dw9 = self.matmul_ta(self.im2col(x), dy)
        if self.col2im is None:  # the first layer's input is the image: no gradient needed
            return ops.zeros_like(x), dw9
        return self.col2im(self.matmul_tb(dy, w9)), dw9


class Conv3x3S2(nn.Cell):
    """3x3 stride-2 convolution without bias on NCHW input; `padding` is 'valid' or 'same'.

    backend 'cpu' (src/model/backend.py): a CPU form (needs the input size up front for its index
    tables): `form` 'kernel' (compiled, NHWC output, NHWC input except for the first layer) or
    'gather'; input_grad=False skips the input gradient (first layer). contrast=True (first layer of a
    backend that fuses_input_contrast): the input-contrast layer runs inside the im2col."""

    def __init__(self, in_channels, out_channels, in_size, padding, backend, input_grad=True, contrast=False):
        super().__init__()
        self.weight = Parameter(initializer(XavierUniform(), (out_channels, in_channels, KERNEL, KERNEL)),
                                name="weight")
        self.pad_mode = padding
        self.in_channels, self.out_channels = in_channels, out_channels
        self.out_size = conv_geometry(in_size, padding)[0]
        self.form = conv_form(backend)
        if contrast and (self.form != "kernel" or input_grad):
            raise ValueError("only the compiled CPU form's first layer applies the input contrast")
        self.channels_first = self.form == "gather" and not input_grad
        if self.form == "kernel":
            self.core = _KernelConv(in_size, padding, input_grad, contrast)
        elif self.channels_first:
            self.core = _GatherConvFirst(in_size, padding)
        elif self.form == "gather":
            self.core = _GatherConv(in_size, padding, input_grad)

    def kernel_weights(self):
        """The weight as the im2col matmul's [9*Cin, Cout] (rows tap-major, then input channel)."""
        return self.weight.transpose(2, 3, 1, 0).reshape(9 * self.in_channels, self.out_channels)

    def construct(self, x):
        if self.form == "native":
            return ops.conv2d(x, self.weight, stride=STRIDE, pad_mode=self.pad_mode)
        if self.channels_first:
            return self.core(x, self.weight.reshape(self.out_channels, self.in_channels * 9))
        w9 = self.kernel_weights()
        if self.form == "kernel":
            return self.core(x, w9)
        return self.core(x.transpose(0, 2, 3, 1), w9).transpose(0, 3, 1, 2)
