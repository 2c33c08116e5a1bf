"""The networks export.py writes, rebuilt from a checkpoint in their inference form.

- classifier: images [N, C, S, S] -> digit logits [N, 10] (frozen encoder + head, src/model/classifier.py);
  what an Ascend 310 / edge user deploys. Needs a checkpoint of kind 'classifier'.
- encoder: images [N, C, S, S] -> codes [N, code_size]; from a cpc, encoder or classifier checkpoint.
- cpc: context [N, terms, C, S, S] and future [N, predict_terms, C, S, S] images -> logit [N, 1];
  needs a cpc checkpoint.

Inference form: the device's native convolution (the compiled CPU kernels are a CPU-only training
form), BatchNorm in inference mode, and for cpc the GRU unrolled from MatMul/Sigmoid/Tanh
(src/model/gru.py) in place of nn.GRU, which ONNX export rejects and which on Ascend runs a float16
kernel with shape constraints. The unrolled GRU holds the same parameters under the same names,
so checkpoints load unchanged and training keeps nn.GRU.
"""
import numpy as np

from src import checkpoint
from src.model.build import build_cpc, build_encoder
from src.model.classifier import HEADS, build_classifier
from src.model.gru import UnrolledGRU
from src.utils.errors import CheckpointError

NETS = ("classifier", "encoder", "cpc")
# the checkpoint kinds (metadata 'kind') each net can be built from
ACCEPTED_KINDS = {"classifier": ("classifier",), "encoder": ("cpc", "encoder", "classifier"), "cpc": ("cpc",)}
ENCODER_PREFIX = "encoder."


def check_kind(net_name, meta, path):
    """CheckpointError unless the checkpoint's kind can give `net_name` (no metadata: let load_into judge)."""
    kind = None if meta is None else meta.get("kind")
    if kind is None or kind in ACCEPTED_KINDS[net_name]:
        return
    hint = {"classifier": "a classifier checkpoint (classifier.ckpt, written by eval.py --eval_mode classify)",
            "cpc": "a CPC checkpoint (cpc_best.ckpt or cpc_last.ckpt)"}.get(net_name, "")
    raise CheckpointError(f"--net {net_name} needs {hint}; {path} holds a checkpoint of kind '{kind}'")


def image_shape(hparams):
    """(channels, size, size) of one model input image."""
    return (3 if hparams["color"] else 1, hparams["image_size"], hparams["image_size"])


def example_inputs(net_name, hparams, batch):
    """Zero arrays with the exported graph's input shapes (the batch size is baked in)."""
    image = image_shape(hparams)
    if net_name == "cpc":
        return [np.zeros((batch, hparams["terms"]) + image, np.float32),
                np.zeros((batch, hparams["predict_terms"]) + image, np.float32)]
    return [np.zeros((batch,) + image, np.float32)]


def build_inference_net(net_name, hparams, params, meta, path):
    """The Cell to export, in inference mode, with the checkpoint's parameters loaded."""
    if net_name not in NETS:
        raise ValueError(f"net must be one of {NETS}, got {net_name!r}")
    check_kind(net_name, meta, path)
    if net_name == "classifier":
        head = (meta or {}).get("head", "mlp")
        if head not in HEADS:
            raise CheckpointError(f"checkpoint {path} names head {head!r}; expected one of {', '.join(HEADS)}")
        net = build_classifier(hparams, head, "device")
        checkpoint.load_into(net, params, path)
    elif net_name == "encoder":
        net = build_encoder(hparams, "device")
        checkpoint.load_into(net, {k[len(ENCODER_PREFIX):]: v for k, v in params.items()
                                   if k.startswith(ENCODER_PREFIX)}, path)
    else:
        net = build_cpc(hparams, "device")
        net.gru = UnrolledGRU(hparams["code_size"], hparams["hidden_size"], hparams["terms"])  # names gru.*
        checkpoint.load_into(net, params, path)
    net.set_train(False)
    return net
