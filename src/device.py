"""Device and run-mode set-up: resolve device_target, set the context, seed everything."""
import os

import mindspore as ms

from src.errors import CPCError


def device_available(target):
    """Whether MindSpore can use `target` here (CPU always can)."""
    if target == "CPU":
        return True
    try:
        return bool(ms.hal.is_available(target))
    except Exception:  # an absent plugin may raise instead of answering False
        return False


def resolve_device_target(requested):
    """'auto' -> Ascend, else GPU, else CPU; an explicit target must be present."""
    if requested == "auto":
        for target in ("Ascend", "GPU"):
            if device_available(target):
                return target
        return "CPU"
    if not device_available(requested):
        raise CPCError(f"device_target {requested} is not available on this machine "
                       f"(use --device_target CPU or auto)")
    return requested


def init_device(cfg):
    """Set MindSpore's context from the config; returns the resolved device target."""
    target = resolve_device_target(cfg.device_target)
    mode = ms.GRAPH_MODE if cfg.mode == "graph" else ms.PYNATIVE_MODE
    device_id = int(os.environ.get("DEVICE_ID", cfg.device_id))
    ms.set_context(mode=mode)
    if target == "CPU":
        ms.set_device("CPU")
    else:
        ms.set_device(target, device_id)
    ms.set_seed(cfg.seed)
    cfg.device_target = target
    return target
