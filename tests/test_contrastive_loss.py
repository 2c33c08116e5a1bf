"""The contrastive losses (src/model/contrastive.py) against float64 NumPy references written from
the papers' formulas, in graph mode and PyNative; NT-Xent and SupCon also against SupContrast's
SupConLoss formula in torch (skipped without torch); finite gradients; bad arguments refused.

Tolerance: the Cells compute in float32; on losses of order 1-10 they agree with the float64
references to 1e-5 relative (float32 keeps ~7 digits; a few sums of exp() lose about one)."""
import numpy as np
import pytest
from mindspore import Tensor

from src.model.contrastive import ContrastiveMarginLoss, CrossViewInfoNCE, NTXentLoss, SupConLoss, TripletMarginLoss

TOL = 1e-5


@pytest.fixture(params=["graph", "pynative"])
def mode(request, ms_cpu):
    """Each test once compiled (graph mode) and once eager (PyNative); graph mode restored after."""
    ms_cpu.set_context(mode=ms_cpu.GRAPH_MODE if request.param == "graph" else ms_cpu.PYNATIVE_MODE)
    yield request.param
    ms_cpu.set_context(mode=ms_cpu.GRAPH_MODE)


def unit(codes):
    return codes / np.linalg.norm(codes, axis=-1, keepdims=True)


def supcon_reference(features, labels, temperature, normalize=True):
    """float64, one anchor at a time: -mean over positives p of log(e^{s_ip/t} / sum_{a != i} e^{s_ia/t})."""
    feats = np.asarray(features, np.float64)
    feats = unit(feats) if normalize else feats
    batch, views, _ = feats.shape
    codes = np.concatenate([feats[:, v] for v in range(views)])          # view-major, as SupContrast
    owner = np.tile(np.arange(batch), views)
    group = owner if labels is None else np.asarray(labels)[owner]
    losses = []
    for i in range(len(codes)):
        scores = {a: codes[i] @ codes[a] / temperature for a in range(len(codes)) if a != i}
        log_denominator = np.log(sum(np.exp(s) for s in scores.values()))
        positives = [scores[p] - log_denominator for p in scores if group[p] == group[i]]
        losses.append(-np.mean(positives))
    return float(np.mean(losses))


def cross_view_reference(a, b, temperature):
    a, b = unit(np.asarray(a, np.float64)), unit(np.asarray(b, np.float64))
    logits = a @ b.T / temperature
    def xent(rows):
        return np.mean([np.log(np.exp(r).sum()) - r[i] for i, r in enumerate(rows)])
    return float((xent(logits) + xent(logits.T)) / 2)


def margin_reference(first, second, same, margin):
    d = np.linalg.norm(unit(np.asarray(first, np.float64)) - unit(np.asarray(second, np.float64)), axis=1)
    return float(np.mean(np.where(same == 1, d ** 2, np.maximum(0.0, margin - d) ** 2)) / 2)


def triplet_reference(anchor, positive, negative, margin):
    a, p, n = (unit(np.asarray(x, np.float64)) for x in (anchor, positive, negative))
    return float(np.mean(np.maximum(0.0, ((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + margin)))


def codes(seed, *shape, count=1):
    rng = np.random.default_rng(seed)
    out = [rng.normal(size=shape).astype(np.float32) for _ in range(count)]
    return out if count > 1 else out[0]


@pytest.mark.parametrize("views,temperature", [(2, 0.5), (3, 0.1)])
def test_ntxent_matches_numpy(mode, views, temperature):
    feats = codes(views, 8, views, 6)
    got = float(NTXentLoss(temperature)(Tensor(feats)).asnumpy())
    assert got == pytest.approx(supcon_reference(feats, None, temperature), rel=TOL)


@pytest.mark.parametrize("views,temperature", [(2, 0.5), (3, 0.07)])
def test_supcon_matches_numpy(mode, views, temperature):
    feats = codes(10 + views, 12, views, 6)
    labels = np.random.default_rng(views).integers(0, 4, 12)
    got = float(SupConLoss(temperature)(Tensor(feats), Tensor(labels)).asnumpy())
    assert got == pytest.approx(supcon_reference(feats, labels, temperature), rel=TOL)


def test_supcon_with_distinct_labels_is_ntxent(mode):
    feats = codes(3, 8, 2, 6)
    supcon = SupConLoss(0.3)(Tensor(feats), Tensor(np.arange(8))).asnumpy()
    assert float(supcon) == pytest.approx(float(NTXentLoss(0.3)(Tensor(feats)).asnumpy()), rel=TOL)


def test_unnormalized_codes_are_used_as_given(mode):
    feats = codes(4, 6, 2, 5) * 0.3
    got = float(NTXentLoss(0.5, normalize=False)(Tensor(feats)).asnumpy())
    assert got == pytest.approx(supcon_reference(feats, None, 0.5, normalize=False), rel=TOL)
    assert got != pytest.approx(supcon_reference(feats, None, 0.5), rel=TOL)


def test_cross_view_matches_numpy(mode):
    a, b = codes(5, 9, 7, count=2)
    got = float(CrossViewInfoNCE(0.2)(Tensor(a), Tensor(b)).asnumpy())
    assert got == pytest.approx(cross_view_reference(a, b, 0.2), rel=TOL)


def test_contrastive_margin_matches_numpy(mode):
    first, second = codes(6, 10, 4, count=2)
    second[0] = first[0]                         # a pair at distance 0 (the distance's kink)
    same = (np.arange(10) % 2).astype(np.float32)
    same[0] = 0
    got = float(ContrastiveMarginLoss(0.8)(Tensor(first), Tensor(second), Tensor(same)).asnumpy())
    assert got == pytest.approx(margin_reference(first, second, same, 0.8), rel=TOL)


def test_triplet_matches_numpy(mode):
    anchor, positive, negative = codes(7, 10, 4, count=3)
    got = float(TripletMarginLoss(0.5)(Tensor(anchor), Tensor(positive), Tensor(negative)).asnumpy())
    expected = triplet_reference(anchor, positive, negative, 0.5)
    assert expected > 0 and got == pytest.approx(expected, rel=TOL)


def test_easy_triplets_cost_nothing(mode):
    anchor = codes(8, 6, 4)
    loss = TripletMarginLoss(0.2)(Tensor(anchor), Tensor(anchor), Tensor(-anchor))
    assert float(loss.asnumpy()) == 0.0  # |a - a|^2 - |a + a|^2 + 0.2 = -3.8 on the unit sphere


@pytest.mark.parametrize("views,base", [(2, None), (2, 0.07), (3, 0.07)])
def test_supcon_and_ntxent_match_supcontrast(ms_cpu, views, base):
    torch = pytest.importorskip("torch")
    from tools.torch_contrastive import supcontrast_formula
    feats = codes(20 + views, 8, views, 6)
    labels = np.random.default_rng(1).integers(0, 3, 8)
    normed = torch.nn.functional.normalize(torch.from_numpy(feats), dim=-1)  # SupContrast's head does this
    same = torch.from_numpy((labels[:, None] == labels[None, :]).astype(np.float32))
    expected = supcontrast_formula(normed, same, 0.5, base or 0.5).item()
    got = SupConLoss(0.5, base_temperature=base)(Tensor(feats), Tensor(labels)).asnumpy()
    assert float(got) == pytest.approx(expected, rel=TOL)
    if base is None:
        simclr = supcontrast_formula(normed, torch.eye(8), 0.5, 0.5).item()
        assert float(NTXentLoss(0.5)(Tensor(feats)).asnumpy()) == pytest.approx(simclr, rel=TOL)


def losses_and_inputs():
    a, b, c = codes(9, 8, 5, count=3)
    a[1] = b[1]  # zero distance: a NaN gradient there would spread through the mean
    pairs = Tensor(np.stack([a, b], 1))
    return [(NTXentLoss(0.1), (pairs,)), (SupConLoss(0.1), (pairs, Tensor(np.arange(8) % 3))),
            (CrossViewInfoNCE(0.1), (Tensor(a), Tensor(b))),
            (ContrastiveMarginLoss(1.0), (Tensor(a), Tensor(b), Tensor(np.zeros(8, np.float32)))),
            (TripletMarginLoss(0.2), (Tensor(a), Tensor(b), Tensor(c)))]


def test_gradients_are_finite_and_nonzero(mode, ms_cpu):
    for loss, inputs in losses_and_inputs():
        grads = ms_cpu.grad(loss, grad_position=0)(*inputs).asnumpy()
        assert np.isfinite(grads).all() and np.abs(grads).sum() > 0, type(loss).__name__


@pytest.mark.parametrize("make", [lambda t: NTXentLoss(t), lambda t: SupConLoss(t), lambda t: CrossViewInfoNCE(t),
                                  lambda t: SupConLoss(0.5, base_temperature=t)])
@pytest.mark.parametrize("value", [0, -0.1, float("nan"), float("inf"), "warm"])
def test_bad_temperature_is_refused(make, value):
    with pytest.raises(ValueError, match="temperature must be a (finite )?number > 0"):
        make(value)


@pytest.mark.parametrize("make", [ContrastiveMarginLoss, TripletMarginLoss])
def test_bad_margin_is_refused(make):
    with pytest.raises(ValueError, match="margin must be a finite number > 0, got -1"):
        make(-1)


def test_mismatched_shapes_are_refused(mode):
    a, b = Tensor(codes(1, 4, 3)), Tensor(codes(2, 5, 3))
    with pytest.raises(ValueError, match=r"two code tensors \[N, D\] of one shape"):
        CrossViewInfoNCE(0.5)(a, b)
    with pytest.raises(ValueError, match=r"two code tensors \[N, D\] of one shape"):
        TripletMarginLoss(0.5)(a, a, b)
    with pytest.raises(ValueError, match=r"same must be \[N\]"):
        ContrastiveMarginLoss(0.5)(a, a, Tensor(np.ones(5, np.float32)))


def test_bad_views_and_labels_are_refused(mode):
    with pytest.raises(ValueError, match=r"\[N, V, D\] with V >= 2 views, got shape \(4, 1, 3\)"):
        NTXentLoss(0.5)(Tensor(codes(1, 4, 1, 3)))
    with pytest.raises(ValueError, match=r"\[N, V, D\] with V >= 2 views"):
        NTXentLoss(0.5)(Tensor(codes(1, 4, 3)))
    with pytest.raises(ValueError, match=r"labels must be \[N\]"):
        SupConLoss(0.5)(Tensor(codes(1, 4, 2, 3)), Tensor(np.arange(5)))
