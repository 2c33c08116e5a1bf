"""Which layer of a trained image-task CPC net makes the best frozen digit features?

    python -m tools.feature_layers --config_path config/cpc_image64_color.yaml --ckpt_path OUT/cpc_best.ckpt \
        --output_path EVAL [--layers conv,hidden,code,context,code+context --label_fractions 0.01,0.1 --seeds 0,1,2]

Each layer's per-patch output, region-pooled over the grid exactly as the frozen encoder pools its
codes (pool_grid), is scored with eval.py --eval_mode classify's linear head (the same DigitHead, fit,
label subsets and seeds): conv = the last conv block's flattened output, hidden = after the
encoder's first Dense + norm + LeakyReLU, code = the code z (what ImageEncoder gives, the
downstream default), context = the top-down masked context c, code+context = both side by side.
Writes EVAL/feature_layers.json (mean and sample std per layer and fraction) and prints a table.
"""
import os
import time

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src import checkpoint
from src.config import model_hparams, parse_config
from src.data.mnist import load_split
from src.device import init_device
from src.eval import downstream
from src.eval.represent import IMAGE_ENCODE_BATCH, encode
from src.model.backend import backend_for
from src.model.classifier import DigitHead
from src.model.image_cpc import build_image_cpc
from src.utils.errors import CheckpointError, ConfigError, run_main
from src.utils.runlog import prepare_output, write_json

LAYERS = ("conv", "hidden", "code", "context", "code+context")


# the patch encoder's last stage (src/model/image_cpc.py PatchEncoder.stage_names) each layer reads
LAST_STAGE = {"conv": "flatten", "hidden": "act"}


class LayerFeatures(nn.Cell):
    """Images -> one layer's per-patch outputs of an ImageCPC, region-pooled and concatenated: the
    patch encoder's stages up to the layer's (all of them for code and the context layers)."""

    def __init__(self, cpc, layer):
        super().__init__()
        self.cpc, self.layer = cpc, layer
        encoder = cpc.encoder.patch_encoder
        self.stage_names = encoder.stages_through(LAST_STAGE.get(layer, encoder.stage_names[-1]))

    def construct(self, x):
        encoder = self.cpc.encoder
        patches = encoder.patches(x)
        b, n = patches.shape[:2]
        h = patches.reshape((b * n,) + patches.shape[2:])
        for name in self.stage_names:
            h = getattr(encoder.patch_encoder, name)(h)
        h = h.reshape(b, n, -1)
        if self.layer == "context":
            h = self.cpc.context(h)
        elif self.layer == "code+context":
            h = ops.concat((h, self.cpc.context(h)), -1)
        return ops.matmul(encoder.pooling, h).reshape(b, -1)


def linear_accuracy(train, labels, test, test_labels, fraction, seed, cfg):
    """Test accuracy of eval.py's linear head on `fraction` of the labels (its subset for `seed`)."""
    subset = downstream.balanced_subset(labels, fraction, seed)
    ms.set_seed(seed)
    head = DigitHead(train.shape[1], "linear")
    downstream.fit(head, train[subset], labels[subset], downstream.Budget.heads(cfg, seed=seed))
    return float(np.mean(downstream.predict(head, test) == test_labels))


def _extra(parser):
    parser.add_argument("--layers", default=",".join(LAYERS), help="comma-separated subset of " + ",".join(LAYERS))
    parser.add_argument("--label_fractions", default="0.01,0.1", help="comma-separated fractions in (0, 1]")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (label subsets and heads)")


def parse_layers(cfg):
    layers = [s.strip() for s in cfg.layers.split(",") if s.strip()]
    if not layers or any(s not in LAYERS for s in layers):
        raise ConfigError(f"--layers must be a comma-separated subset of {','.join(LAYERS)}, got {cfg.layers!r}")
    return layers


def main(argv=None):
    cfg = parse_config(argv, description="Score each layer of an image-task CPC net as frozen digit features",
                       extra_args=_extra)
    cfg.methods = "cpc_linear"
    layers, (_, fractions) = parse_layers(cfg), downstream.parse_lists(cfg)
    seeds = downstream.parse_seeds(cfg)  # src.config's seed-list check: MindSpore's range, distinct
    if not cfg.ckpt_path:
        raise ConfigError("config key 'ckpt_path' is required: an image-task CPC checkpoint")
    params, meta = checkpoint.load(cfg.ckpt_path)
    checkpoint.apply_hparams(cfg, meta, cfg.ckpt_path)
    if cfg.task != "image" or not any(k.startswith("context.") for k in params):
        raise CheckpointError(f"checkpoint {cfg.ckpt_path} is not an image-task CPC net (task: image, with its "
                              "context network): use its cpc_best.ckpt or cpc_last.ckpt")
    train_data, test_data = load_split(cfg.data_path, "train"), load_split(cfg.data_path, "test")
    prepare_output(cfg.output_path)
    cpc = build_image_cpc(model_hparams(cfg), backend_for(init_device(cfg)))
    checkpoint.load_into(cpc, params, cfg.ckpt_path)
    data = downstream.DownstreamData(train_data, test_data, model_hparams(cfg), cfg.seed)
    rows = []
    for layer in layers:
        start = time.perf_counter()
        net = LayerFeatures(cpc, layer)
        train, test = (encode(net, x, IMAGE_ENCODE_BATCH) for x in (data.train_x, data.test_x))
        for fraction in fractions:
            accuracy = [linear_accuracy(train, data.train_y, test, data.test_y, fraction, s, cfg) for s in seeds]
            rows.append({"layer": layer, "features": int(train.shape[1]), "label_fraction": fraction,
                         "mean": float(np.mean(accuracy)),
                         "std": float(np.std(accuracy, ddof=1)) if len(accuracy) > 1 else 0.0, "accuracy": accuracy})
            print(f"{layer:13s} {train.shape[1]:5d} features, {100 * fraction:g}% labels: linear head "
                  f"{rows[-1]['mean']:.4f} +- {rows[-1]['std']:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    path = os.path.join(cfg.output_path, "feature_layers.json")
    write_json(path, {"ckpt_path": os.path.abspath(cfg.ckpt_path), "seeds": seeds, "head_steps": cfg.head_steps,
                      "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)
