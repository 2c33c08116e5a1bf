"""tools/torch_contrastive.py, the torch side of the contrastive losses' benchmark: each twin gives the
port's loss and input gradient within 1e-5 on the same features. Needs torch (optional, not in
requirements): skipped without it."""
import numpy as np
import pytest
from mindspore import Tensor

from src.model import contrastive

torch = pytest.importorskip("torch")
twins = pytest.importorskip("tools.torch_contrastive")

TOL = 1e-5


def cases():
    """(class name, constructor arguments, inputs as numpy arrays): the first input is differentiated."""
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(16, 8)).astype(np.float32) for _ in range(3))
    a[2] = b[2]                                          # a pair at distance 0
    views = rng.normal(size=(16, 3, 8)).astype(np.float32)
    labels = rng.integers(0, 4, 16)
    same = (rng.random(16) < 0.5).astype(np.float32)
    return [("NTXentLoss", dict(temperature=0.2), (views,)),
            ("NTXentLoss", dict(temperature=0.5, normalize=False), (views * 0.3,)),
            ("SupConLoss", dict(temperature=0.1), (views, labels)),
            ("SupConLoss", dict(temperature=0.5, base_temperature=0.07), (views, labels)),
            ("CrossViewInfoNCE", dict(temperature=0.07), (a, b)),
            ("ContrastiveMarginLoss", dict(margin=1.0), (a, b, same)),
            ("ContrastiveMarginLoss", dict(margin=2.0, normalize=False), (a, b, same)),
            ("TripletMarginLoss", dict(margin=0.2), (a, b, c))]


@pytest.mark.parametrize("name,kwargs,inputs", cases(), ids=lambda v: str(v)[:30] if isinstance(v, str) else "")
def test_twin_loss_and_gradient_agree(ms_cpu, name, kwargs, inputs):
    port = getattr(contrastive, name)(**kwargs)
    twin = getattr(twins, name)(**kwargs)
    tensors = [Tensor(x) for x in inputs]
    loss, grad = ms_cpu.value_and_grad(port, grad_position=0)(*tensors)
    first = torch.from_numpy(inputs[0]).requires_grad_()
    expected = twin(first, *(torch.from_numpy(x) for x in inputs[1:]))
    expected.backward()
    assert float(loss.asnumpy()) == pytest.approx(expected.item(), abs=TOL)
    assert np.abs(expected.item()) > 0
    np.testing.assert_allclose(grad.asnumpy(), first.grad.numpy(), atol=TOL)
