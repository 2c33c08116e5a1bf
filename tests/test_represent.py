"""Per-epoch representation quality (kNN, linear probe) and per-future-step validation metrics."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor
from PIL import Image

from src.config import model_hparams, namespace, parse_config
from src.eval.represent import DIGIT_CHANCE, RepresentationMonitor, fixed_subset, knn_accuracy, probe_accuracy
from src.model.build import build_cpc
from src.model.loss import (
    CPCStepScores,
    binary_accuracy,
    binary_cross_entropy,
    binary_per_step,
    infonce_metrics,
    infonce_per_step,
)
from src.train.engine import train
from src.utils.plots import plot_training_curves
from tests.conftest import TINY


def _clusters(seed, n, dim=16, spread=0.3, shuffle_labels=False):
    """(codes, labels): n codes around 10 random unit directions (one per digit), as separable
    codes; shuffle_labels: labels unrelated to the codes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.arange(n) % 10
    codes = centres[labels] + spread / np.sqrt(dim) * rng.normal(size=(n, dim))
    if shuffle_labels:
        labels = rng.permutation(labels)
    return codes.astype(np.float32), labels


@pytest.mark.parametrize("score", [lambda *a: knn_accuracy(*a, k=20), lambda *a: probe_accuracy(*a, alpha=1.0)],
                         ids=["knn", "probe"])
def test_scores_separable_codes_high_and_random_labels_at_chance(score):
    train_codes, train_labels = _clusters(0, 1000)
    test_codes, test_labels = _clusters(0, 500)  # the same centres, new noise
    assert score(train_codes, train_labels, test_codes[::-1], test_labels[::-1]) > 0.95
    rand_train = _clusters(1, 1000, shuffle_labels=True)
    rand_test = _clusters(1, 500, shuffle_labels=True)
    assert abs(score(*rand_train, *rand_test) - DIGIT_CHANCE) < 0.05


def test_knn_uses_cosine_distance():
    """Scaling a code does not move it under the cosine distance: long codes of one class must not
    capture the neighbours of short codes of another."""
    train_codes, train_labels = _clusters(2, 1000)
    train_codes = train_codes * np.where(train_labels == 0, 100.0, 1.0)[:, None]
    test_codes, test_labels = _clusters(2, 500)
    assert knn_accuracy(train_codes, train_labels, test_codes, test_labels, k=20) > 0.95


def test_fixed_subset_is_balanced_and_repeatable():
    labels = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 5, 120, 130, 140])
    pick = fixed_subset(labels, 500, seed=3, split_id=0)
    counts = np.bincount(labels[pick], minlength=10)
    assert counts.tolist() == [50, 50, 50, 50, 50, 50, 5, 50, 50, 50]  # all of a short class
    assert np.array_equal(pick, fixed_subset(labels, 500, seed=3, split_id=0))
    assert not np.array_equal(pick, fixed_subset(labels, 500, seed=4, split_id=0))
    assert np.all(np.diff(pick) > 0)


def test_infonce_per_step_means_are_the_combined_metrics():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 3, 1 + 6))
    logits[:, 0, 0] += 4.0  # step 1 easy, the others near chance
    valid = (rng.random((40, 3, 6)) > 0.2).astype(np.float32)
    combined, per_step = infonce_metrics(logits, valid), infonce_per_step(logits, valid)
    assert np.mean(per_step["loss"]) == pytest.approx(combined["loss"], rel=1e-12)
    assert np.mean(per_step["accuracy"]) == pytest.approx(combined["accuracy"], rel=1e-12)
    assert per_step["accuracy"][0] > 0.9 > max(per_step["accuracy"][1:])
    assert per_step["loss"][0] < min(per_step["loss"][1:])


def test_binary_per_step_scores_each_step_alone():
    rng = np.random.default_rng(1)
    labels = (rng.random(200) > 0.5).astype(np.float32)[:, None]
    sign = 2 * labels[:, 0] - 1
    scores = np.stack([3 * sign, rng.normal(size=200)], 1)  # step 1 knows the label, step 2 does not
    per_step = binary_per_step(scores, labels)
    assert per_step["accuracy"][0] == 1.0 and abs(per_step["accuracy"][1] - 0.5) < 0.1
    assert per_step["loss"][0] == pytest.approx(binary_cross_entropy(scores[:, 0], labels[:, 0]))
    one = binary_per_step(scores[:, 1:], labels)  # one step: per-step = combined
    assert one["accuracy"] == [binary_accuracy(scores[:, 1], labels[:, 0])]
    assert one["loss"] == [binary_cross_entropy(scores[:, 1], labels[:, 0])]


def _tiny_net(**overrides):
    cfg = namespace(image_size=28, color=False, padding="same", input_contrast=False, terms=2, predict_terms=3,
                    code_size=16, hidden_size=16, repr_train_digits=100, repr_val_digits=100, **overrides)
    ms.set_seed(0)
    return cfg, build_cpc(model_hparams(cfg), "cpu")


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_step_scores_logit_is_the_nets_logit_bit_for_bit(ms_cpu):
    """Validation reads the logit from CPCStepScores: it must be the net's own, so the validation
    loss (and the learning-rate schedule it drives) is unchanged."""
    _, net = _tiny_net()
    net.set_train(False)
    rng = np.random.default_rng(0)
    x = Tensor(rng.uniform(-1, 1, (8, 2, 1, 28, 28)).astype(np.float32))
    y = Tensor(rng.uniform(-1, 1, (8, 3, 1, 28, 28)).astype(np.float32))
    logit, scores = CPCStepScores(net)(x, y)
    assert scores.shape == (8, 3)
    np.testing.assert_array_equal(logit.asnumpy(), net(x, y).asnumpy())
    np.testing.assert_allclose(logit.asnumpy()[:, 0], scores.asnumpy().mean(-1), rtol=1e-5, atol=1e-7)


def _block_digits(seed, count):
    """(uint8 images [count, 28, 28], labels): digit d is a bright 7x7 block at a place of its own,
    plus noise: separable by any encoder that keeps where the ink is."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
    for i, digit in enumerate(labels):
        top, left = 7 * (digit // 4), 7 * (digit % 4)
        images[i, top:top + 7, left:left + 7] = 255
    return images, labels


def test_monitor_scores_codes_and_leaves_the_encoder_as_it_was(ms_cpu):
    cfg, net = _tiny_net()
    monitor = RepresentationMonitor(net.encoder, _block_digits(0, 300), _block_digits(1, 200), cfg)
    assert monitor.sizes() == (100, 100)
    before = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    net.set_train(True)
    result = monitor()
    assert net.encoder.training  # back in training mode
    assert all(np.array_equal(before[p.name], p.asnumpy()) for p in net.get_parameters())  # BN stats too
    assert set(result) == {"knn_accuracy", "probe_accuracy", "repr_seconds"}
    assert result["knn_accuracy"] > 0.8 and result["probe_accuracy"] > 0.9  # chance 0.1, even for a random encoder
    again = monitor()  # the same subsets, the same encoder: the same figures
    assert (again["knn_accuracy"], again["probe_accuracy"]) == (result["knn_accuracy"], result["probe_accuracy"])


def test_training_curves_show_digit_and_per_step_panels(tmp_path):
    history = [{"epoch": e, "loss": 0.7 - 0.1 * e, "val_loss": 0.72 - 0.1 * e, "val_accuracy": 0.5 + 0.1 * e,
                "val_accuracy_per_step": [0.6 + 0.1 * e, 0.5 + 0.1 * e], "val_loss_per_step": [0.6, 0.7],
                "knn_accuracy": 0.3 + 0.1 * e, "probe_accuracy": 0.4 + 0.1 * e} for e in (1, 2, 3)]
    path = tmp_path / "curves.png"
    plot_training_curves(history, 0.5, str(path))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1350, 350)  # the third panel: digit accuracy


def _short_run(tmp_path, repr_eval):
    cfg = parse_config(["--config_path", TINY, "--output_path", str(tmp_path / str(repr_eval)), "--epoch_size", "2",
                        "--steps_per_epoch", "20", "--repr_eval", str(repr_eval)])
    os.makedirs(cfg.output_path)
    ms.set_seed(cfg.seed)
    return train(cfg, "CPU")


@pytest.mark.slow
def test_representation_metrics_do_not_change_training(ms_cpu, tmp_path):
    on, off = _short_run(tmp_path, True), _short_run(tmp_path, False)
    assert on["step_losses"] == off["step_losses"]
    assert [r["val_loss"] for r in on["history"]] == [r["val_loss"] for r in off["history"]]
    assert "knn_accuracy" in on["history"][-1] and "knn_accuracy" not in off["history"][-1]


@pytest.mark.slow
def test_tiny_run_history_holds_the_new_metrics(tiny_run):
    out, metrics = tiny_run
    cfg = parse_config(["--config_path", TINY])
    assert metrics["digit_chance_accuracy"] == DIGIT_CHANCE
    assert metrics["repr_digits"] == [cfg.repr_train_digits, min(cfg.repr_val_digits, 500)]
    for record in metrics["history"]:
        assert 0 <= record["knn_accuracy"] <= 1 and 0 <= record["probe_accuracy"] <= 1
        assert record["repr_seconds"] > 0
        assert len(record["val_accuracy_per_step"]) == len(record["val_loss_per_step"]) == cfg.predict_terms
    last = metrics["history"][-1]
    assert last["probe_accuracy"] > 3 * DIGIT_CHANCE and last["knn_accuracy"] > 3 * DIGIT_CHANCE
    log = (out / "train.log").read_text()
    assert "validation per future step: k=1 acc" in log and "kNN accuracy" in log
