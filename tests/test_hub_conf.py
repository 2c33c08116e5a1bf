"""mindspore_hub_conf.create_network: the Hub's entry builds each net so the shipped checkpoints load
into it with no parameter missing or left over, and one forward pass gives the expected shape."""
import json
import os

import numpy as np
import pytest

from mindspore_hub_conf import create_network
from tests.conftest import REPO

SHIPPED = os.path.join(REPO, "pretrained")


def _load(name):
    import mindspore as ms
    path = os.path.join(SHIPPED, name)
    params = ms.load_checkpoint(path)
    meta = json.loads(str(params.pop("cpc_meta")))
    return params, meta


def _load_exactly(net, params):
    import mindspore as ms
    not_in_ckpt, not_in_net = ms.load_param_into_net(net, params, strict_load=True)
    assert not_in_ckpt == [] and not_in_net == [], (not_in_ckpt, not_in_net)


def _images(hparams, *lead):
    channels = 3 if hparams["color"] else 1
    rng = np.random.default_rng(0)
    shape = lead + (channels, hparams["image_size"], hparams["image_size"])
    return rng.uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_shipped_cpc_and_its_encoder_load_through_create_network(ms_cpu):
    params, meta = _load("cpc_mnist64_color.ckpt")
    hparams = meta["hparams"]
    cpc = create_network("cpc", hparams=hparams)
    _load_exactly(cpc, params)
    context, future = _images(hparams, 2, hparams["terms"]), _images(hparams, 2, hparams["predict_terms"])
    logits = cpc(ms_cpu.Tensor(context), ms_cpu.Tensor(future)).asnumpy()
    assert logits.shape[0] == 2 and np.isfinite(logits).all()
    encoder = create_network("encoder", hparams=hparams)
    _load_exactly(encoder, {k[len("encoder."):]: v for k, v in params.items() if k.startswith("encoder.")})
    codes = encoder(ms_cpu.Tensor(_images(hparams, 3))).asnumpy()
    assert codes.shape == (3, hparams["code_size"]) and np.isfinite(codes).all()


def test_shipped_classifier_loads_through_create_network(ms_cpu):
    params, meta = _load("cpc_mnist64_color_classifier.ckpt")
    net = create_network("classifier", hparams=meta["hparams"], head=meta["head"])
    _load_exactly(net, params)
    logits = net(ms_cpu.Tensor(_images(meta["hparams"], 4))).asnumpy()
    assert logits.shape == (4, 10) and np.isfinite(logits).all()


def test_config_keys_shape_the_net(ms_cpu):
    hparams = {"image_size": 28, "color": False, "padding": "same", "input_contrast": False, "code_size": 16}
    encoder = create_network("encoder", **hparams)
    assert encoder(ms_cpu.Tensor(_images(hparams, 2))).shape == (2, 16)
    assert not encoder.training


def test_bad_requests_are_refused():
    from src.utils.errors import ConfigError
    with pytest.raises(ValueError, match="name must be one of"):
        create_network("resnet")
    with pytest.raises(ValueError, match="not both"):
        create_network("cpc", hparams={"code_size": 8}, code_size=8)
    with pytest.raises(ConfigError, match="no_such_key"):
        create_network("encoder", no_such_key=1)
