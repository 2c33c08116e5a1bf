"""MindSpore Hub entry: create_network(name, **kwargs), as every model-zoo network provides.

    from mindspore_hub_conf import create_network
    net = create_network("classifier", hparams=meta["hparams"], head=meta["head"])  # then load_checkpoint

name: "cpc" (context and future images -> logit), "encoder" (images -> codes) or "classifier"
(images -> digit logits). The net is built from SCHEMA's defaults (src/config.py) overridden by the
config keys in kwargs, or, when the caller passes `hparams` (the dict a checkpoint of this project
stores under cpc_meta, see src/checkpoint.py), from those. A classifier also takes `head` ("mlp",
the published one, or "linear"). Parameter names are those of the checkpoints (pretrained/*.ckpt
load with no parameter missing or left over: for the encoder, strip a cpc checkpoint's "encoder.").
The net is in inference mode, with the device's native convolution (src/deploy/nets.py's form);
train with train.py.
"""
from src.config import model_hparams, namespace, stored_hparams
from src.model.build import build_cpc, build_encoder
from src.model.classifier import build_classifier

NETS = ("cpc", "encoder", "classifier")


# the builders' convolution: the device's native one, as export.py's nets (the compiled CPU kernels are a
# CPU-only training form); the one place this module names it
CONV = {"backend": "device"}


def _build(name, hparams, head):
    if name == "cpc":
        return build_cpc(hparams, **CONV)
    if name == "encoder":
        return build_encoder(hparams, **CONV)
    return build_classifier(hparams, head, **CONV)


def create_network(name, hparams=None, head="mlp", **kwargs):
    """The network `name` in inference mode; hparams (a checkpoint's) or config keys as kwargs, not both."""
    if name not in NETS:
        raise ValueError(f"name must be one of {NETS}, got {name!r}")
    if hparams is not None and kwargs:
        raise ValueError(f"pass a checkpoint's hparams or config keys, not both (got {sorted(kwargs)})")
    hparams = stored_hparams(hparams) if hparams is not None else model_hparams(namespace(**kwargs))
    net = _build(name, hparams, head)
    net.set_train(False)
    return net
