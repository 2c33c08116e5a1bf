"""export.py: every net in MINDIR and ONNX loads back and matches the training-form Cell; errors are clean."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

import export
from src import checkpoint
from src.config import model_hparams, parse_config
from src.model.build import build_cpc, feature_size
from src.model.classifier import build_classifier
from src.model.gru import UnrolledGRU
from src.utils.errors import CheckpointError, ConfigError, CPCError
from tests.conftest import REPO, TINY, error_lines, run_entry

HP = dict(image_size=28, color=False, padding="same", input_contrast=False, terms=2, predict_terms=2,
          code_size=32, hidden_size=32)
COLOR_HP = dict(HP, color=True, image_size=32, input_contrast=True)


def randomise(net, seed):
    """Random BatchNorm statistics and affine parameters (the initial ones make eval-mode BN the identity)."""
    rng = np.random.default_rng(seed)
    draw = {"moving_mean": lambda n: rng.normal(0, 0.1, n), "moving_variance": lambda n: rng.uniform(0.5, 1.5, n),
            "gamma": lambda n: rng.uniform(0.8, 1.2, n), "beta": lambda n: rng.normal(0, 0.1, n)}
    for param in net.get_parameters():
        key = param.name.rsplit(".", 1)[-1]
        if key in draw:
            param.set_data(ms.Tensor(draw[key](param.shape).astype(np.float32)))
    return net


def reference(net_name, path, hparams, head="mlp"):
    """The training form of the net (compiled CPU encoder, nn.GRU) with the checkpoint's parameters."""
    params = checkpoint.load(path)[0]
    cell = build_classifier(hparams, head, "cpu") if net_name == "classifier" else build_cpc(hparams, "cpu")
    if net_name == "encoder":
        cell = cell.encoder  # its parameters keep their full names, encoder.*
    checkpoint.load_into(cell, params, path)
    cell.set_train(False)
    return cell


@pytest.fixture(scope="module")
def ckpts(ms_cpu, tmp_path_factory):
    """Checkpoints of each kind, with random parameters: {(kind, 'grey'|'colour'): path}."""
    folder = tmp_path_factory.mktemp("export_ckpts")
    paths = {}
    for tag, hparams in (("grey", HP), ("colour", COLOR_HP)):
        cpc = randomise(build_cpc(hparams, "cpu"), 1)
        paths["cpc", tag] = str(folder / f"cpc_{tag}.ckpt")
        checkpoint.save(cpc, paths["cpc", tag], {"kind": "cpc", "hparams": hparams})
        paths["encoder", tag] = str(folder / f"encoder_{tag}.ckpt")
        checkpoint.save(cpc.encoder, paths["encoder", tag], {"kind": "encoder", "hparams": hparams})
        clf = randomise(build_classifier(hparams, "mlp", "cpu"), 2)
        paths["classifier", tag] = str(folder / f"classifier_{tag}.ckpt")
        checkpoint.save(clf, paths["classifier", tag], {"kind": "classifier", "hparams": hparams, "head": "mlp"})
    return paths


def inputs_for(net_name, hparams, batch, seed=0):
    rng = np.random.default_rng(seed)
    image = (3 if hparams["color"] else 1, hparams["image_size"], hparams["image_size"])
    if net_name == "cpc":
        return [rng.uniform(-1, 1, (batch, hparams["terms"]) + image).astype(np.float32),
                rng.uniform(-1, 1, (batch, hparams["predict_terms"]) + image).astype(np.float32)]
    return [rng.uniform(-1, 1, (batch,) + image).astype(np.float32)]


def run_export(ckpt, net_name, file_format, name, batch):
    export.main(["--config_path", TINY, "--ckpt_path", ckpt, "--net", net_name, "--file_format", file_format,
                 "--batch_size", str(batch), "--file_name", name])


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_unrolled_gru_equals_nn_gru(ms_cpu):
    gru = nn.GRU(24, 40, batch_first=True)
    unrolled = UnrolledGRU(24, 40, steps=5)
    assert [p.name for p in unrolled.get_parameters()] == [p.name for p in gru.get_parameters()]
    ms.load_param_into_net(unrolled, {p.name: p for p in gru.get_parameters()}, strict_load=True)
    x = ms.Tensor(np.random.default_rng(0).normal(0, 2, (7, 5, 24)).astype(np.float32))
    (out, h_n), (out_u, h_n_u) = gru(x), unrolled(x)
    assert h_n.shape == (1, 7, 40) and len(h_n_u) == 1 and h_n_u[-1].shape == (7, 40)
    np.testing.assert_allclose(out_u.asnumpy(), out.asnumpy(), atol=1e-5)
    np.testing.assert_allclose(h_n_u[-1].asnumpy(), h_n[-1].asnumpy(), atol=1e-5)
    assert np.abs(h_n.asnumpy()).max() > 0.1  # a real hidden state, not zeros on both sides


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
@pytest.mark.parametrize("net_name,kind", [("classifier", "classifier"), ("encoder", "cpc"), ("encoder", "encoder"),
                                           ("cpc", "cpc")])
def test_mindir_matches_cell(ckpts, tmp_path, net_name, kind):
    name = str(tmp_path / net_name)
    run_export(ckpts[kind, "grey"], net_name, "MINDIR", name, batch=3)
    assert os.listdir(tmp_path) == [f"{net_name}.mindir"]
    inputs = inputs_for(net_name, HP, 3)
    expected = reference(net_name, ckpts[kind, "grey"], HP)(*map(ms.Tensor, inputs)).asnumpy()
    got = nn.GraphCell(ms.load(name + ".mindir"))(*map(ms.Tensor, inputs)).asnumpy()
    assert got.shape == expected.shape == (3, {"classifier": 10, "encoder": 32, "cpc": 1}[net_name])
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("net_name,kind,tag", [("classifier", "classifier", "grey"),
                                               ("classifier", "classifier", "colour"),
                                               ("encoder", "classifier", "grey"), ("cpc", "cpc", "grey")])
def test_onnx_matches_cell(ckpts, tmp_path, net_name, kind, tag):
    ort = pytest.importorskip("onnxruntime")
    hparams = COLOR_HP if tag == "colour" else HP
    name = str(tmp_path / net_name)
    run_export(ckpts[kind, tag], net_name, "ONNX", name, batch=2)
    assert os.listdir(tmp_path) == [f"{net_name}.onnx"]
    inputs = inputs_for(net_name, hparams, 2)
    expected = reference(net_name, ckpts[kind, tag], hparams)(*map(ms.Tensor, inputs)).asnumpy()
    session = ort.InferenceSession(name + ".onnx", providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), inputs)})
    assert len(got) == 1
    np.testing.assert_allclose(got[0], expected, atol=1e-4)


@pytest.mark.parametrize("config, norm", [("cpc_image28_gray.yaml", "layer"), ("cpc_image64_color.yaml", "group")])
def test_image_encoder_onnx_matches_cell(ms_cpu, tmp_path, config, norm):
    """The image task's encoder (layer / group normalisation: the inverse square root MindSpore's ONNX
    exporter does not map on its own; colour: the input contrast) exports to ONNX and runs in
    onnxruntime with the training form's outputs."""
    ort = pytest.importorskip("onnxruntime")
    cfg = parse_config(["--config_path", os.path.join(REPO, "config", config), "--norm", norm, "--code_size", "16",
                        "--hidden_size", "16", "--encoder_channels", "8", "--encoder_hidden", "32"])
    hparams = model_hparams(cfg)
    ckpt = str(tmp_path / "cpc.ckpt")
    checkpoint.save(randomise(build_cpc(hparams, "cpu"), 3), ckpt, {"kind": "cpc", "hparams": hparams})
    name = str(tmp_path / "out" / "encoder")
    os.mkdir(tmp_path / "out")
    export.main(["--config_path", os.path.join(REPO, "config", config), "--ckpt_path", ckpt, "--net", "encoder",
                 "--file_format", "ONNX", "--batch_size", "2", "--file_name", name])
    assert os.listdir(tmp_path / "out") == ["encoder.onnx"]
    x = inputs_for("encoder", hparams, 2)
    expected = reference("encoder", ckpt, hparams)(ms.Tensor(x[0])).asnumpy()
    session = ort.InferenceSession(name + ".onnx", providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x[0]})
    assert got[0].shape == expected.shape == (2, feature_size(hparams)) and np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got[0], expected, atol=1e-5)


def test_batch_size_is_the_exported_batch(ckpts, tmp_path):
    # batch 1 is odd: the config's training batch_size (even, >= 2) is not what --batch_size sets here
    run_export(ckpts["classifier", "grey"], "classifier", "MINDIR", str(tmp_path / "c"), batch=1)
    graph = nn.GraphCell(ms.load(str(tmp_path / "c.mindir")))
    assert graph(ms.Tensor(inputs_for("classifier", HP, 1)[0])).shape == (1, 10)
    with pytest.raises(ConfigError, match="--batch_size"):
        export.main(["--config_path", TINY, "--ckpt_path", ckpts["cpc", "grey"], "--batch_size", "0"])


@pytest.mark.parametrize("net_name,kind,needs", [("classifier", "cpc", "a classifier checkpoint"),
                                                 ("cpc", "encoder", "a CPC checkpoint"),
                                                 ("cpc", "classifier", "a CPC checkpoint")])
def test_net_needs_a_checkpoint_of_its_kind(ckpts, tmp_path, net_name, kind, needs):
    with pytest.raises(CheckpointError, match=f"--net {net_name} needs {needs}.*of kind '{kind}'"):
        run_export(ckpts[kind, "grey"], net_name, "MINDIR", str(tmp_path / "x"), batch=1)
    assert os.listdir(tmp_path) == []


def test_failed_export_leaves_nothing(ckpts, tmp_path, monkeypatch):
    def broken_export(*_args, file_name, **_kwargs):
        with open(file_name + ".mindir", "wb") as handle:
            handle.write(b"half")
        raise RuntimeError("disk full\nC++ stack ...")

    monkeypatch.setattr(export.ms, "export", broken_export)
    with pytest.raises(CPCError, match="^MINDIR export failed: disk full$"):
        run_export(ckpts["encoder", "grey"], "encoder", "MINDIR", str(tmp_path / "enc"), batch=1)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow  # starts a process
def test_air_off_ascend_fails_cleanly(ckpts, tmp_path):
    proc = run_entry(["export.py", "--config_path", TINY, "--ckpt_path", ckpts["classifier", "grey"],
                      "--file_format", "AIR", "--file_name", str(tmp_path / "x")])
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == ["error: AIR export needs an Ascend device (this run is on CPU); "
                                        "use MINDIR or ONNX"]
    assert os.listdir(tmp_path) == []


def test_trained_checkpoint_exports(ms_cpu, tiny_run, tmp_path):
    """The cpc_best.ckpt train.py writes (Adam state and all) exports; the graph matches the trained Cell."""
    out, _ = tiny_run
    ckpt = str(out / "cpc_best.ckpt")
    run_export(ckpt, "cpc", "MINDIR", str(tmp_path / "cpc"), batch=2)
    hparams = checkpoint.load(ckpt)[1]["hparams"]
    inputs = inputs_for("cpc", hparams, 2)
    expected = reference("cpc", ckpt, hparams)(*map(ms.Tensor, inputs)).asnumpy()
    got = nn.GraphCell(ms.load(str(tmp_path / "cpc.mindir")))(*map(ms.Tensor, inputs)).asnumpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_file_name_keeps_a_given_suffix_and_refuses_a_folder(tmp_path, monkeypatch):
    """--file_name enc.mindir is not doubled; a folder (trailing slash or existing) is refused; ~ expands."""
    assert export.output_file(str(tmp_path / "enc.mindir"), "MINDIR") == str(tmp_path / "enc.mindir")
    assert export.output_file(str(tmp_path / "enc.ONNX"), "ONNX") == str(tmp_path / "enc.ONNX")
    assert export.output_file(str(tmp_path / "enc"), "ONNX") == str(tmp_path / "enc.onnx")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert export.output_file("~/enc", "MINDIR") == str(tmp_path / "enc.mindir")
    (tmp_path / "folder").mkdir()
    for name in (str(tmp_path / "new") + "/", str(tmp_path / "folder")):
        with pytest.raises(ConfigError, match="is a folder; give a file name"):
            export.output_file(name, "MINDIR")
    assert sorted(os.listdir(tmp_path)) == ["folder"]
