"""The form of the encoder's layers, chosen once per process from the device target and passed by
name to every builder: 'cpu' or 'device'.

- 'device' (Ascend, GPU, and every exported graph): MindSpore's own conv2d, nn.BatchNorm and
  nn.LeakyReLU, NCHW.
- 'cpu': the CPU forms of src/model/cpu, because MindSpore's CPU conv2d, BatchNorm and LeakyReLU
  kernels (and their gradients) dominate the step there: the compiled channels-last convolution with
  BatchNorm + LeakyReLU fused and the input contrast inside the first im2col when a C++ compiler is
  found (src/model/cpu/kernels.py), else the Gather im2col; the hand-differentiated LeakyReLU and
  BatchNorm1d (src/model/cpu/layers.py).
Both hold the same parameters under the same names, so a checkpoint of one loads into the other.
"""
BACKENDS = ("cpu", "device")


def backend_for(device_target):
    """The CPU forms pay only where the device has no fast convolution kernel."""
    return "cpu" if device_target == "CPU" else "device"


def conv_form(backend):
    """'native' (device conv2d, NCHW), 'kernel' (compiled im2col, NHWC out; NHWC input unless it is
    the first layer) or 'gather' (MindSpore Gather im2col, NCHW in and out)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "device":
        return "native"
    from src.model.cpu import kernels
    return "kernel" if kernels.available() else "gather"


def fuses_input_contrast(backend):
    """Whether this backend applies the input contrast inside the first convolution's im2col (the
    compiled CPU form) instead of as a layer of its own before it."""
    return conv_form(backend) == "kernel"
