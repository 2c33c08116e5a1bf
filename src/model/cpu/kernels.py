"""Compiled CPU kernels of the encoder (src/model/cpu/cpu_kernels.cc) as MindSpore `ops.Custom` ops.

The CPU training step spends most of its time outside the matmuls: im2col/col2im of the 3x3
convolutions, BatchNorm2d and LeakyReLU over the largest activations, and the layout transposes
between them. The C++ file does each of these in one pass over channels-last (NHWC) tensors, so
the encoder stays NHWC from the first convolution to the last: BatchNorm + LeakyReLU fused forward
and backward, im2col and col2im as block copies. The Cells here are the kernels' calls; the layers that hold parameters
are in src/model/cpu/layers.py (BatchNormLeakyReLU2d, LayerNormLeakyReLU2d) and src/model/cpu/conv.py (_KernelConv).

The library is built with the system C++ compiler on first use (`g++`, or `$CXX`) and cached under
`$CPC_KERNEL_CACHE` (default `~/.cache/cpc_mindspore`), one file per source/flags/compiler/processor
target (src/model/cpu/target.py); a build
goes to a temporary name and is renamed, so concurrent ranks cannot see a half-written library.
Without a compiler (or with CPC_CPU_KERNELS=0) `library()` is None and the encoder uses its
MindSpore-op CPU path (src/model/cpu/conv.py, src/model/cpc.py): same parameters, same results within float error.
Only CPU: Ascend and GPU use their own fused conv/BatchNorm kernels.
"""
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile

import numpy as np
from mindspore import Tensor, nn, ops

from src.device import KERNEL_VARIABLES
from src.model.cpu.target import cpu_features, target_flags

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpu_kernels.cc")
FLAGS = ["-O3", "-fno-trapping-math", "-std=c++17", "-shared", "-fPIC", "-pthread"]
_state = {}


def _cache_dir():
    return os.environ.get("CPC_KERNEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cpc_mindspore")


def _compiler():
    return os.environ.get("CXX") or shutil.which("g++")


def build_target():
    """(target flags, cache-key text) of this processor's build. CPC_KERNEL_TARGET=portable: the
    baseline build whatever the processor (to compare, or to share one cache between machines of
    different levels)."""
    if os.environ.get("CPC_KERNEL_TARGET", KERNEL_VARIABLES["CPC_KERNEL_TARGET"][0]) == "portable":
        return [], "portable"
    return target_flags(cpu_features())


def _build(compiler):
    """Compile SOURCE into the cache for this processor's target (target.py), falling back to the
    portable build if the compiler refuses the target flags; return the library path."""
    # CPC_KERNEL_TARGET=portable: the baseline build whatever the processor (to compare, or to share
    # one cache between machines of different levels)
    flags, key = build_target()
    try:
        return _build_for(compiler, flags, key)
    except RuntimeError:
        if not flags:
            raise
        logging.getLogger(__name__).warning("CPU kernels: %s refused %s; building for the portable target",
                                            compiler, " ".join(flags))
        return _build_for(compiler, [], "portable")


def _build_for(compiler, target, target_key):
    """Compile SOURCE with FLAGS + target flags into the cache (once per source, flags, compiler and
    processor target); return the library path."""
    with open(SOURCE, "rb") as f:
        source = f.read()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    flags = FLAGS + list(target)
    key = hashlib.sha256(source + " ".join(flags).encode() + version.encode() + target_key.encode()).hexdigest()[:16]
    folder = _cache_dir()
    path = os.path.join(folder, f"cpu_kernels-{key}.so")
    if os.path.isfile(path):
        return path
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".cpu_kernels-", suffix=".so", dir=folder)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *flags, "-o", tmp, SOURCE], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "compiler failed")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def library():
    """Path of the compiled kernel library, or None (no compiler, build failed, CPC_CPU_KERNELS=0);
    decided once per process, the reason for None logged once."""
    if "path" not in _state:
        path, reason = None, ""
        if os.environ.get("CPC_CPU_KERNELS", KERNEL_VARIABLES["CPC_CPU_KERNELS"][0]) == "0":
            reason = "CPC_CPU_KERNELS=0"
        elif not _compiler():
            reason = "no C++ compiler (g++ or $CXX) found"
        else:
            try:
                path = _build(_compiler())
            except (OSError, RuntimeError, subprocess.CalledProcessError) as err:
                reason = f"building {SOURCE} failed: {err}"
        if path is None:
            logging.getLogger(__name__).warning("compiled CPU kernels not used (%s): the encoder runs on "
                                                "MindSpore's own CPU ops, slower", reason)
        _state["path"] = path
    return _state["path"]


def available():
    return library() is not None


def _op(name, out_shape, out_dtype):
    return ops.Custom(f"{library()}:{name}", out_shape, out_dtype, func_type="aot")


class BatchNormLeakyTrain(nn.Cell):
    """(x [M, C], gamma, beta) -> (LeakyReLU(BatchNorm(x)) with batch statistics, batch mean, biased
    batch variance); one kernel forward, one backward (gradients of x, gamma and beta)."""

    def __init__(self, eps, alpha):
        super().__init__()
        self.consts = Tensor(np.array([eps, alpha], np.float32))
        self.forward = _op("BnLeakyTrain", lambda x, g, *_: (x, g, g), lambda x, g, *_: (x, g, g))
        self.backward = _op("BnLeakyGrad", lambda dy, x, g, *_: (x, g, g), lambda dy, x, g, *_: (x, g, g))

    def construct(self, x, gamma, beta):
        return self.forward(x, gamma, beta, self.consts)

    def bprop(self, x, gamma, beta, out, dout):
        return self.backward(dout[0], x, gamma, beta, out[1], out[2], self.consts)


class BatchNormLeakyInfer(nn.Cell):
    """(x [M, C], gamma, beta, mean, variance) -> LeakyReLU(BatchNorm(x)) with the given statistics."""

    def __init__(self, eps, alpha):
        super().__init__()
        self.consts = Tensor(np.array([eps, alpha], np.float32))
        self.op = _op("BnLeakyInfer", lambda x, *_: x, lambda x, *_: x)

    def construct(self, x, gamma, beta, mean, variance):
        return self.op(x, gamma, beta, mean, variance, self.consts)


class LayerNormLeaky(nn.Cell):
    """x [N, K] -> LeakyReLU of each row normalised over its K values (no affine); the same kernel in
    training and inference (no moving statistics). One kernel forward (saving each row's mean and
    1/sqrt(var + eps)), one backward (the input gradient)."""

    def __init__(self, eps, alpha):
        super().__init__()
        self.consts = Tensor(np.array([eps, alpha], np.float32))
        self.forward = _op("LnLeakyTrain", lambda x, _: (x, x[:1], x[:1]), lambda x, _: (x, x, x))
        self.backward = _op("LnLeakyGrad", lambda dy, *_: dy, lambda dy, *_: dy)

    def construct(self, x):
        return self.forward(x, self.consts)

    def bprop(self, x, out, dout):
        return (self.backward(dout[0], x, out[1], out[2], self.consts),)


class Im2col(nn.Cell):
    """x [N, H, W, C] (channels_last) or [N, C, H, W] -> patches [N*P, 9*C] for the tap table [P, 9];
    no gradient (the convolution's backward is written out in src/model/cpu/conv.py).

    background_weights [H*W, 1] (NCHW only): the input-contrast layer (src/model/cpc.py, InputContrast)
    fused in: each image's and channel's background is x . weights (the same matmul as the layer's),
    and the patches hold |x - background| - 1, so the contrasted image is never written."""

    def __init__(self, taps, channels_last, background_weights=None):
        super().__init__()
        self.taps = Tensor(np.ascontiguousarray(taps, np.int32))
        self.weights = None if background_weights is None else Tensor(background_weights)
        outputs = taps.shape[0]

        def shape(x, *_):
            channels = x[3] if channels_last else x[1]
            return (x[0] * outputs, 9 * channels)
        if self.weights is None:
            self.op = _op("Im2colNhwc" if channels_last else "Im2colNchw", shape, lambda x, _: x)
        else:
            self.op = _op("ContrastIm2colNchw", shape, lambda x, *_: x)

    def construct(self, x):
        if self.weights is None:
            return self.op(x, self.taps)
        n, c, h, w = x.shape
        background = ops.matmul(x.reshape(n * c, h * w), self.weights).reshape(-1)
        return self.op(x, background, self.taps)


class Col2im(nn.Cell):
    """dpatches [N*P, 9*C] -> dx [N, S, S, C]: the sum, per input pixel, of the patch entries that read it."""

    def __init__(self, taps, readers, size):
        super().__init__()
        self.taps = Tensor(np.ascontiguousarray(taps, np.int32))
        self.readers = Tensor(np.ascontiguousarray(readers, np.int32))
        outputs = taps.shape[0]
        self.op = _op("Col2imNhwc", lambda d, *_: (d[0] // outputs, size, size, d[1] // 9),
                      lambda d, *_: d)

    def construct(self, dpatches):
        return self.op(dpatches, self.taps, self.readers)

