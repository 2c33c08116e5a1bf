"""convert_keras.py on the original's released Keras files (tests/data/keras, see SOURCE.txt).

Each step of the mapping is checked on its own (HWIO -> OIHW, conv bias folded into the BatchNorm,
Dense transposed, the flatten reorder, epsilon, moving statistics, LeakyReLU, the head), then the
imported networks against Keras's own outputs (keras_parity.npz, written with tf-keras by
tools/keras_parity_fixture.py on the original's pixel pipeline), then eval.py / export.py on the
imported checkpoints, then the refusals.
"""
import json
import os
import shutil

import numpy as np
import pytest

from tests.conftest import REPO, error_lines, run_entry

DATA = os.path.join(REPO, "tests", "data", "keras")
FILES = {"64x64_encoder": "encoder", "64x64_supervised": "classifier", "28x28_supervised": "classifier"}
TOL = 1e-4


def h5(name):
    return os.path.join(DATA, f"{name}.h5")


@pytest.fixture(scope="module")
def fixture():
    return np.load(os.path.join(DATA, "keras_parity.npz"))


@pytest.fixture(scope="module")
def imported(ms_cpu, tmp_path_factory):
    """convert_keras.main on each released file: {name: (checkpoint path, params, meta)}."""
    import convert_keras
    from src import checkpoint
    out, result = tmp_path_factory.mktemp("keras"), {}
    for name, kind in FILES.items():
        convert_keras.main(["--h5_path", h5(name), "--kind", kind, "--output_path", str(out / name)])
        path = str(out / name / f"{kind}.ckpt")
        params, meta = checkpoint.load(path)
        result[name] = (path, {k: v.asnumpy() for k, v in params.items()}, meta)
    return result


def keras_weights(path):
    """{weight scope: {weight: array}} straight from the HDF5 file (h5py, no converter code)."""
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        group = f["model_weights"]
        for layer in group.attrs["layer_names"]:
            for n in group[layer].attrs["weight_names"]:
                scope, weight = n.decode().rsplit(":", 1)[0].rsplit("/", 1)
                out.setdefault(scope, {})[weight] = np.array(group[layer][n])  # the head's: dense_1_1, ...
    return out


def load_net(ms, path, params, meta, backend="device"):
    from src import checkpoint
    from src.model.build import build_encoder
    from src.model.classifier import build_classifier
    tensors = {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in params.items()}
    if meta["kind"] == "classifier":
        net = build_classifier(meta["hparams"], meta["head"], backend)
    else:
        net = build_encoder(meta["hparams"], backend)
        tensors = {k[len("encoder."):]: v for k, v in tensors.items()}
    checkpoint.load_into(net, tensors, path)
    net.set_train(False)
    return net


def nchw(images):
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


# ------------------------------------------------------------ each point of the mapping

def test_conv_kernel_hwio_to_oihw_convolves_alike(ms_cpu):
    """A Keras HWIO kernel on NHWC input (numpy, valid 3x3 stride 2) = ops.conv2d with the OIHW kernel."""
    from mindspore import Tensor, ops

    from src.deploy.keras_import import conv_kernel
    rng = np.random.default_rng(0)
    x, k = rng.normal(size=(2, 9, 9, 3)).astype(np.float32), rng.normal(size=(3, 3, 3, 5)).astype(np.float32)
    ref = np.zeros((2, 4, 4, 5), np.float32)
    for i in range(4):
        for j in range(4):
            ref[:, i, j] = np.einsum("nhwc,hwco->no", x[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3], k)
    got = ops.conv2d(Tensor(nchw(x)), Tensor(conv_kernel(k)), stride=2, pad_mode="valid").asnumpy()
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), ref, atol=1e-5)
    assert conv_kernel(k)[4, 1, 2, 0] == k[2, 0, 1, 4]


def test_conv_bias_folds_into_moving_mean_exactly():
    from src.deploy.keras_import import fold_conv_bias
    rng = np.random.default_rng(1)
    x, b, m = (rng.normal(size=(6, 4)).astype(np.float32) for _ in range(3))
    v, g, beta = rng.random(4).astype(np.float32) + 0.1, rng.normal(size=4), rng.normal(size=4)
    bn = lambda z, mean: g * (z - mean) / np.sqrt(v + 1e-3) + beta  # noqa: E731
    np.testing.assert_allclose(bn(x, fold_conv_bias(m, b)), bn(x + b, m), atol=1e-5)
    assert not np.allclose(bn(x, m), bn(x + b, m))  # the bias matters


def test_dense_kernel_transposed_and_flatten_reordered():
    """Keras: NHWC map flattened (h, w, c) @ kernel; port: NCHW map flattened (c, h, w) @ weight.T."""
    from src.deploy.keras_import import dense_kernel, flatten_dense_kernel
    rng = np.random.default_rng(2)
    fmap, k = rng.normal(size=(3, 2, 2, 5)), rng.normal(size=(2 * 2 * 5, 7))
    keras = fmap.reshape(3, -1) @ k
    port = nchw(fmap).reshape(3, -1) @ flatten_dense_kernel(k, 2, 5).T
    np.testing.assert_allclose(port, keras, atol=1e-10)
    assert not np.allclose(nchw(fmap).reshape(3, -1) @ k, keras)  # without the reorder it differs
    np.testing.assert_array_equal(dense_kernel(k), k.T)


@pytest.mark.parametrize("name", list(FILES))
def test_every_weight_mapped_from_the_file(imported, name):
    """Conv kernels (OIHW), the folded conv biases, BatchNorm gamma/beta/moving statistics, the Dense
    layers (transposed, the first reordered) and the head, checked against h5py's raw arrays."""
    _, params, meta = imported[name]
    raw = keras_weights(h5(name))
    h = meta["hparams"]
    for i in range(h["encoder_layers"]):
        conv, bn = raw[f"conv2d_{i + 1}"], raw[f"batch_normalization_{i + 1}"]
        p = f"encoder.blocks.{i}."
        np.testing.assert_array_equal(params[p + "conv.weight"], conv["kernel"].transpose(3, 2, 0, 1))
        np.testing.assert_allclose(params[p + "bn.moving_mean"], bn["moving_mean"] - conv["bias"], atol=1e-6)
        for key in ("gamma", "beta", "moving_variance"):
            np.testing.assert_array_equal(params[p + "bn." + key], bn[key])
    s, c = {64: 3, 28: 2}[h["image_size"]], h["encoder_channels"]
    kernel = raw["dense_1"]["kernel"]
    assert kernel.shape == (s * s * c, h["encoder_hidden"])
    w = params["encoder.dense.weight"]
    # port column (c, h, w) reads Keras row (h, w, c)
    for ch, y, x in ((0, 0, 0), (c - 1, 1, 0), (3, s - 1, s - 1)):
        np.testing.assert_array_equal(w[:, (ch * s + y) * s + x], kernel[(y * s + x) * c + ch])
    bn = raw[f"batch_normalization_{h['encoder_layers'] + 1}"]
    for key in ("gamma", "beta", "moving_mean", "moving_variance"):
        np.testing.assert_array_equal(params["encoder.bn." + key], bn[key])
    np.testing.assert_array_equal(params["encoder.embedding.weight"], raw["encoder_embedding"]["kernel"].T)
    np.testing.assert_array_equal(params["encoder.embedding.bias"], raw["encoder_embedding"]["bias"])
    if meta["kind"] == "classifier":
        np.testing.assert_array_equal(params["head.layers.0.weight"], raw["dense_1_1"]["kernel"].T)
        np.testing.assert_array_equal(params["head.layers.1.moving_variance"],
                                      raw["batch_normalization_1_1"]["moving_variance"])
        np.testing.assert_array_equal(params["head.layers.3.weight"], raw["dense_2"]["kernel"].T)
        np.testing.assert_array_equal(params["head.layers.3.bias"], raw["dense_2"]["bias"])


def test_epsilon_and_slope_are_the_files(imported):
    """The files' BatchNorm epsilon (1e-3) and LeakyReLU alpha (0.3) are the port's constants."""
    import h5py

    from src.model.cpc import BN_EPS, LEAKY_ALPHA
    with h5py.File(h5("28x28_supervised"), "r") as f:
        text = f.attrs["model_config"]
    layers = json.loads(text)["config"]["layers"]
    inner = layers[1]["config"]["layers"]
    eps = {lay["config"]["epsilon"] for lay in layers + inner if lay["class_name"] == "BatchNormalization"}
    alpha = {lay["config"]["alpha"] for lay in layers + inner if lay["class_name"] == "LeakyReLU"}
    assert eps == {BN_EPS} and {np.float32(a) for a in alpha} == {np.float32(LEAKY_ALPHA)}


def test_hparams_from_the_files(imported):
    h64, h28 = imported["64x64_encoder"][2]["hparams"], imported["28x28_supervised"][2]["hparams"]
    shape_keys = ("image_size", "encoder_layers", "encoder_channels", "encoder_hidden")
    assert tuple(h64[k] for k in shape_keys) == (64, 4, 64, 256)
    assert tuple(h28[k] for k in shape_keys) == (28, 3, 32, 128)
    for h in (h64, h28):
        assert h["color"] is True and h["input_contrast"] is False and h["padding"] == "valid"
        assert h["code_size"] == 128
    assert imported["64x64_supervised"][2]["head"] == "mlp"
    assert imported["64x64_encoder"][2]["source"]["keras_version"] == "2.0.6"


# ------------------------------------------------------------ parity with Keras itself

@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("backend", ["device", "cpu"], ids=["native_conv", "cpu_conv"])
def test_outputs_equal_keras(ms_cpu, imported, fixture, name, backend):
    """Codes (and logits, softmax) of the imported net = Keras's on the same images, within 1e-4
    relative to the output's scale (the 64x64 CPC encoder's codes reach ~3e3, where float32's own
    spacing is ~2e-4)."""
    ms = ms_cpu
    path, params, meta = imported[name]
    x = nchw(fixture[f"{name}/images"])
    net = load_net(ms, path, params, meta, backend)
    encoder = net.encoder if meta["kind"] == "classifier" else net
    codes, want = encoder(ms.Tensor(x)).asnumpy(), fixture[f"{name}/codes"]
    assert np.abs(codes - want).max() <= TOL * max(1.0, np.abs(want).max())
    if meta["kind"] == "classifier":
        logits = net(ms.Tensor(x)).asnumpy()
        np.testing.assert_allclose(logits, fixture[f"{name}/logits"], rtol=0, atol=TOL)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), fixture[f"{name}/probs"], atol=TOL)


def test_fixture_is_not_trivial(fixture):
    """The images are the original's colour digits and the Keras classifiers mostly read them right."""
    for name in FILES:
        x = fixture[f"{name}/images"]
        assert x.shape[1:3] == (int(name[:2]),) * 2 and x.shape[3] == 3 and -1 <= x.min() < x.max() <= 1
        assert np.abs(fixture[f"{name}/codes"]).max() > 1
    for name in ("64x64_supervised", "28x28_supervised"):
        assert (fixture[f"{name}/logits"].argmax(1) == fixture[f"{name}/labels"]).mean() >= 0.5


# ------------------------------------------------------------ the tools on imported checkpoints

@pytest.mark.slow  # starts a process
def test_export_onnx_of_imported_classifier_equals_keras(imported, fixture, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = imported["28x28_supervised"][0]
    name = str(tmp_path / "keras28")
    proc = run_entry(["export.py", "--ckpt_path", path, "--net", "classifier", "--file_format", "ONNX",
                      "--file_name", name, "--batch_size", "8"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    session = ort.InferenceSession(name + ".onnx", providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: nchw(fixture["28x28_supervised/images"])})
    np.testing.assert_allclose(logits, fixture["28x28_supervised/logits"], atol=TOL)


@pytest.mark.slow  # starts a process
def test_export_encoder_from_imported_encoder_checkpoint(imported, tmp_path):
    name = str(tmp_path / "enc")
    proc = run_entry(["export.py", "--ckpt_path", imported["64x64_encoder"][0], "--net", "encoder",
                      "--file_format", "MINDIR", "--file_name", name])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.getsize(name + ".mindir") > 1e6  # the 64x64 encoder's ~300k float32 weights


@pytest.mark.slow  # starts a process
def test_eval_classify_accepts_imported_encoder(tmp_path):
    """eval.py --eval_mode classify on an imported encoder checkpoint (28x28: 3 convs of 32, read from
    the checkpoint, not the config)."""
    out = tmp_path / "conv"
    proc = run_entry(["convert_keras.py", "--h5_path", h5("28x28_supervised"), "--kind", "encoder",
                      "--output_path", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 convs of 32" in proc.stdout
    proc = run_entry(["eval.py", "--eval_mode", "classify", "--ckpt_path", str(out / "encoder.ckpt"),
                      "--output_path", str(tmp_path / "eval"), "--methods", "cpc_linear",
                      "--label_fractions", "1.0", "--head_steps", "20", "--device_target", "CPU"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "eval" / "downstream_metrics.json", encoding="utf-8") as handle:
        metrics = json.load(handle)
    assert metrics["hparams"]["encoder_layers"] == 3 and metrics["hparams"]["image_size"] == 28
    assert metrics["results"][0]["accuracy"] > 0.3  # 20 steps of a linear probe on a trained encoder


# ------------------------------------------------------------ refusals

def _variant(tmp_path, name, edit_config=None, edit_file=None):
    """A copy of a released file with its model_config (or the file itself) edited."""
    import h5py
    path = str(tmp_path / f"variant_{name}.h5")
    shutil.copy(h5(name), path)
    with h5py.File(path, "r+") as f:
        if edit_config is not None:
            config = json.loads(f.attrs["model_config"])
            edit_config(config)
            f.attrs["model_config"] = json.dumps(config).encode()
        if edit_file is not None:
            edit_file(f)
    return path


def _layer(config, class_name, index=0, nested=False):
    layers = config["config"]["layers"]
    if nested:
        layers = layers[1]["config"]["layers"]
    return [lay for lay in layers if lay["class_name"] == class_name][index]


def _set(key, value, class_name, nested=False):
    return lambda c: _layer(c, class_name, nested=nested)["config"].__setitem__(key, value)


def _full_cpc(config):
    config["config"]["layers"].append({"class_name": "TimeDistributed", "config": {"name": "td"},
                                       "inbound_nodes": []})


def _replace_weight(f):
    del f["model_weights/conv2d_2/conv2d_2/kernel:0"]
    f["model_weights/conv2d_2/conv2d_2/kernel:0"] = np.zeros((3, 3, 64, 32), np.float32)


@pytest.mark.parametrize("name,kind,config,file,message", [
    ("64x64_encoder", "encoder", _set("epsilon", 1e-5, "BatchNormalization"), None, "epsilon=1e-05"),
    ("64x64_encoder", "encoder", _set("alpha", 0.2, "LeakyReLU"), None, "alpha=0.2"),
    ("64x64_encoder", "encoder", _set("padding", "same", "Conv2D"), None, "padding='same'"),
    ("64x64_encoder", "encoder", _set("use_bias", False, "Conv2D"), None, "use_bias=False"),
    ("28x28_supervised", "classifier", _set("units", 64, "Dense"), None, "units=64"),
    ("28x28_supervised", "encoder", _set("kernel_size", [5, 5], "Conv2D", nested=True), None, "kernel_size"),
    ("64x64_encoder", "encoder", lambda c: _layer(c, "LeakyReLU").__setitem__("class_name", "Activation"), None,
     "expected LeakyReLU, found Activation"),
    ("64x64_encoder", "encoder", _full_cpc, None, "full CPC model"),
    ("64x64_encoder", "encoder", None, _replace_weight, "has shape (3, 3, 64, 32)"),
    ("64x64_encoder", "encoder", None, lambda f: f.attrs.__setitem__("keras_version", "3.3.3"), "Keras 3.3.3"),
    ("64x64_encoder", "encoder", None, lambda f: f.attrs.__delitem__("model_config"), "no model_config"),
    ("64x64_encoder", "classifier", None, None, "use --kind encoder"),
])
def test_refuses_what_it_cannot_map_exactly(tmp_path, name, kind, config, file, message):
    from src.deploy.keras_import import KerasImportError, convert
    path = _variant(tmp_path, name, config, file) if (config or file) else h5(name)
    with pytest.raises(KerasImportError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        convert(path, kind)


@pytest.mark.parametrize("content", [b"PK\x03\x04 a zip: Keras 3 .keras", b"not an hdf5 file at all"])
@pytest.mark.slow  # starts a process
def test_cli_bad_file_one_error_line_nothing_written(tmp_path, content):
    bad = tmp_path / "model.h5"
    bad.write_bytes(content)
    out = tmp_path / "out"
    proc = run_entry(["convert_keras.py", "--h5_path", str(bad), "--kind", "encoder", "--output_path", str(out)])
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert ("Keras 3" if content.startswith(b"PK") else "not an HDF5 file") in lines[0]
    assert not out.exists()


def test_old_checkpoints_without_encoder_keys_build_the_default_encoder(ms_cpu):
    from src.config import ConfigError, namespace
    from src.model.build import build_encoder
    old = {"image_size": 64, "color": True, "padding": "valid", "input_contrast": False, "code_size": 16}
    enc = build_encoder(old, "device")
    assert len(enc.blocks) == 4 and enc.dense.weight.shape == (256, 64 * 3 * 3)
    small = build_encoder(dict(old, encoder_layers=3, encoder_channels=8, encoder_hidden=12), "device")
    assert len(small.blocks) == 3 and small.dense.weight.shape == (12, 8 * 7 * 7)
    with pytest.raises(ConfigError, match="encoder_layers"):
        namespace(encoder_layers=0)
    with pytest.raises(ConfigError, match="too small for 4"):
        namespace(image_size=28, padding="valid")
    assert namespace(image_size=28, padding="valid", encoder_layers=3).encoder_layers == 3


def test_diverging_head_is_a_user_error(ms_cpu):
    """The released encoder.h5's codes reach ~3e3 (its BatchNorm statistics were never updated, see
    README): a head that diverges on them stops eval.py with one error line, not a traceback."""
    from src.eval.downstream import Budget, fit
    from src.model.classifier import DigitHead
    from src.utils.errors import CPCError
    codes = np.full((8, 4), 1e30, np.float32) * np.arange(1, 9, dtype=np.float32)[:, None]
    with pytest.raises(CPCError, match="diverged"):
        fit(DigitHead(4, "linear"), codes, np.arange(8) % 10, Budget(3, 8, 1e-3, 0))


def _other_tool_h5(path, layers):
    """An HDF5 file another tool wrote: it claims Keras 2 but its layers lack Keras's fields."""
    import h5py
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.0.6"
        f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": layers}})
        f.create_group("model_weights")
    return str(path)


@pytest.mark.parametrize("layers", [[{"foo": 1}, {"bar": 2}], ["input", "conv"]])
def test_hdf5_keras_did_not_write_is_one_line(tmp_path, layers):
    from src.deploy.keras_import import KerasImportError, convert
    with pytest.raises(KerasImportError, match="its model_config is not one Keras writes"):
        convert(_other_tool_h5(tmp_path / "other.h5", layers), "encoder")
    with pytest.raises(KerasImportError, match="Keras file .* is a folder, not a file"):
        convert(str(tmp_path), "encoder")
