"""Model Cells in graph mode: shapes, the CPU gather convolution against nn.Conv2d, names."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from src.config import ENCODER_SHAPE_KEYS, SCHEMA, model_hparams, namespace
from src.model.backend import backend_for, fuses_input_contrast
from src.model.build import build_cpc
from src.model.cpc import Encoder
from src.model.cpu.conv import Conv3x3S2

SHAPE = tuple(SCHEMA[k].default for k in ENCODER_SHAPE_KEYS)  # the default encoder: 4 blocks of 64, Dense 256


def encoder(size, backend, input_contrast=False, padding="valid"):
    """The default encoder on size x size colour images, codes of 8."""
    return Encoder(size, 3, 8, padding, backend, input_contrast, *SHAPE)


@pytest.mark.parametrize("size, color, padding", [(28, False, "same"), (64, True, "valid")])
def test_cpc_shapes(ms_cpu, size, color, padding):
    cfg = namespace(image_size=size, color=color, padding=padding, terms=3, predict_terms=2,
                    code_size=16, hidden_size=32)
    net = build_cpc(model_hparams(cfg), "cpu")
    net.set_train(False)
    ch = 3 if color else 1
    x = ms.Tensor(np.random.randn(4, 3, ch, size, size).astype(np.float32))
    y = ms.Tensor(np.random.randn(4, 2, ch, size, size).astype(np.float32))
    assert net(x, y).shape == (4, 1)
    assert net.encoder(x.reshape(12, ch, size, size)).shape == (12, 16)


class _Weighted(nn.Cell):
    """sum(cell(x) * sens): its gradient is the backward pass of `cell` for output gradient sens."""

    def __init__(self, cell, sens):
        super().__init__()
        self.cell, self.sens = cell, sens

    def construct(self, x):
        return (self.cell(x) * self.sens).sum()


@pytest.fixture(params=["kernel", "gather"])
def cpu_form(request, monkeypatch):
    """Each CPU form of the encoder: the compiled kernels, and MindSpore's ops (the no-compiler path)."""
    from src.model.cpu import kernels
    if request.param == "gather":
        monkeypatch.setitem(kernels._state, "path", None)
    else:
        assert kernels.available(), "the compiled CPU kernels did not build here (g++ is required for the tests)"
    return request.param


@pytest.mark.parametrize("cin, size, padding, input_grad", [
    (3, 64, "valid", True), (64, 31, "valid", True), (64, 15, "valid", True), (64, 7, "valid", True),
    (1, 28, "same", True), (64, 7, "same", True),
    (3, 64, "valid", False), (1, 28, "same", False), (3, 31, "same", False)])  # first-layer form
def test_cpu_conv_matches_conv2d(ms_cpu, cpu_form, cin, size, padding, input_grad):
    fast = Conv3x3S2(cin, 64, size, padding, "cpu", input_grad=input_grad)
    assert fast.form == cpu_form
    assert fast.channels_first == (cpu_form == "gather" and not input_grad)
    ref = nn.Conv2d(cin, 64, 3, stride=2, pad_mode=padding, has_bias=False)
    ref.weight.set_data(fast.weight.data)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((8, cin, size, size)).astype(np.float32))
    sens = ms.Tensor(np.random.default_rng(1).standard_normal(ref(x).shape).astype(np.float32))
    # the kernel form is channels-last: NHWC output, NHWC input except for the first layer
    nhwc_in = cpu_form == "kernel" and input_grad
    x_fast = x.transpose(0, 2, 3, 1) if nhwc_in else x
    sens_fast = sens.transpose(0, 2, 3, 1) if cpu_form == "kernel" else sens
    out = fast(x_fast).asnumpy()
    np.testing.assert_allclose(out.transpose(0, 3, 1, 2) if cpu_form == "kernel" else out, ref(x).asnumpy(),
                               atol=1e-4)
    grad_fast = ms.grad(_Weighted(fast, sens_fast), grad_position=0, weights=[fast.weight])(x_fast)
    grad_ref = ms.grad(_Weighted(ref, sens), grad_position=0, weights=[ref.weight])(x)
    if input_grad:
        dx = grad_fast[0].asnumpy()
        np.testing.assert_allclose(dx.transpose(0, 3, 1, 2) if nhwc_in else dx, grad_ref[0].asnumpy(), atol=1e-4)
    dw_fast, dw_ref = grad_fast[1][0].asnumpy(), grad_ref[1][0].asnumpy()
    # dW sums up to 8*31*31 products: compare relative to its scale
    np.testing.assert_allclose(dw_fast / np.abs(dw_ref).max(), dw_ref / np.abs(dw_ref).max(), atol=1e-5)


def test_device_target_selects_the_backend():
    assert backend_for("CPU") == "cpu"
    assert backend_for("Ascend") == backend_for("GPU") == "device"
    ascend, cpu = encoder(64, backend_for("Ascend")), encoder(64, backend_for("CPU"))
    assert all(b.conv.form == "native" for b in ascend.blocks) and all(b.conv.form != "native" for b in cpu.blocks)
    # the same parameters by name and shape: a checkpoint moves between CPU and Ascend
    assert [(p.name, p.shape) for p in ascend.get_parameters()] == \
        [(p.name, p.shape) for p in cpu.get_parameters()]


def test_encoder_rejects_too_small_images():
    with pytest.raises(ValueError, match="too small"):
        encoder(28, "cpu")
    with pytest.raises(ValueError, match="backend"):
        encoder(64, "fast")


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
@pytest.mark.parametrize("backend", ["cpu", "device"])
@pytest.mark.parametrize("input_contrast", [False, True])
def test_encoder_is_its_stages_run_in_order(ms_cpu, backend, input_contrast):
    """construct runs stage_names in order: the stages called one by one give the encoder's codes."""
    net = encoder(64, backend, input_contrast)
    net.set_train(False)
    names = [name for name, _ in net.stages()]
    assert names[-5:] == ["flatten", "dense", "bn", "act", "embedding"] and "blocks" in names
    assert ("contrast" in names) == (input_contrast and not fuses_input_contrast(backend))
    x = ms.Tensor(np.random.default_rng(0).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32))
    h = x
    for _, stage in net.stages():
        h = stage(h)
    np.testing.assert_allclose(h.asnumpy(), net(x).asnumpy(), atol=1e-5)
    assert net.stages_through("act") == tuple(names[:-1])


def test_input_contrast_is_identity_on_grey_and_sign_invariant(ms_cpu):
    from src.data.dataset import build_source
    from src.model.cpc import InputContrast
    grey = build_source(namespace(image_size=28, color=False, padding="same"), "train", 1).make_batch(0)
    images = grey.x.reshape(-1, 1, 28, 28)
    out = InputContrast(28)(ms.Tensor(images)).asnumpy()
    np.testing.assert_allclose(out, images, atol=1e-6)  # background -1: nothing changes
    rng = np.random.default_rng(0)
    background = rng.uniform(-0.5, 0.5, (6, 3, 1, 1)).astype(np.float32)
    ink = np.zeros((6, 3, 64, 64), np.float32)
    ink[:, :, 20:44, 28:36] = rng.uniform(0.2, 0.5, (6, 3, 1, 1))
    darker, brighter = background - ink, background + ink   # the same digit, inverted either way
    contrast = InputContrast(64)
    a, b = contrast(ms.Tensor(darker)).asnumpy(), contrast(ms.Tensor(brighter)).asnumpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, ink - 1, atol=1e-5)


@pytest.mark.parametrize("size, padding", [(64, "valid"), (31, "same")])
def test_contrast_fused_into_first_im2col(ms_cpu, size, padding):
    """The compiled CPU form runs the input-contrast layer inside the first layer's im2col: the same
    outputs and weight gradients as InputContrast followed by nn.Conv2d; the encoder then has no
    separate contrast Cell, and the other forms keep it."""
    from src.model.cpc import InputContrast
    from src.model.cpu import kernels
    assert kernels.available()
    assert fuses_input_contrast("cpu") and not fuses_input_contrast("device")
    fused = Conv3x3S2(3, 64, size, padding, "cpu", input_grad=False, contrast=True)
    assert fused.form == "kernel"
    for backend, input_grad in (("device", False), ("cpu", True)):  # only the compiled first layer fuses it
        with pytest.raises(ValueError, match="input contrast"):
            Conv3x3S2(3, 64, size, padding, backend, input_grad=input_grad, contrast=True)
    ref = nn.SequentialCell([InputContrast(size), nn.Conv2d(3, 64, 3, stride=2, pad_mode=padding, has_bias=False)])
    ref[1].weight.set_data(fused.weight.data)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.uniform(-1, 1, (6, 3, size, size)).astype(np.float32))
    out = fused(x).asnumpy().transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out, ref(x).asnumpy(), atol=1e-4)
    sens = rng.standard_normal(out.shape).astype(np.float32)
    dw = ms.grad(_Weighted(fused, ms.Tensor(sens.transpose(0, 2, 3, 1))), grad_position=None,
                 weights=[fused.weight])(x)[0].asnumpy()
    dw_ref = ms.grad(_Weighted(ref, ms.Tensor(sens)), grad_position=None, weights=[ref[1].weight])(x)[0].asnumpy()
    np.testing.assert_allclose(dw / np.abs(dw_ref).max(), dw_ref / np.abs(dw_ref).max(), atol=1e-5)
    assert encoder(64, "cpu", input_contrast=True).contrast is None
    assert encoder(64, "device", input_contrast=True).contrast is not None


def _assert_batch_norm_parity(candidate, ref, batches, param_atol):
    """candidate against ref (Cells (x, sens) -> scalar with a `bn` holding gamma and beta): the same
    parameters, then per training batch the value and the input and parameter gradients, the moving
    statistics after training, and the inference value."""
    assert [(p.name, p.shape) for p in candidate.get_parameters()] == [(p.name, p.shape) for p in ref.get_parameters()]
    rng = np.random.default_rng(0)
    channels = ref.bn.gamma.shape[0]
    gamma = ms.Tensor(rng.uniform(0.5, 1.5, channels).astype(np.float32))
    beta = ms.Tensor(rng.uniform(-0.5, 0.5, channels).astype(np.float32))
    for block in (candidate, ref):
        block.set_train()
        block.bn.gamma.set_data(gamma)
        block.bn.beta.set_data(beta)
    for x, sens in batches:
        values = [b(x, sens).asnumpy() for b in (candidate, ref)]
        np.testing.assert_allclose(values[0], values[1], rtol=1e-4, atol=1e-4)
        grads = [ms.grad(b, grad_position=0, weights=[b.bn.gamma, b.bn.beta])(x, sens) for b in (candidate, ref)]
        np.testing.assert_allclose(grads[0][0].asnumpy(), grads[1][0].asnumpy(), atol=1e-5)
        for got, want in zip(grads[0][1], grads[1][1]):
            np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-4, atol=param_atol)
    for name in ("moving_mean", "moving_variance"):
        want = getattr(ref.bn, name).asnumpy()
        assert not np.allclose(want, 0 if name == "moving_mean" else 1)  # the statistics moved
        np.testing.assert_allclose(getattr(candidate.bn, name).asnumpy(), want, rtol=1e-5, atol=1e-6)
    for block in (candidate, ref):
        block.set_train(False)
    np.testing.assert_allclose(candidate(x, sens).asnumpy(), ref(x, sens).asnumpy(), rtol=1e-5)


def _normal_batches(shape, means, seed=1):
    rng = np.random.default_rng(seed)
    return [(ms.Tensor(rng.normal(mean, 2.0, shape).astype(np.float32)),
             ms.Tensor(rng.normal(size=shape).astype(np.float32))) for mean in means]



def _layer_norm_leaky_reference(x, sens, alpha):
    """float64 numpy: sum(leaky(layer_norm(x)) * sens) per nn.LayerNorm over all but the first axis
    (no affine), and its gradient in x."""
    x, sens = x.astype(np.float64), sens.astype(np.float64)
    axes = tuple(range(1, x.ndim))
    rstd = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5)
    z = (x - x.mean(axis=axes, keepdims=True)) * rstd
    g = np.where(z > 0, sens, sens * alpha)
    dx = rstd * (g - g.mean(axis=axes, keepdims=True) - z * (g * z).mean(axis=axes, keepdims=True))
    return (np.maximum(z, alpha * z) * sens).sum(), dx


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
@pytest.mark.parametrize("shape", [(6, 5, 5, 16), (4, 8, 8, 64)])  # 400 values a sample (not whole lanes), 4096
def test_fused_layer_norm_leaky_matches_ops_form(ms_cpu, shape):
    """The compiled layer norm + LeakyReLU (channels-last) against the MindSpore-op form it replaces
    (GroupNorm2d(groups=1) + FastLeakyReLU) and a float64 numpy reference: value and input gradient,
    in training and inference (no statistics are kept: both modes are the same function)."""
    from src.model.cpc import LEAKY_ALPHA
    from src.model.cpu import kernels
    from src.model.cpu.layers import FastLeakyReLU, LayerNormLeakyReLU2d
    from src.model.image_cpc import NORM_EPS, GroupNorm2d
    assert kernels.available() and NORM_EPS == 1e-5

    class Block(nn.Cell):
        def __init__(self, *layers):
            super().__init__()
            self.layers = nn.SequentialCell(*layers)

        def construct(self, x, sens):
            return (self.layers(x) * sens).sum()

    fused = Block(LayerNormLeakyReLU2d(NORM_EPS, LEAKY_ALPHA))
    ops_form = Block(GroupNorm2d(1, channels_last=True), FastLeakyReLU(LEAKY_ALPHA))
    assert not list(fused.get_parameters()) and not list(ops_form.get_parameters())
    rng = np.random.default_rng(2)
    # each sample its own offset and scale (the statistics are per sample)
    x = (rng.normal(size=shape) * rng.uniform(0.5, 3, (shape[0], 1, 1, 1)) + rng.uniform(-4, 4, (shape[0], 1, 1, 1)))
    x, sens = x.astype(np.float32), rng.normal(size=shape).astype(np.float32)
    want, dx_want = _layer_norm_leaky_reference(x, sens, LEAKY_ALPHA)
    for training in (True, False):
        got = []
        for block in (fused, ops_form):
            block.set_train(training)
            value = block(ms.Tensor(x), ms.Tensor(sens)).asnumpy()
            dx = ms.grad(block, grad_position=0)(ms.Tensor(x), ms.Tensor(sens)).asnumpy()
            np.testing.assert_allclose(value, want, rtol=1e-5)
            np.testing.assert_allclose(dx, dx_want, atol=2e-5 * np.abs(dx_want).max())
            got.append((value, dx))
        np.testing.assert_allclose(got[0][0], got[1][0], rtol=1e-5)
        np.testing.assert_allclose(got[0][1], got[1][1], atol=1e-5 * np.abs(dx_want).max())

@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_fast_cpu_layers_match_mindspore_layers(ms_cpu):
    """FastBatchNorm1d / FastLeakyReLU (CPU) against nn.BatchNorm1d / nn.LeakyReLU."""
    from src.model.cpc import BN_EPS, BN_MOMENTUM
    from src.model.cpu.layers import FastBatchNorm1d, FastLeakyReLU

    class Block(nn.Cell):
        def __init__(self, bn, act):
            super().__init__()
            self.bn, self.act = bn, act

        def construct(self, x, sens):
            return (self.act(self.bn(x)) * sens).sum()

    fast = Block(FastBatchNorm1d(16, BN_EPS, BN_MOMENTUM), FastLeakyReLU(0.3))
    ref = Block(nn.BatchNorm1d(16, eps=BN_EPS, momentum=BN_MOMENTUM), nn.LeakyReLU(0.3))
    _assert_batch_norm_parity(fast, ref, _normal_batches((32, 16), [1.0] * 3), param_atol=1e-4)


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_fused_batchnorm_leaky_matches_mindspore_layers(ms_cpu):
    """The compiled BatchNorm + LeakyReLU (channels-last) against nn.BatchNorm2d + nn.LeakyReLU on the
    same data in NCHW."""
    from src.model.cpc import BN_EPS, BN_MOMENTUM, LEAKY_ALPHA
    from src.model.cpu import kernels
    from src.model.cpu.layers import BatchNormLeakyReLU2d
    assert kernels.available()

    class Block(nn.Cell):
        def __init__(self, bn, act=None, nhwc=False):
            super().__init__()
            self.bn, self.act, self.nhwc = bn, act, nhwc

        def construct(self, x, sens):  # x, sens NCHW
            if self.nhwc:
                return (self.bn(x.transpose(0, 2, 3, 1)) * sens.transpose(0, 2, 3, 1)).sum()
            return (self.act(self.bn(x)) * sens).sum()

    fused = Block(BatchNormLeakyReLU2d(16, BN_EPS, BN_MOMENTUM, LEAKY_ALPHA), nhwc=True)
    ref = Block(nn.BatchNorm2d(16, eps=BN_EPS, momentum=BN_MOMENTUM), nn.LeakyReLU(LEAKY_ALPHA))
    # an offset mean (the one-pass variance must stay accurate) and a different batch each step
    _assert_batch_norm_parity(fused, ref, _normal_batches((8, 16, 9, 9), [3.0, 4.0, 5.0]), param_atol=1e-3)
