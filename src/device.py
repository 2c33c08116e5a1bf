"""Device and run-mode set-up: resolve device_target, set the context, seed everything.

When a device cannot be used, say why: first what MindSpore itself checks before loading a device
plugin (src/device_env.py: CUDA_HOME and its nvcc release, the CUDA 11 / CANN libraries, the chip),
then the loader errors `import mindspore` kept (MSContext.load_plugin_error(), which
mindspore.device_context.<gpu|ascend>.is_available only logs as a MindSpore warning).
"""
import logging
import os
import re

import mindspore as ms
import mindspore.dataset as ds

from src.device_env import device_problems
from src.utils.errors import ConfigError, CPCError, first_line
from src.utils.heap import set_mmap_threshold

log = logging.getLogger("cpc")

PLUGIN_LIBS = {"Ascend": ("libmindspore_ascend", "libmindspore_ops_ascend"), "GPU": ("libmindspore_gpu",)}
# signs that the machine has the hardware, so a fallback to CPU is worth a warning rather than a note
HARDWARE_SIGNS = {"Ascend": ("/dev/davinci0", "/usr/local/Ascend"), "GPU": ("/dev/nvidia0", "/proc/driver/nvidia")}
# the environment variables of the compiled CPU kernels (src/model/cpu/kernels.py): their values, default first
KERNEL_VARIABLES = {"CPC_KERNEL_TARGET": ("auto", "portable"), "CPC_CPU_KERNELS": ("1", "0")}


def plugin_load_errors():
    """MindSpore's record of the plugins it failed to load at import, one line each ('' if none)."""
    try:
        from mindspore._c_expression import MSContext  # what device_context.<target>.is_available reads
        return MSContext.get_instance().load_plugin_error() or ""
    except Exception:  # a private API: absent or changed, there is just no detail to give
        return ""


def plugin_available(target):
    """MindSpore's own answer for "Ascend" or "GPU": mindspore.device_context.<target>.is_available,
    which 2.10 names as the replacement of the deprecated ms.hal.is_available (same check)."""
    return getattr(ms.device_context, target.lower()).is_available()


def unavailable_reason(target):
    """None if MindSpore can use `target` here (CPU always can), else one line saying why not: the
    pieces MindSpore itself checks (src/device_env.py), then the loader's own error, if any."""
    if target == "CPU":
        return None
    try:
        if plugin_available(target):
            return None
    except Exception as exc:  # an absent plugin may raise instead of answering False
        return f"device_context.{target.lower()}.is_available raised {type(exc).__name__}: {first_line(exc, '')}"
    reasons = device_problems(target)
    failed = [line.strip() for line in plugin_load_errors().splitlines()
              if any(lib in line for lib in PLUGIN_LIBS[target])]
    if failed:
        details = "; ".join(re.sub(r"^Load dynamic library: (\S+) failed\.\s*", r"\1: ", line) for line in failed)
        reasons.append(f"plugin not loadable: {details}")
    if not reasons:
        reasons.append(f"no {target} plugin loaded, although CUDA/CANN and their libraries were found "
                       f"(run with GLOG_v=1 to see MindSpore's plugin loader)")
    return "; ".join(reasons)


def device_available(target):
    """Whether MindSpore can use `target` here (CPU always can)."""
    return unavailable_reason(target) is None


def resolve_device_target(requested):
    """'auto' -> Ascend, else GPU, else CPU (logging why each was passed over); an explicit target
    must be present, or CPCError says why it is not."""
    if requested == "auto":
        reasons = {}
        for target in ("Ascend", "GPU"):
            reasons[target] = unavailable_reason(target)
            if reasons[target] is None:
                return target
        hardware = any(os.path.exists(sign) for t in reasons for sign in HARDWARE_SIGNS[t])
        log.log(logging.WARNING if hardware else logging.INFO, "device_target auto: using CPU; %s",
                "; ".join(f"{t}: {why}" for t, why in reasons.items()))
        return "CPU"
    reason = unavailable_reason(requested)
    if reason is not None:
        raise CPCError(f"device_target {requested} is not available on this machine: {reason} "
                       f"(use --device_target CPU or auto)")
    return requested


def device_id(cfg):
    """The device index: DEVICE_ID from the environment (a launcher sets it) if set, else the config's;
    ConfigError naming the variable when it is not an index (int() would raise a traceback)."""
    text = os.environ.get("DEVICE_ID", "").strip()
    if not text:
        return cfg.device_id
    if not text.isdigit():
        raise ConfigError(f"environment variable DEVICE_ID must be a device index (a whole number >= 0), "
                          f"got {text!r}; unset it or set it to the device to use")
    return int(text)


def check_kernel_variables():
    """ConfigError naming a CPU-kernel variable set to a value the kernels do not read (they would
    take it as the default without a word: a typo such as `portabel` would build for this processor)."""
    for name, values in KERNEL_VARIABLES.items():
        value = os.environ.get(name)
        if value is not None and value not in values:
            raise ConfigError(f"environment variable {name} must be {' or '.join(values)}, got {value!r}; "
                              f"unset it for the default ({values[0]})")


def set_deterministic(wanted, target):
    """deterministic: ms.set_deterministic(True) on Ascend/GPU, before the device is set and before
    communication init (MindSpore 2.10 asks for the latter so HCCL's collectives are fixed too; it sets
    HCCL_DETERMINISTIC and TE_PARALLEL_COMPILER=1 and may be called once per process). On CPU a
    logged no-op: CPU runs already repeat bit for bit."""
    if not wanted:
        return
    if target == "CPU":
        log.info("deterministic: nothing to set on CPU (its runs already repeat)")
        return
    ms.set_deterministic(True)
    log.info("deterministic: ms.set_deterministic(True) on %s", target)


def init_device(cfg):
    """Set MindSpore's context from the config; returns the resolved device target."""
    index = device_id(cfg)  # checked first: a bad environment stops the run before the device is touched
    check_kernel_variables()
    target = resolve_device_target(cfg.device_target)
    set_deterministic(cfg.deterministic, target)
    mode = ms.GRAPH_MODE if cfg.mode == "graph" else ms.PYNATIVE_MODE
    # set_context's docstring (2.10) says it will be deprecated, its parameters moving to new APIs; the
    # device already has one (ms.set_device, below), the run mode has none yet (no warning is logged)
    ms.set_context(mode=mode)
    if target == "CPU":
        ms.set_device("CPU")
    else:
        ms.set_device(target, index)
    ms.set_seed(cfg.seed)
    set_host_memory(cfg)
    cfg.device_target = target
    return target


def set_host_memory(cfg):
    """The run's host-memory settings (docs/performance.md#memory): how many batches each stage of
    MindSpore's data pipeline holds ready (a process-wide setting of mindspore.dataset) and glibc's
    mmap threshold (src/utils/heap.py)."""
    ds.config.set_prefetch_size(cfg.prefetch_size)
    set_mmap_threshold(cfg.mmap_threshold_mb)


ASCEND_GRU_MULTIPLE = 16  # mindspore/nn/layer/rnns.py (_RNNBase): GRU on Ascend needs hidden_size % 16 == 0


def check_for_target(cfg, target, hparams=None, training=False):
    """Refuse, before anything is written, a configuration the resolved device target cannot build.

    nn.GRU on Ascend runs DynamicGRUV2 in float16 and raises at construction unless hidden_size is
    a multiple of 16 (MindSpore 2.10, nn/layer/rnns.py); CPU and GPU take any size. hparams: a
    checkpoint's model keys, which override the config's (eval.py, export.py).
    Mixed precision (training=True; eval and export do not use it): O2/O3 need Ascend or GPU (their
    loss-scaled step checks overflow with device kernels); O1 is refused, since MindSpore's O1
    rewrites the network's source into ./rewritten_network."""
    amp = cfg.amp_level if training else "O0"
    if amp == "O1":
        raise ConfigError("amp_level O1 is not supported: MindSpore's O1 rewrites the network's source into "
                          "./rewritten_network; use O2 (float16, BatchNorm in float32) or O3")
    if amp != "O0" and target == "CPU":
        raise ConfigError(f"amp_level {amp} needs Ascend or GPU; use amp_level O0 on CPU")
    hidden = (hparams or {}).get("hidden_size", cfg.hidden_size)
    if target == "Ascend" and hidden % ASCEND_GRU_MULTIPLE:
        below = hidden // ASCEND_GRU_MULTIPLE * ASCEND_GRU_MULTIPLE
        near = " or ".join(str(n) for n in (below, below + ASCEND_GRU_MULTIPLE) if n > 0)
        raise ConfigError(f"hidden_size {hidden} is not a multiple of {ASCEND_GRU_MULTIPLE}: nn.GRU on Ascend "
                          f"computes in float16 (DynamicGRUV2) and accepts only multiples of "
                          f"{ASCEND_GRU_MULTIPLE} (e.g. {near}); change hidden_size or use GPU/CPU")
