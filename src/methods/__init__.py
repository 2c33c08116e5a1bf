"""Pre-training methods, found by name (the config key `task`) through one registry.

A method is everything that differs between ways of pre-training the encoder: its data source,
loss cell, validation scorer and evaluation, the batches PreciseBN calibrates on, and the nets it
can export. The engine (src/train/engine.py), eval.py and export.py ask `create_method(cfg.task)`
and never branch on the name. To add a method: write its module (a subclass of base.Method), add
one line to BUILTIN below, give it a config under config/. tests/test_methods.py lists what a
method must provide and trains a toy one through the unchanged engine.
"""
import importlib

from src.methods.base import REQUIRED, Method
from src.utils.errors import ConfigError

# name -> "module:class"; imported when first asked for, so naming a method costs no import
BUILTIN = {"sequence": "src.methods.sequence:SequenceMethod",
           "image": "src.methods.image:ImageMethod",
           "twoview": "src.methods.twoview:TwoViewMethod",
           "cmc": "src.methods.cmc:CMCMethod"}
_registered = {}


def register_method(name, method):
    """Make `method` (a Method subclass or instance) available as `name`; refuses one that lacks
    part of the interface, so a half-written method fails here, not in the middle of a run."""
    missing = [attr for attr in REQUIRED if getattr(method, attr, None) is None]
    if missing:
        raise TypeError(f"method {name!r} lacks {', '.join(missing)} (see src/methods/base.py)")
    _registered[name] = method
    return method


def method_names():
    """Every method name the registry knows, sorted."""
    return sorted(set(BUILTIN) | set(_registered))


def create_method(name):
    """The method registered as `name`; ConfigError (one line) naming the known ones otherwise."""
    if name not in _registered and name in BUILTIN:
        module, cls = BUILTIN[name].split(":")
        register_method(name, getattr(importlib.import_module(module), cls))
    if name not in _registered:
        raise ConfigError(f"unknown pre-training method (config key 'task') {name!r}: known are "
                          f"{', '.join(method_names())}")
    return _registered[name]


def method_of_checkpoint(cfg, meta):
    """The method a checkpoint was trained with (its stored `task`; a checkpoint without one is a
    sequence checkpoint; one without hyper-parameters is taken to be the config's)."""
    from src.config import SEQUENCE_TASK, stored_hparams
    if meta is None or "hparams" not in meta:
        return create_method(cfg.task)
    return create_method({**SEQUENCE_TASK, **stored_hparams(meta["hparams"])}["task"])


__all__ = ["Method", "REQUIRED", "create_method", "method_names", "method_of_checkpoint", "register_method"]
