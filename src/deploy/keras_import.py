"""Import D. Tellez's Keras CPC weight files (Keras 2.x HDF5, model.save) into this project's checkpoints.

Two kinds of file are accepted, both Keras functional models saved whole (config + weights):
  encoder     the CPC encoder alone (models/64x64/encoder.h5): InputLayer, n x (Conv2D 3x3/2 valid ->
              BatchNormalization -> LeakyReLU), Flatten, Dense -> BatchNormalization -> LeakyReLU,
              Dense 'encoder_embedding' (the code);
  classifier  the supervised probe (models/*/supervised.h5): InputLayer, the encoder above as a nested
              Model, Dense 128 -> BatchNormalization -> LeakyReLU -> Dense 10 (softmax).
A classifier file also gives `--kind encoder` (its encoder alone).

The mapping to the port (src/model/cpc.py, src/model/classifier.py), each step exact:
  Conv2D kernel [kh, kw, in, out] (HWIO) -> weight [out, in, kh, kw] (OIHW); both cross-correlate.
  Conv2D bias: the port's convolutions have none (a BatchNorm follows), so the bias goes into that
    BatchNorm's moving mean: BN(conv(x) + b; mean m) = BN(conv(x); mean m - b), in inference mode.
  Dense kernel [in, out] -> weight [out, in] (transposed); biases copied.
  The first Dense reads Keras's channels-last Flatten (index (h * W + w) * C + c); the port flattens
    NCHW (index (c * H + h) * W + w): its rows are reordered accordingly.
  BatchNormalization: gamma, beta, moving mean and variance copied; epsilon must be the port's
    (1e-3, Keras's default) and LeakyReLU's alpha the port's (0.3, Keras's default), or the import stops.
  The encoder's depth, filters and dense width come from the file (model keys encoder_layers,
    encoder_channels, encoder_hidden); image size and channels from the InputLayer.
  The classifier's last Dense has a softmax in Keras; the port's classifier ends at the logits (the
    softmax's input): the argmax, hence the accuracy, is the same.
Anything else (other layers or settings, a full CPC model, Keras 3, not HDF5) is refused with a
KerasImportError naming what differs; nothing is written then.
"""
import json
import os

import numpy as np

from src import checkpoint
from src.config import SCHEMA, namespace
from src.model.classifier import HEAD_HIDDEN, NUM_CLASSES
from src.model.cpc import BN_EPS, LEAKY_ALPHA
from src.utils.errors import ConfigError, CPCError, first_line
from src.utils.geometry import encoder_output_size
from src.utils.paths import require_file, require_folder_target

KINDS = ("encoder", "classifier")
ENCODER_PREFIX, HEAD_PREFIX = "encoder.", "head.layers."
# the port's hyper-parameters that do not shape the encoder: the schema defaults (the original's values)
NON_ENCODER_KEYS = ("terms", "predict_terms", "hidden_size", "loss")


class KerasImportError(CPCError):
    """The HDF5 file is not one of the Keras CPC models this importer maps exactly."""


# ---------------------------------------------------------------- reading the file

def read_h5(path):
    """(model_config dict, {layer name: {weight name: array}}, keras_version) of a Keras 2 model file.

    Weights of a nested Model are keyed '<inner layer>/<weight>' (e.g. 'conv2d_1/kernel')."""
    path = require_file(path, "Keras file", KerasImportError)
    with open(path, "rb") as handle:
        magic = handle.read(8)
    if magic[:2] == b"PK":
        raise KerasImportError(f"{path} is a zip archive (a Keras 3 .keras file?), not a Keras 2 HDF5 file")
    if magic != b"\x89HDF\r\n\x1a\n":
        raise KerasImportError(f"{path} is not an HDF5 file")
    try:
        import h5py
    except ImportError:
        raise CPCError("reading Keras files needs h5py: pip install -r requirements.txt") from None
    try:
        with h5py.File(path, "r") as h5:
            version = _text(h5.attrs.get("keras_version", ""))
            if not version.startswith("2."):
                raise KerasImportError(f"{path} was written by Keras {version or '(unknown version)'}; "
                                       f"this importer reads Keras 2 model files (the original's 2.0.6)")
            if "model_config" not in h5.attrs:
                raise KerasImportError(f"{path} holds no model_config (a weights-only file?); "
                                       f"the importer needs a model saved whole (model.save)")
            config = json.loads(_text(h5.attrs["model_config"]))
            group = h5["model_weights"] if "model_weights" in h5 else None
            if group is None:
                raise KerasImportError(f"{path} holds no model_weights group")
            weights = {}
            for layer in _names(group.attrs.get("layer_names", [])):
                layer_group = group[layer]
                names = _names(layer_group.attrs.get("weight_names", []))
                weights[layer] = {_weight_key(n): np.array(layer_group[n]) for n in names}
    except KerasImportError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        first = first_line(exc)
        raise KerasImportError(f"cannot read Keras file {path}: {first}") from None
    return config, weights, version


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _names(array):
    return [_text(n) for n in np.asarray(array).reshape(-1) if len(_text(n))]


def _weight_key(name):
    """'dense_1_1/kernel:0' -> 'kernel'; nested 'conv2d_1/kernel:0' -> 'conv2d_1/kernel' (scope kept
    when it is an inner layer's name: resolved by the caller)."""
    return name.rsplit(":", 1)[0]


# ---------------------------------------------------------------- checking the architecture

def _layers(model_config):
    if not isinstance(model_config, dict) or "config" not in model_config or "layers" not in model_config["config"]:
        raise KerasImportError("model_config is not a Keras functional model")
    return model_config["config"]["layers"]


def _chain(layers, where):
    """Refuse anything that is not a plain chain (each layer fed by the previous one only)."""
    for prev, layer in zip(layers, layers[1:]):
        nodes = layer.get("inbound_nodes") or []
        sources = [n[0] for node in nodes for n in node]
        if sources != [prev["config"]["name"]]:
            raise KerasImportError(f"{where}: layer {layer['config']['name']} is not fed by "
                                   f"{prev['config']['name']} alone (not the CPC encoder's plain chain)")


def _expect(layer, class_name, where, **settings):
    cfg = layer["config"]
    if layer["class_name"] != class_name:
        raise KerasImportError(f"{where}: expected {class_name}, found {layer['class_name']} "
                               f"'{cfg.get('name')}'")
    for key, want in settings.items():
        got = cfg.get(key)
        if isinstance(want, float):
            ok = isinstance(got, (int, float)) and np.float32(got) == np.float32(want)
        else:
            ok = (list(got) if isinstance(got, (list, tuple)) else got) == want
        if not ok:
            raise KerasImportError(f"{where}: {class_name} '{cfg.get('name')}' has {key}={got!r}; "
                                   f"the port's network needs {want!r}")
    return cfg


def _batch_norm(layer, where, axes=(-1, 1)):
    cfg = _expect(layer, "BatchNormalization", where, center=True, scale=True, epsilon=BN_EPS)
    if cfg.get("axis") not in axes:
        raise KerasImportError(f"{where}: BatchNormalization '{cfg['name']}' normalises axis {cfg.get('axis')}; "
                               f"expected the channel axis (-1)")
    return cfg["name"]


def _leaky(layer, where):
    _expect(layer, "LeakyReLU", where, alpha=LEAKY_ALPHA)


def _refuse_full_model(layers, where):
    """A whole CPC model (GRU, its CPC layer, one encoder per time step) is not an encoder file."""
    classes = [layer["class_name"] for layer in layers]
    if any(c in ("TimeDistributed", "GRU", "LSTM", "Lambda", "CPCLayer") for c in classes) or \
            classes.count("InputLayer") > 1:
        raise KerasImportError(f"{where}: this is a full CPC model ({', '.join(sorted(set(classes)))}); "
                               f"import the encoder file (encoder.h5) or a supervised classifier instead")


def parse_encoder(model_config, where="encoder"):
    """The encoder's structure from its Keras config: dict(image_size, channels, layers, width, hidden,
    code_size, names) with the Keras layer names of each mapped layer; KerasImportError otherwise."""
    layers = _layers(model_config)
    _refuse_full_model(layers, where)
    if not layers:
        raise KerasImportError(f"{where}: the model has no layers")
    _chain(layers, where)
    inp = _expect(layers[0], "InputLayer", where)
    shape = inp.get("batch_input_shape") or []
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise KerasImportError(f"{where}: input shape {shape} is not [batch, S, S, 1 or 3] (channels last, square)")
    image_size, channels = int(shape[1]), int(shape[3])
    names, pos, width = {"conv": [], "conv_bn": []}, 1, None
    while pos < len(layers) and layers[pos]["class_name"] == "Conv2D":
        n = len(names["conv"]) + 1
        here = f"{where} conv block {n}"
        cfg = _expect(layers[pos], "Conv2D", here, kernel_size=[3, 3], strides=[2, 2], padding="valid",
                      activation="linear", use_bias=True, data_format="channels_last", dilation_rate=[1, 1])
        if width is not None and cfg["filters"] != width:
            raise KerasImportError(f"{here}: {cfg['filters']} filters, the previous convs have {width}; "
                                   f"the port's encoder uses one width for every conv")
        width = cfg["filters"]
        if pos + 2 >= len(layers):
            raise KerasImportError(f"{here}: the model ends after Conv2D '{cfg['name']}'")
        names["conv"].append(cfg["name"])
        names["conv_bn"].append(_batch_norm(layers[pos + 1], here, axes=(-1, 3)))
        _leaky(layers[pos + 2], here)
        pos += 3
    if not names["conv"]:
        raise KerasImportError(f"{where}: expected Conv2D after the input, found "
                               f"{layers[1]['class_name'] if len(layers) > 1 else 'nothing'}")
    tail = layers[pos:]
    want = ["Flatten", "Dense", "BatchNormalization", "LeakyReLU", "Dense"]
    if [layer["class_name"] for layer in tail] != want:
        raise KerasImportError(f"{where}: after the conv blocks expected {' -> '.join(want)}, found "
                               f"{' -> '.join(layer['class_name'] for layer in tail) or 'nothing'}")
    _expect(tail[0], "Flatten", where)
    hidden = _expect(tail[1], "Dense", where, activation="linear", use_bias=True)
    names["bn"] = _batch_norm(tail[2], where)
    _leaky(tail[3], where)
    code = _expect(tail[4], "Dense", where, activation="linear", use_bias=True)
    names["dense"], names["embedding"] = hidden["name"], code["name"]
    if encoder_output_size(image_size, "valid", len(names["conv"])) < 1:
        raise KerasImportError(f"{where}: {image_size}-pixel input is too small for {len(names['conv'])} convs")
    return {"image_size": image_size, "channels": channels, "layers": len(names["conv"]), "width": width,
            "hidden": hidden["units"], "code_size": code["units"], "names": names}


def parse_model(model_config):
    """(kind found in the file, encoder structure, head layer names or None, nested encoder's layer name)."""
    layers = _layers(model_config)
    nested = [layer for layer in layers if layer["class_name"] in ("Model", "Functional", "Sequential")]
    if not nested:
        return "encoder", parse_encoder(model_config), None, None
    _chain(layers, "classifier")
    classes = [layer["class_name"] for layer in layers]
    want = ["InputLayer", nested[0]["class_name"], "Dense", "BatchNormalization", "LeakyReLU", "Dense"]
    if classes != want or len(nested) != 1:
        raise KerasImportError(f"classifier: expected {' -> '.join(want)} (the original's supervised model), "
                               f"found {' -> '.join(classes)}")
    encoder = parse_encoder(nested[0], "classifier's encoder")
    top = layers[0]["config"].get("batch_input_shape")
    if top is None or list(top[1:]) != [encoder["image_size"]] * 2 + [encoder["channels"]]:
        raise KerasImportError(f"classifier: input shape {top} differs from its encoder's")
    dense = _expect(layers[2], "Dense", "classifier head", units=HEAD_HIDDEN, activation="linear", use_bias=True)
    bn = _batch_norm(layers[3], "classifier head")
    _leaky(layers[4], "classifier head")
    out = _expect(layers[5], "Dense", "classifier head", units=NUM_CLASSES, use_bias=True)
    if out.get("activation") not in ("softmax", "linear"):
        raise KerasImportError(f"classifier head: last Dense has activation {out.get('activation')!r}; "
                               f"expected softmax (or linear logits)")
    head = {"dense": dense["name"], "bn": bn, "out": out["name"]}
    return "classifier", encoder, head, nested[0]["config"]["name"]


# ---------------------------------------------------------------- the weight mapping

def conv_kernel(kernel):
    """Keras Conv2D kernel HWIO [kh, kw, in, out] -> the port's OIHW [out, in, kh, kw]."""
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))


def dense_kernel(kernel):
    """Keras Dense kernel [in, out] -> the port's nn.Dense weight [out, in]."""
    return np.ascontiguousarray(kernel.T)


def flatten_dense_kernel(kernel, size, channels):
    """The first Dense after Flatten: Keras rows in (h, w, c) order -> port weight [out, in] whose
    columns are in the port's (c, h, w) flatten order."""
    out = kernel.shape[1]
    return np.ascontiguousarray(kernel.reshape(size, size, channels, out).transpose(2, 0, 1, 3)
                                .reshape(size * size * channels, out).T)


def fold_conv_bias(moving_mean, bias):
    """A bias before an inference-mode BatchNorm is the same as subtracting it from the moving mean."""
    return (moving_mean.astype(np.float64) - bias.astype(np.float64)).astype(np.float32)


def _get(weights, layer, key, shape, where):
    try:
        value = weights[layer][key]
    except KeyError:
        raise KerasImportError(f"{where}: weight {layer}/{key} missing from the file") from None
    if tuple(value.shape) != tuple(shape):
        raise KerasImportError(f"{where}: weight {layer}/{key} has shape {tuple(value.shape)}, "
                               f"the config implies {tuple(shape)}")
    if not np.all(np.isfinite(value)):
        raise KerasImportError(f"{where}: weight {layer}/{key} holds NaN or infinite values")
    return value.astype(np.float32)


def _bn_params(weights, layer, width, prefix, where, bias=None):
    get = lambda key: _get(weights, layer, key, (width,), where)  # noqa: E731
    mean = get("moving_mean")
    return {prefix + "gamma": get("gamma"), prefix + "beta": get("beta"),
            prefix + "moving_mean": mean if bias is None else fold_conv_bias(mean, bias),
            prefix + "moving_variance": get("moving_variance")}


def _prefix(cell):
    """'blocks.0.bn.' of a BatchNorm Cell of the port's encoder (its parameter names' common start)."""
    return cell.gamma.name[:-len("gamma")]


def _block_params(blocks, enc, weights):
    """The conv blocks' weights, block by block of the port's encoder (names from its Cells)."""
    params, cin, names = {}, enc["channels"], enc["names"]
    for i, (block, conv, bn) in enumerate(zip(blocks, names["conv"], names["conv_bn"])):
        where = f"conv block {i + 1}"
        kernel = _get(weights, conv, "kernel", (3, 3, cin, enc["width"]), where)
        bias = _get(weights, conv, "bias", (enc["width"],), where)
        params[block.conv.weight.name] = conv_kernel(kernel)
        params.update(_bn_params(weights, bn, enc["width"], _prefix(block.bn), where, bias))
        cin = enc["width"]
    return params


def _dense_params(dense, layer, kernel, weights, where):
    return {dense.weight.name: kernel, dense.bias.name: _get(weights, layer, "bias", (dense.out_channels,), where)}


def encoder_params(enc, weights, hparams):
    """{port parameter name (encoder.*): float32 array} of the encoder; weights: {inner layer: {key: array}}.

    Walks the port's encoder (src/model/cpc.py Encoder.stages(), the device form, whose parameter
    names every form shares) and maps each stage onto its Keras layers."""
    from src.model.build import build_encoder
    names, params = enc["names"], {}
    size = encoder_output_size(enc["image_size"], "valid", enc["layers"])
    for stage, cell in build_encoder(hparams, "device").stages():
        if stage == "blocks":
            params.update(_block_params(cell, enc, weights))
        elif stage == "dense":
            kernel = _get(weights, names["dense"], "kernel", (size * size * enc["width"], enc["hidden"]), "dense")
            params.update(_dense_params(cell, names["dense"], flatten_dense_kernel(kernel, size, enc["width"]),
                                        weights, "dense"))
        elif stage == "bn":
            params.update(_bn_params(weights, names["bn"], enc["hidden"], _prefix(cell), "dense"))
        elif stage == "embedding":
            kernel = _get(weights, names["embedding"], "kernel", (enc["hidden"], enc["code_size"]), "code")
            params.update(_dense_params(cell, names["embedding"], dense_kernel(kernel), weights, "code"))
        elif stage not in ("flatten", "act"):  # no weights; Keras's Flatten order is the dense stage's
            raise KerasImportError(f"internal: the port's encoder stage {stage!r} has no Keras counterpart")
    return {ENCODER_PREFIX + name: value for name, value in params.items()}


def head_params(head, code_size, weights):
    """{port parameter name (head.layers.*): float32 array} of the MLP head."""
    params = {HEAD_PREFIX + "0.weight": dense_kernel(_get(weights, head["dense"], "kernel",
                                                          (code_size, HEAD_HIDDEN), "head")),
              HEAD_PREFIX + "0.bias": _get(weights, head["dense"], "bias", (HEAD_HIDDEN,), "head")}
    params.update(_bn_params(weights, head["bn"], HEAD_HIDDEN, HEAD_PREFIX + "1.", "head"))
    params[HEAD_PREFIX + "3.weight"] = dense_kernel(_get(weights, head["out"], "kernel",
                                                         (HEAD_HIDDEN, NUM_CLASSES), "head"))
    params[HEAD_PREFIX + "3.bias"] = _get(weights, head["out"], "bias", (NUM_CLASSES,), "head")
    return params


def _nested_weights(flat):
    """{'conv2d_1/kernel': a, ...} of a nested Model's group -> {'conv2d_1': {'kernel': a}, ...}."""
    out = {}
    for key, value in flat.items():
        if "/" not in key:
            raise KerasImportError(f"nested encoder weight {key!r} names no layer")
        layer, name = key.rsplit("/", 1)
        out.setdefault(layer.rsplit("/", 1)[-1], {})[name] = value
    return out


def _top_weights(weights):
    """Top-level layer groups: keys '<scope>/<name>' -> '<name>' (the scope may carry a _1 suffix)."""
    return {layer: {key.rsplit("/", 1)[-1]: value for key, value in group.items()}
            for layer, group in weights.items()}


def hparams_of(enc):
    """The port's model keys of an imported encoder (input_contrast false: the original has no such layer)."""
    values = {k: SCHEMA[k].default for k in NON_ENCODER_KEYS}
    values.update(image_size=enc["image_size"], color=enc["channels"] == 3, padding="valid",
                  input_contrast=False, code_size=enc["code_size"], encoder_layers=enc["layers"],
                  encoder_channels=enc["width"], encoder_hidden=enc["hidden"])
    if enc["channels"] not in (1, 3):
        raise KerasImportError(f"input has {enc['channels']} channels; the port reads 1 (grey) or 3 (colour)")
    try:
        cfg = namespace(**values)  # the port's own validation of these keys
    except ConfigError as exc:
        raise KerasImportError(f"the file's network does not fit the port's model keys: {exc}") from None
    from src.config import model_hparams
    return model_hparams(cfg)


def convert(h5_path, kind):
    """(params {name: float32 array}, meta dict) of the port's checkpoint of `kind` for a Keras file."""
    if kind not in KINDS:
        raise KerasImportError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    config, weights, version = read_h5(h5_path)
    try:
        found, enc, head, nested = parse_model(config)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        # a model_config Keras did not write (another tool's HDF5 file, or edited by hand): its
        # layers lack the fields every Keras 2 layer has
        raise KerasImportError(f"{h5_path}: its model_config is not one Keras writes ({type(exc).__name__} "
                               f"{first_line(exc, '')}); the importer reads files saved by Keras 2 model.save") \
            from None
    if kind == "classifier" and found != "classifier":
        raise KerasImportError(f"{h5_path} holds an encoder alone, no classifier head; use --kind encoder")
    if found == "classifier":
        if nested not in weights:
            raise KerasImportError(f"{h5_path}: no weights of the nested encoder '{nested}'")
        enc_weights = _nested_weights(weights[nested])
    else:
        enc_weights = _top_weights(weights)
    hparams = hparams_of(enc)
    params = encoder_params(enc, enc_weights, hparams)
    meta = {"kind": kind, "hparams": hparams,
            "source": {"keras_h5": os.path.abspath(h5_path), "sha256": checkpoint.sha256_of(h5_path),
                       "keras_version": version, "keras_model": found}}
    if kind == "classifier":
        params.update(head_params(head, enc["code_size"], _top_weights(weights)))
        meta["head"] = "mlp"
    return params, meta


def build_net(kind, hparams):
    """The port's Cell a checkpoint of `kind` loads into (native conv; names as in the checkpoints)."""
    from src.model.build import build_encoder
    from src.model.classifier import build_classifier
    if kind == "classifier":
        return build_classifier(hparams, "mlp", "device")
    from mindspore import nn

    class _Holder(nn.Cell):  # gives the encoder's parameters the 'encoder.' prefix of every checkpoint
        def __init__(self):
            super().__init__()
            self.encoder = build_encoder(hparams, "device")

    return _Holder()


def write_checkpoint(h5_path, kind, output_path):
    """Convert `h5_path` and write output_path/<kind>.ckpt (atomically); returns (path, meta)."""
    import mindspore as ms
    params, meta = convert(h5_path, kind)
    net = build_net(kind, meta["hparams"])
    path = os.path.join(require_folder_target(output_path, "output_path", KerasImportError), f"{kind}.ckpt")
    # load_into checks that every parameter of the port's network is present with its shape
    checkpoint.load_into(net, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in params.items()}, h5_path)
    extra = sorted(set(params) - {p.name for p in net.get_parameters()})
    if extra:
        raise KerasImportError(f"internal: mapped weights the port's network lacks: {', '.join(extra[:4])}")
    checkpoint.save([{"name": k, "data": ms.Tensor(v)} for k, v in sorted(params.items())], path, meta)
    return path, meta
