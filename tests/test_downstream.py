"""Downstream digit classification (eval.py --eval_mode classify): subsets, frozen encoder, outputs."""
import json

import numpy as np
import pytest
from PIL import Image

from src import checkpoint
from src.config import model_hparams, namespace
from src.eval import downstream, protocol
from src.utils import plots
from src.utils.errors import ConfigError
from tests.conftest import TINY, error_lines, export_embedded_test_split, run_entry, write_idx


def test_balanced_subset_is_balanced_nested_and_seeded():
    labels = np.repeat(np.arange(10), 350)
    np.random.default_rng(0).shuffle(labels)
    small = protocol.balanced_subset(labels, 0.01, seed=3)
    large = protocol.balanced_subset(labels, 0.1, seed=3)
    assert np.bincount(labels[small], minlength=10).tolist() == [4] * 10
    assert np.bincount(labels[large], minlength=10).tolist() == [35] * 10
    assert set(small) <= set(large)
    assert np.array_equal(small, protocol.balanced_subset(labels, 0.01, seed=3))
    assert not np.array_equal(small, protocol.balanced_subset(labels, 0.01, seed=4))
    assert len(protocol.balanced_subset(labels, 1.0, seed=3)) == len(labels)
    with pytest.raises(ValueError):
        protocol.balanced_subset(labels, 0.0, seed=3)


def test_pca_finds_the_main_direction():
    rng = np.random.default_rng(0)
    t = rng.normal(size=500)
    codes = np.outer(t, [3.0, 0, 4.0, 0]) + 0.01 * rng.normal(size=(500, 4))
    points = plots.pca_2d(codes)
    assert points.shape == (500, 2)
    assert abs(np.corrcoef(points[:, 0], t)[0, 1]) > 0.999
    assert points[:, 0].var() > 1000 * points[:, 1].var()


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_tsne_keeps_the_clusters_apart():
    """t-SNE's map keeps each code's neighbours: a kNN on the 2-D points still finds the digit
    (chance 0.1; the codes themselves give 1.0). t-SNE may split a cluster, and where depends on the
    scikit-learn release and the processor: measured 0.94 / 1.00 / 1.00 on the three data seeds
    (scikit-learn 1.9.1, Intel Xeon), so the bound keeps a margin below the worst of them."""
    from src.eval.represent import knn_accuracy
    labels = np.arange(200) % 10
    for data_seed in range(3):
        rng = np.random.default_rng(data_seed)
        codes = 3 * rng.normal(size=(10, 32))[labels] + rng.normal(size=(200, 32))
        points = plots.tsne_2d(codes.astype(np.float32), seed=0)
        assert points.shape == (200, 2)
        assert knn_accuracy(points[:100], labels[:100], points[100:], labels[100:], k=5) > 0.85, data_seed


def _bn_stats(cell):
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters() if "moving_" in p.name}


@pytest.mark.slow
def test_frozen_encoder_is_never_updated(ms_cpu):
    """run_downstream leaves the CPC encoder's weights and BatchNorm statistics untouched, while
    cpc_finetune trains a copy of it."""
    from src.data.mnist import load_split
    from src.model.build import build_encoder
    cfg = namespace(image_size=28, color=False, padding="same", code_size=16, head_steps=5,
                    head_batch_size=16, seed=1)
    hparams = model_hparams(cfg)
    encoder = build_encoder(hparams, "cpu")
    before = {p.name: p.asnumpy().copy() for p in encoder.get_parameters()}
    images, labels = load_split("", "test")
    data = protocol.DownstreamData((images[:200], labels[:200]), (images[200:300], labels[200:300]), hparams, 1)
    results, frozen, codes = downstream.run_downstream(encoder, data, cfg, "cpu",
                                                       methods=("cpc_mlp", "cpc_finetune"), fractions=(1.0,))
    assert {r["method"] for r in results} == {"cpc_mlp", "cpc_finetune"}
    after = {p.name.replace("encoder.", "", 1): p.asnumpy() for p in encoder.get_parameters()}
    assert any("moving_mean" in name for name in before)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    classifier = frozen[("cpc_mlp", 1.0)]
    assert classifier.encoder is encoder
    assert codes["cpc"].shape == (100, 16)


# tiny_run's checkpoint, 10% and 100% labels, classifier seeds 0-2 (PreciseBN after each fit): cpc_mlp
# 0.78-0.82, cpc_linear 0.37-0.42, random_mlp 0.56-0.62, supervised 0.84-0.92 (chance 0.1); each method
# must stay clearly above chance
MIN_ACCURACY = {"cpc_mlp": 0.6, "cpc_linear": 0.2, "random_mlp": 0.12, "supervised": 0.2,
                "cpc_finetune": 0.2,  # cpc_finetune: the supervised bound (it is supervised training too)
                "cpc_logistic": 0.2, "random_logistic": 0.12,  # logistic: the linear / random bounds
                "autoencoder_linear": 0.12, "autoencoder_mlp": 0.12, "autoencoder_logistic": 0.12}


def test_classify_writes_every_result(classify_run):
    _, out, metrics, stdout = classify_run
    rows = metrics["results"]
    assert sorted((r["method"], r["label_fraction"]) for r in rows) == sorted(
        (m, f) for m in downstream.METHODS for f in (0.1, 1.0))
    for row in rows:
        assert MIN_ACCURACY[row["method"]] < row["accuracy"] <= 1.0, row
        assert row["test_images"] == 1000  # the embedded test split, never the training digits
        assert row["train_images"] == (3500 if row["label_fraction"] == 1.0 else 350)
        assert set(row) >= {"method", "label_fraction", "accuracy", "train_images", "test_images",
                            "epochs", "seed"}
    assert "cpc_mlp" in stdout and "100% labels" in stdout  # the table in the log
    for name in ("downstream_accuracy.png", "codes_pca.png", "codes_tsne.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 200


def test_cpc_encoder_beats_the_random_one(classify_run):
    """Even the tiny CPC run's frozen codes are far better digit features than random ones."""
    acc = {(r["method"], r["label_fraction"]): r["accuracy"] for r in classify_run[2]["results"]}
    assert acc[("cpc_mlp", 1.0)] > acc[("random_mlp", 1.0)] + 0.1   # measured +0.19 to +0.22 (seeds 0-2)
    assert acc[("cpc_mlp", 1.0)] > 0.5  # chance is 0.1


def test_classifier_checkpoint_holds_the_frozen_encoder(classify_run):
    run_dir, out, metrics, _ = classify_run
    params, meta = checkpoint.load(str(out / "classifier.ckpt"))
    source, _ = checkpoint.load(str(run_dir / "cpc_best.ckpt"))
    assert meta["kind"] == "classifier" and meta["head"] == "mlp"
    row = next(r for r in metrics["results"] if r["method"] == "cpc_mlp" and r["label_fraction"] == 1.0)
    assert meta["test_accuracy"] == row["accuracy"]
    encoder_names = [n for n in params if n.startswith("encoder.")]
    assert any("moving_variance" in n for n in encoder_names)
    for name in encoder_names:  # weights and BatchNorm statistics exactly as trained by CPC
        np.testing.assert_array_equal(params[name].asnumpy(), source[name].asnumpy(), err_msg=name)
    assert any(n.startswith("head.") for n in params)


@pytest.mark.parametrize("flags, message", [
    (["--methods", "cpc_mlp,bogus"], "--methods must be"),
    (["--label_fractions", "0.5,0"], "--label_fractions must be"),
    (["--label_fractions", "x"], "--label_fractions must be"),
    (["--seeds", "0,4294967296"], "--seeds must be"),  # MindSpore's limit, met only when first seeded
    (["--seeds", "-3"], "--seeds must be"),
    (["--seeds", "1.5"], "--seeds must be"),
    (["--methods", "cpc_logistic", "--label_fractions", "0.001"], "the logistic head cross-validates"),
    (["--logistic_folds", "1"], "logistic_folds"),
])
def test_classify_rejects_bad_lists(tiny_run, tmp_path, flags, message):
    run_dir, _ = tiny_run
    out = tmp_path / "out"
    proc = run_entry(["eval.py", "--eval_mode", "classify", "--config_path", TINY, "--ckpt_path",
                      str(run_dir / "cpc_best.ckpt"), "--output_path", str(out)] + flags)
    assert proc.returncode == 2
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists()


def test_classify_reads_an_idx_folder(tiny_run, tmp_path):
    """--data_path: train digits from train-*, test digits from t10k-* (here built from the
    embedded digits: 12,000 training images, so 2,000 stay after the 10,000 held out)."""
    from src.data.mnist import load_split
    run_dir, _ = tiny_run
    data = export_embedded_test_split(str(tmp_path / "mnist"))
    images, labels = load_split("", "train")
    pick = np.random.default_rng(0).integers(0, len(images), 12000)
    write_idx(str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz"), images[pick])
    write_idx(str(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"), labels[pick])
    out = tmp_path / "out"
    proc = run_entry(["eval.py", "--eval_mode", "classify", "--config_path", TINY, "--ckpt_path",
                      str(run_dir / "encoder_best.ckpt"), "--data_path", data, "--output_path", str(out),
                      "--methods", "cpc_linear", "--label_fractions", "1.0", "--head_steps", "20"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(out / "downstream_metrics.json", encoding="utf-8") as handle:
        (row,) = json.load(handle)["results"]
    assert (row["method"], row["train_images"], row["test_images"]) == ("cpc_linear", 2000, 1000)
    assert not (out / "classifier.ckpt").exists()  # only the cpc_mlp classifier is saved


def test_summary_and_table_give_mean_and_std_over_seeds():
    results = [{"method": "cpc_mlp", "label_fraction": 0.1, "accuracy": a, "seed": s}
               for s, a in enumerate((0.80, 0.84, 0.88))]
    results.append({"method": "supervised", "label_fraction": 0.1, "accuracy": 0.5, "seed": 0})
    cells = {c["method"]: c for c in downstream.summarise(results)}
    assert cells["cpc_mlp"]["mean"] == pytest.approx(0.84) and cells["cpc_mlp"]["std"] == pytest.approx(0.04)
    assert (cells["cpc_mlp"]["seeds"], cells["supervised"]["std"]) == (3, 0.0)
    table = downstream.results_table(results)
    assert "0.8400 +- 0.0400" in table and "0.5000" in table
    assert len({len(line) for line in table.splitlines()}) == 1  # columns aligned, cells apart


@pytest.mark.parametrize("text", ["a", "1,1", "-1", "0,x", "4294967296", "2.0", "1e3", "\u00b2"])
def test_bad_seeds_are_refused(text):
    cfg = namespace()
    cfg.seeds = text
    with pytest.raises(ConfigError, match="--seeds"):
        downstream.parse_seeds(cfg)


def test_empty_seeds_mean_the_config_seed():
    cfg = namespace(seed=7)
    cfg.seeds = ""
    assert downstream.parse_seeds(cfg) == [7]
    cfg.seeds = "0, 2,1"
    assert downstream.parse_seeds(cfg) == [0, 2, 1]


@pytest.mark.slow
def test_classify_over_seeds_reports_every_seed_and_the_spread(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    proc = run_entry(["eval.py", "--eval_mode", "classify", "--config_path", TINY, "--ckpt_path",
                      str(run_dir / "cpc_best.ckpt"), "--output_path", str(tmp_path), "--methods",
                      "cpc_linear,random_mlp", "--label_fractions", "0.1", "--seeds", "0,1", "--tsne_points", "0"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "downstream_metrics.json").read_text())
    assert metrics["seeds"] == [0, 1]
    assert sorted((r["method"], r["seed"]) for r in metrics["results"]) == [
        ("cpc_linear", 0), ("cpc_linear", 1), ("random_mlp", 0), ("random_mlp", 1)]
    for cell in metrics["summary"]:
        accs = [r["accuracy"] for r in metrics["results"] if r["method"] == cell["method"]]
        assert cell["seeds"] == 2 and cell["mean"] == pytest.approx(np.mean(accs))
        assert cell["std"] == pytest.approx(np.std(accs, ddof=1))
    assert not (tmp_path / "codes_tsne.png").exists() and " +- " in proc.stdout


def test_finetune_starts_from_a_copy_of_the_cpc_encoder(ms_cpu):
    from src.model.build import build_encoder
    from src.model.classifier import build_classifier
    hparams = model_hparams(namespace(image_size=28, color=False, padding="same", code_size=16))
    source, net = build_encoder(hparams, backend="cpu"), build_classifier(hparams, "mlp", backend="cpu")
    protocol.copy_weights(source, net.encoder)
    for a, b in zip(source.get_parameters(), net.encoder.get_parameters()):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=b.name)
    b.set_data(b + 1)  # a copy: changing the fine-tuned net leaves the CPC encoder as it was
    assert not np.array_equal(a.asnumpy(), b.asnumpy())
    with pytest.raises(ValueError, match="same structure"):
        protocol.copy_weights(source, net)


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_autoencoder_learns_to_reconstruct_and_keeps_the_encoder_shape(ms_cpu):
    import mindspore as ms

    from src.model.autoencoder import build_autoencoder
    from src.model.build import build_encoder
    cfg = namespace(image_size=16, color=False, padding="same", code_size=16, head_batch_size=16, ae_steps=30,
                    head_learning_rate=3e-3)
    hparams = model_hparams(cfg)
    rng = np.random.default_rng(0)
    images = np.where(rng.random((32, 1, 16, 16)) > 0.5, 0.8, -0.8).astype(np.float32)
    images[:16, :, :8] = -1.0  # two kinds of image: structure to learn

    def mse(net):
        net.set_train(False)
        return float(np.mean((net(ms.Tensor(images)).asnumpy() - images) ** 2))
    ms.set_seed(cfg.seed)
    initial = mse(build_autoencoder(hparams, backend="cpu"))  # the same initialisation as train_autoencoder's
    net, _ = protocol.train_autoencoder(images, cfg, backend="cpu")
    assert mse(net) < 0.7 * initial
    assert [p.name for p in net.encoder.get_parameters()] == \
        ["encoder." + p.name for p in build_encoder(hparams, "cpu").get_parameters()]


def test_releasing_graphs_survives_a_cell_dying_during_mindspores_loop(ms_cpu):
    """ms_memory_recycle iterates over MindSpore's dict of Cells' compile caches; a Cell dying in that
    loop changes the dict (RuntimeError in MindSpore 2.10). An entry whose truth test removes another
    entry makes MindSpore's own loop fail that way once; release_graphs must still free everything."""
    from mindspore.graph.api import cells_compile_cache

    from src.eval import downstream
    victim = object()

    class DiesDuringLoop:
        def __bool__(self):
            cells_compile_cache.pop(id(victim), None)  # what a dying Cell's __del__ does
            return False
    trigger = DiesDuringLoop()
    cells_compile_cache[id(victim)] = set()
    cells_compile_cache[id(trigger)] = trigger
    cells_compile_cache[id(victim) + 1] = set()  # an entry after the trigger: the loop goes on
    try:
        with pytest.raises(RuntimeError, match="changed size during iteration"):
            import mindspore as ms
            ms.ms_memory_recycle()  # MindSpore alone
        cells_compile_cache[id(victim)] = set()
        downstream.release_graphs()
        assert id(victim) not in cells_compile_cache
    finally:
        for key in (id(victim), id(trigger), id(victim) + 1):
            cells_compile_cache.pop(key, None)
