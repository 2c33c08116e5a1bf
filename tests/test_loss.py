"""The InfoNCE loss against a numpy reference, its limits, and the in-batch negatives."""
import math

import numpy as np
import pytest
from mindspore import Tensor, nn

from src.config import namespace
from src.data.dataset import build_source, sample_negatives
from src.model.loss import CPCPredictions, InfoNCELogits, InfoNCEWithLoss, infonce_metrics


class _Given(nn.Cell):
    """Stands in for CPC: predictions(x, y) returns (x, y) as (W_k c_t, z_future)."""

    def predictions(self, x, y):
        return x, y


def _reference_loss(predicted, z, negatives, valid):
    batch, steps, dim = z.shape
    flat = z.reshape(-1, dim)
    total = []
    for b in range(batch):
        for k in range(steps):
            scores = [predicted[b, k] @ z[b, k]]
            scores += [predicted[b, k] @ flat[j] for j, ok in zip(negatives[b, k], valid[b, k]) if ok]
            scores = np.array(scores, np.float64)
            total.append(np.log(np.exp(scores - scores.max()).sum()) + scores.max() - scores[0])
    return float(np.mean(total))


def _inputs(seed, batch=6, steps=3, dim=5, num_negatives=4):
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 10, (batch, steps))
    negatives, valid = sample_negatives(rng, digits, num_negatives, across_steps=False)
    valid[0, 0, :] = 0  # a row with every negative masked
    predicted = rng.normal(size=(batch, steps, dim)).astype(np.float32)
    z = rng.normal(size=(batch, steps, dim)).astype(np.float32)
    return predicted, z, negatives, valid


def _loss(predicted, z, negatives, valid):
    cell = InfoNCEWithLoss(CPCPredictions(_Given()))
    return float(cell(*(Tensor(a) for a in (predicted, z, negatives, valid))).asnumpy())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_infonce_matches_numpy(ms_cpu, seed):
    predicted, z, negatives, valid = _inputs(seed)
    assert _loss(predicted, z, negatives, valid) == pytest.approx(_reference_loss(predicted, z, negatives, valid),
                                                                  rel=1e-5)
    logits = InfoNCELogits(CPCPredictions(_Given()))(*(Tensor(a) for a in (predicted, z, negatives, valid))).asnumpy()
    assert infonce_metrics(logits, valid)["loss"] == pytest.approx(_reference_loss(predicted, z, negatives, valid),
                                                                   rel=1e-5)


def test_perfect_predictor_has_near_zero_loss(ms_cpu):
    _, z, negatives, valid = _inputs(3, dim=16)
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    loss = _loss(50.0 * z, z, negatives, valid)
    assert 0 <= loss < 1e-3
    logits = InfoNCELogits(CPCPredictions(_Given()))(*(Tensor(a) for a in (50.0 * z, z, negatives, valid))).asnumpy()
    assert infonce_metrics(logits, valid)["accuracy"] == 1.0


def test_constant_predictor_gives_log_candidates(ms_cpu):
    predicted, z, negatives, valid = _inputs(4)
    valid = np.ones_like(valid)
    assert _loss(np.zeros_like(predicted), z, negatives, valid) == pytest.approx(math.log(1 + 4), rel=1e-6)
    valid[:, :, :2] = 0  # two of four negatives collide everywhere: ln(1 + 2)
    assert _loss(np.zeros_like(predicted), z, negatives, valid) == pytest.approx(math.log(3), rel=1e-6)
    metrics = infonce_metrics(np.zeros(valid.shape[:2] + (5,)), valid)
    assert metrics["chance_accuracy"] == pytest.approx(1 / 3)
    assert metrics["accuracy"] == 0.0  # a tie is not a hit
    assert metrics["collision_rate"] == pytest.approx(0.5)


@pytest.mark.parametrize("across", [False, True])
def test_negatives_are_other_futures_and_collisions_are_masked(across):
    rng = np.random.default_rng(5)
    batch, steps, count = 8, 4, 7
    digits = rng.integers(0, 10, (batch, steps))
    negatives, valid = sample_negatives(rng, digits, count, across_steps=across)
    assert negatives.shape == valid.shape == (batch, steps, count)
    own = np.arange(batch)[:, None] * steps + np.arange(steps)
    assert not (negatives == own[..., None]).any()
    assert all(len(set(row)) == count for row in negatives.reshape(-1, count))
    if not across:
        assert (negatives % steps == np.arange(steps)[None, :, None]).all()  # same step k
    assert np.array_equal(valid == 0, digits.reshape(-1)[negatives] == digits[..., None])


@pytest.mark.slow
def test_infonce_batches_are_all_sorted():
    cfg = namespace(image_size=28, color=False, padding="same", loss="infonce", batch_size=16, num_negatives=9)
    batch = build_source(cfg, "train", 2).make_batch(1)
    assert batch.label.min() == 1.0
    assert (np.diff(batch.digits, axis=1) % 10 == 1).all()
    assert batch.negatives.shape == (16, cfg.predict_terms, 9)
    row = build_source(cfg, "train", 2)[1]
    assert len(row) == 4 and np.array_equal(row[2], batch.negatives)
    assert np.array_equal(build_source(cfg, "train", 2).make_batch(1).negatives, batch.negatives)
